"""Judging measurements: declared = observed, noise-aware statistics, expectations checked, and the Why."""
