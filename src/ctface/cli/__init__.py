"""The ``ctface`` command line: thin wrappers that parse, call the API and print."""

from ctface.cli.main import app, main

__all__ = ["app", "main"]
