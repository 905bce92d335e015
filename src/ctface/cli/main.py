"""Entry point: global options, error handling (one line, distinct exit codes), sub-commands.

Exit codes: 0 ok, 1 internal error (a bug: rerun with --debug for the traceback), 2 usage
(an unknown option, a bad option value: one line naming it), 3 missing data (face model, ...),
4 invalid input (an unreadable scan too: CT path arguments are declared ``readable=False`` so
the reader, not click, reports it), 5 output cannot be written, 6 no usable face in the CT,
7 the gallery cannot serve the request, 8 a server (PACS) cannot be reached; Ctrl-C stops
with exit 130 and leaves no partial output.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import Abort, TyperException

from ctface.errors import CtfaceError, GalleryError

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
        code = app(args=args, prog_name="ctface", standalone_mode=False)
    except TyperException as exc:  # usage errors (click's): one line, exit 2
        _usage_error(exc)
    except Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort), end of input at a prompt
        err.print("ctface: interrupted")
        sys.exit(130)
    except CtfaceError as exc:
        if debug:
            raise
        _fail("error", str(exc), exc.exit_code)
    except KeyboardInterrupt:
        err.print("ctface: interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        if type(exc) is sqlite3.DatabaseError:  # damaged past the pages its opening read
            _fail("error", f"the gallery database is damaged ({exc}): restore it from a backup",
                  GalleryError.exit_code)  # fmt: skip
        _fail("internal error", f"{type(exc).__name__}: {exc} (rerun with --debug)", 1)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)  # typer.Exit(code) in a command; 130: Ctrl-C


def _fail(label: str, text: str, code: int) -> NoReturn:
    err.print(f"[red]ctface: {label}:[/red] {escape(one_line(text))}", highlight=False,
              soft_wrap=True)  # fmt: skip
    sys.exit(code)


def one_line(text: str) -> str:
    """``text`` as one line of plain characters: line breaks and other control characters
    (a file name may hold them, or a terminal escape) written as escapes (``\\n``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _usage_error(exc: TyperException) -> None:
    """A usage error (unknown option, bad value, missing argument) as one line naming the
    command's --help; exit 2 (``no_args_is_help``: the help is printed already)."""
    if type(exc).__name__ != "NoArgsIsHelpError":
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = one_line(" ".join(exc.format_message().split()))
        err.print(f"[red]ctface: usage error:[/red] {escape(message)}{escape(hint)}",
                  highlight=False, soft_wrap=True)  # fmt: skip
    sys.exit(exc.exit_code)
