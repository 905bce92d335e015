"""`python -m ctface`: the command-line interface."""

from ctface.cli import main

main()
