"""Options and helpers shared by several commands: each command's parameters are named like the fields of
its library request, so one function turns them into the request."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from isscli.io.atomic import Output, check_outputs, output_lock
from isscli.models.presets import PRESETS

Request = TypeVar("Request")

SpecOption = typer.Option(
    None, "--spec", "-s", help="Group spec (native or authors' JSON). Default: derived from the checkpoint."
)
RenameOption = typer.Option([], "--rename", help="Map a spec tensor name to a checkpoint name, OLD=NEW (repeatable).")
RenameFileOption = typer.Option(
    None, "--rename-file", help="JSON object mapping spec tensor names to checkpoint names."
)
ForceOption = typer.Option(False, "--force", help="Replace the output file if it exists (never an input).")
ReportForceOption = typer.Option(False, "--force", help="Replace the --json report if it exists (never an input).")
ArchOption = typer.Option(None, "--arch", help="Model family for checkpoints without config: lm or classifier.")
ConfigOption = typer.Option(
    None,
    "--config",
    help=f"Model config JSON file, or a preset name ({', '.join(PRESETS)}), for checkpoints without one.",
)
DeviceOption = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (cuda when available).")


def renames_from(pairs: list[str], rename_file: Optional[Path]) -> dict[str, str]:
    """``--rename OLD=NEW`` pairs over a ``--rename-file`` mapping."""
    from isscli.iss.spec.authors import load_rename_file, parse_renames  # torch: only when a command runs

    mapping = load_rename_file(rename_file) if rename_file else {}
    mapping.update(parse_renames(pairs))
    return mapping


def request_from(cls: type[Request], arguments: dict[str, Any], **extra: Any) -> Request:
    """The library request of a command: its parameters of the same names as the request's fields, and
    ``renames`` from ``--rename``/``--rename-file``."""
    values = {f.name: arguments[f.name] for f in fields(cls) if f.name in arguments}  # type: ignore[arg-type]
    if "rename" in arguments:
        values["renames"] = renames_from(arguments["rename"], arguments.get("rename_file"))
    return cls(**{**values, **extra})


#: Parameters of commands that name files (or folders) the command reads: no output may be one of them.
INPUTS = ("checkpoint", "source", "spec", "check", "rename_file", "config", "against", "baseline", "data", "vocab",
          "settings_file")
_claims: list[ExitStack] = []  # one per running command: the outputs it holds


def command_inputs(arguments: Mapping[str, Any]) -> list[Path]:
    """The paths among a command's arguments that it reads (a ``--config`` preset name is no path)."""
    paths = [Path(arguments[name]) for name in INPUTS if isinstance(arguments.get(name), (str, Path))]
    return [path for path in paths if path.exists() or str(path) not in PRESETS]


def claim_outputs(
    arguments: Mapping[str, Any], *names: str, folders: Mapping[str, Sequence[str]] | None = None,
    extra: Sequence[Output] = (), lock: bool = True,
) -> None:
    """Check every output of a command — the parameters ``names`` (files), ``folders`` (with the files the
    command writes into each) and ``extra`` — against its inputs and each other, before any work
    (:func:`isscli.io.atomic.check_outputs`; ``--force`` from ``arguments``), then hold them until the command ends,
    so that a second run writing the same output is refused meanwhile."""
    outputs = [Output(Path(arguments[name]), name) for name in names
               if arguments.get(name) is not None and str(arguments[name]) != "-"]
    outputs += [Output(Path(arguments[name]), name, folder=True, files=tuple(files))
                for name, files in (folders or {}).items() if arguments.get(name) is not None]
    outputs += list(extra)
    check_outputs(outputs, command_inputs(arguments), bool(arguments.get("force")))
    if lock and _claims:
        for output in outputs:
            _claims[-1].enter_context(output_lock(output.path))


def claim_run_outputs(arguments: Mapping[str, Any]) -> None:
    """``train``/``finetune``: OUT, its log and its resume file (which the run may replace: ``resume``, ``force``)
    and the ``--json`` report, checked before any work; the run itself holds OUT (:func:`isscli.api.runs.train`)."""
    from isscli.api.common import output_path
    from isscli.learn.run import RunPaths

    output, checkpoint = arguments.get("output"), arguments.get("checkpoint")
    if output is None and checkpoint is not None:
        output = output_path(None, checkpoint, "iss")
    paths = RunPaths(Path(output)) if output is not None else None
    run = [Output(path, "output", replace=True) for path in (paths.output, paths.log, paths.resume)] if paths else []
    claim_outputs(arguments, "json_path", extra=run, lock=False)


@contextmanager
def held_outputs() -> Iterator[None]:
    """The scope of one command (:func:`isscli.cli.main.main`): what :func:`claim_outputs` holds is let go after."""
    with ExitStack() as stack:
        _claims.append(stack)
        try:
            yield
        finally:
            _claims.pop()
