"""The spec language: YAML loaded with locations, Pydantic models, merging, validation, diagnostics, schema.

Free of torch and accelerate: `accel-run --validate` imports only this package (and errors, report.diagnostics).
"""
