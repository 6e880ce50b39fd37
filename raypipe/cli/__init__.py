"""The `raypipe` command line: the commands (``commands``: each a YAML config, ``--set``
overrides and its own flags) and what each runs inside (``failures``: one-line errors and exit
codes)."""

from raypipe.cli.commands import app, main

__all__ = ["app", "main"]
