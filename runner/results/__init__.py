"""The result folder: its layout, the records of runs and launches, summary.json and the resume policy."""
