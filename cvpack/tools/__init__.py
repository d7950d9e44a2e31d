"""Command-line tools (python -m cvpack.tools.<name>)."""
