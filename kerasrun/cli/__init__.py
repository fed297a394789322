"""The `kerasrun` command: parse arguments, call the library, render results and errors as exit codes."""

from kerasrun.cli.app import app, main

__all__ = ["app", "main"]
