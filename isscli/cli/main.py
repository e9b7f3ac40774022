"""The ``isscli`` command: a thin Typer layer over the library API (:mod:`isscli.api`).

Errors in the user's input surface as one line on stderr and a nonzero exit code:
2 for bad input, 1 when a check fails (e.g. a compaction that is not exact), 130 on Ctrl-C,
70 for an internal error. ``--debug`` (or ``ISSCLI_DEBUG=1``) shows the traceback instead.
The library names parameters in its messages (```target_hidden```); :func:`flag_names` turns
them into the flags of the command that ran (``--target-hidden``).
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from isscli import __version__, api
from isscli.cli import (
    bench,
    compact,
    create,
    data,
    demo,
    evaluate,
    export,
    groups,
    prune,
    runs,
    show,
    shrink,
    sparsify,
    sweep,
)
from isscli.cli.common import held_outputs
from isscli.cli.output import console, err_console, safe
from isscli.io.atomic import first_line  # rendering: the first line of an internal error's message
from isscli.io.errors import INTERRUPTED

app = typer.Typer(
    name="isscli",
    help="Learn Intrinsic Sparse Structures (ISS) in LSTM/GRU/RNN models, then make them smaller and faster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)

#: Library names without a flag of the same name in the command that ran.
KNOWN_FLAGS = {"group_lasso": "--lambda", "checkpoint": "CKPT", "settings_file": "--settings", "lambdas": "--lambda",
               "renames": "--rename", "folder": "--output"}


def _show_version(value: bool) -> None:
    if value:
        print(f"isscli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_show_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """isscli: groups → finetune → prune → compact → bench."""
    # --debug is read by main() before parsing; it is declared here so that --help lists it.


app.add_typer(groups.app, name="groups")
app.command("init")(create.init)
app.command("import-pt")(create.import_pt)
app.command("prune")(prune.prune)
app.command("sparsify")(sparsify.sparsify)
app.command("compact")(compact.compact)
app.command("show")(show.show)
app.command("demo")(demo.demo)
app.command("train")(runs.train)
app.command("finetune")(runs.finetune)
app.command("eval")(evaluate.evaluate)
app.add_typer(data.app, name="data")
app.command("bench")(bench.bench)
app.command("shrink")(shrink.shrink)
app.command("export")(export.export)
app.command("sweep", context_settings=sweep.CONTEXT)(sweep.sweep)


def flag_names(args: list[str]) -> dict[str, str]:
    """Parameter name → its flag, for the (sub)command that ``args`` run."""
    command = typer.main.get_command(app)
    words = [arg for arg in args if not arg.startswith("-")]
    context = typer.Context(command)
    while isinstance(command, TyperGroup) and words:
        found = command.get_command(context, words.pop(0))
        if found is None:
            break
        command = found
    if isinstance(command, TyperGroup):  # `isscli groups CKPT` means `isscli groups show CKPT`
        command = command.get_command(context, "show") or command
    names = dict(KNOWN_FLAGS)
    for param in command.params:
        if param.param_type_name == "option":
            names[param.name or ""] = max(param.opts, key=len)
            if getattr(param, "secondary_opts", None):  # `verify`=False → --no-verify
                names[f"{param.name}=False"] = param.secondary_opts[0]
        elif param.param_type_name == "argument":
            names[param.name or ""] = param.metavar or (param.name or "").upper()
    return names


def in_flags(message: str, names: dict[str, str]) -> str:
    """```name``` → the flag of that name (``--name-with-dashes`` when the command has none)."""
    def flag(match: re.Match[str]) -> str:
        if match[2] and f"{match[1]}=False" in names:
            return names[f"{match[1]}=False"]
        return names.get(match[1], "--" + match[1].replace("_", "-")) + (match[2] or "")

    return re.sub(r"`([a-z_][a-z0-9_]*)`(=False)?", flag, message)


#: Errors of the machine, not of isscli: a full disk, a read-only folder, a quota (exit 2, one line).
MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app and turn every failure into a one-line message and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("ISSCLI_DEBUG") == "1"
    rank = int(os.environ.get("RANK", "0"))
    console.quiet = err_console.quiet = rank > 0  # launched by torchrun: rank 0 speaks for all
    try:
        with api.invoked_by("cli", command=shlex.join(["isscli", *args])), held_outputs():
            code = app(args=args, prog_name="isscli", standalone_mode=False)
    except typer.TyperException as error:  # usage errors: bad or missing options
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "isscli"
        err_console.print(f"[bold red]error:[/] {safe(error.format_message())} — see `{where} --help`",
                          soft_wrap=True)
        sys.exit(getattr(error, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C, and SIGTERM (isscli.io.errors.Terminated) alike
        err_console.print(INTERRUPTED)
        sys.exit(130)
    except api.IsscliError as error:
        if debug:
            raise
        err_console.quiet = False
        where = f"rank {rank}: " if rank > 0 else ""
        err_console.print(f"{where}[bold red]error:[/] " + safe(in_flags(str(error), flag_names(args))),
                          soft_wrap=True)
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - the last line of defence
        what = None if debug else machine_problem(error)
        if what is None:
            raise_internal(error, debug)
        err_console.print(f"[bold red]error:[/] {safe(what)} — free some space or memory, or choose smaller inputs "
                          "or another output folder", soft_wrap=True)
        sys.exit(2)
    if code == 130:
        err_console.print(INTERRUPTED)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def machine_problem(error: Exception) -> str | None:
    """What the machine lacked, when that is why the command failed (disk space, permission, memory); else None."""
    if isinstance(error, OSError) and error.errno in MACHINE_ERRNOS:
        return f"{error.strerror}{f': {error.filename}' if error.filename else ''}"
    if isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and (
            "can't allocate memory" in str(error) or "out of memory" in str(error))):
        return "out of memory"
    return None


def raise_internal(error: BaseException, debug: bool) -> None:
    """A bug of isscli: the traceback with ``--debug``, else one line (the first of the message) and exit 70."""
    if debug:
        raise error
    message = first_line(str(error))[:300]
    err_console.print(f"[bold red]internal error:[/] {safe(f'{type(error).__name__}: {message}')} "
                      "(please report it; rerun with --debug for the traceback)", soft_wrap=True)
    sys.exit(70)
