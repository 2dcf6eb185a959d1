"""Stage: the editor. `accel-run lsp`, a language server that shows the CLI's own findings as you type."""
