"""Reports: figures, tables and index.html under reports/ (side effects live here and in the CLI)."""
