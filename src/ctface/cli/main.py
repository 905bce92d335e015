"""Entry point: global options, error handling (one line, distinct exit codes), sub-commands.

Exit codes: 0 ok, 1 internal error (a bug: rerun with --debug for the traceback), 2 usage,
3 missing data (face model, ...), 4 invalid input, 5 output cannot be written, 6 no usable
face in the CT, 7 the gallery cannot serve the request, 8 a server (PACS) cannot be reached;
Ctrl-C stops
with click's 'Aborted!' (exit 1) and leaves no partial output.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from ctface.errors import CtfaceError

app = typer.Typer(
    name="ctface",
    help="Recognize which patient a head CT belongs to from the 3D face surface.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def _register() -> None:
    from ctface.cli import (  # noqa: F401
        deid,
        demo,
        embed,
        evaluate,
        gallery,
        landmarks,
        pacs,
        phantom,
        reconcile,
        render,
        serve,
        train,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn known errors into one line on stderr and a distinct exit code."""
    _register()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="ctface")  # usage errors: exit 2, printed by click
    except CtfaceError as exc:
        if debug:
            raise
        err.print(f"[red]ctface: error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("ctface: interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[red]ctface: internal error:[/red] {type(exc).__name__}: {escape(str(exc))} "
            "(rerun with --debug)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
