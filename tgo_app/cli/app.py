"""The typer application and the one place that turns errors into a one-line message.

Every mistake a user can make ends as ``tgo: error: <problem>; <fix>`` on stderr and a
non-zero status: tgo's own ``TgoError`` (status 2), a command-line usage error (status 2),
an interrupt (130). Anything else is a bug in tgo: it is reported in one line too, with the
way to get its traceback (``tgo --debug ...`` or ``TGO_DEBUG=1``) so it can be reported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from tgo_store.errors import TgoError
from tgo_store.no_space import no_space_error

DEBUG_ENV = "TGO_DEBUG"
BUG_EXIT_CODE = 1

app = typer.Typer(
    name="tgo",
    help="Transformer Geometry Observatory: record activations, measure their geometry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",  # panels; command summaries whole (click's plain help cuts them at 45 characters)
)


def _print_version(value: bool) -> None:
    if value:
        from tgo_analysis import __version__

        print(f"tgo {__version__}")
        raise typer.Exit()


def bool_flag(flag: str, help: str, default: bool = False, panel: str | None = None) -> Any:
    """A switch that reads well: ``--quiet`` when it is off by default (no ``--no-quiet``, no
    ``[default: no-quiet]``), ``--x/--no-x`` only when it is on by default."""
    spelling = flag if not default else f"{flag}/--no-{flag.removeprefix('--')}"
    return typer.Option(spelling, help=help, rich_help_panel=panel, show_default=bool(default), metavar="")


@app.callback()
def _options(
    debug: Annotated[bool, bool_flag("--debug", f"show the traceback of an unexpected error (or {DEBUG_ENV}=1)")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version, metavar="",
                                          help="print tgo's version and exit")] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


def debugging() -> bool:
    """Whether an unexpected error should keep its traceback (``--debug`` or ``TGO_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def fail(message: str, code: int = 2) -> None:
    """Print ``tgo: error: message`` on stderr and exit with ``code``."""
    print(f"tgo: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(code)


def usage_message(exc: Exception) -> str:
    """click's usage error in tgo's words: lower case, '; ' between clauses, and for an unknown option
    the one closest option of the command (click offers up to three, or none for a misspelling)."""
    from tgo_store.errors import did_you_mean

    if getattr(exc, "option_name", None) and hasattr(exc, "possibilities"):  # NoSuchOption (typer's click)
        ctx = exc.ctx
        known = [o for p in (ctx.command.params if ctx is not None else []) for o in (*p.opts, *p.secondary_opts)
                 if o.startswith("--")]
        return f"no option {exc.option_name}{did_you_mean(exc.option_name, known or exc.possibilities or [])}"
    text = exc.format_message().strip().rstrip(".").replace(". Did you mean", "; did you mean")
    return text[:1].lower() + text[1:]


def run(argv: Sequence[str] | None = None) -> None:
    """Run the app on ``argv`` (default: the command line); every failure ends in one stderr line."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="tgo", standalone_mode=False)
    except TgoError as exc:
        fail(str(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        fail("interrupted; re-run the same command to resume where it stopped", 130)
    except TyperException as exc:  # a command-line usage error (typer's click exceptions)
        ctx = getattr(exc, "ctx", None)
        if not exc.format_message():  # `tgo` alone: the help is printed, nothing is wrong to say
            raise SystemExit(getattr(exc, "exit_code", 2)) from None
        where = f"tgo {ctx.info_name} --help" if ctx is not None and ctx.info_name != "tgo" else "tgo --help"
        fail(f"{usage_message(exc)}; see `{where}`", getattr(exc, "exit_code", 2))
    except Exception as exc:
        full = no_space_error(exc)  # a full disk is ordinary: named, and a re-run resumes
        if full is not None:
            fail(str(full), full.exit_code)
        if debugging():
            raise
        first = " ".join(str(exc).split())[:200]
        fail(f"unexpected {type(exc).__name__}: {first}; this is a bug in tgo: re-run with `tgo --debug ...` "
             f"(or {DEBUG_ENV}=1) and report the traceback", BUG_EXIT_CODE)
    if isinstance(code, int) and code:
        raise SystemExit(code)
