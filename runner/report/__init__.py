"""What a person reads: the report (text and Markdown), plots, progress bars, diagnostics, --explain."""
