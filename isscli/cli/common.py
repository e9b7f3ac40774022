"""Options and helpers shared by several commands: each command's parameters are named like the fields of
its library request, so one function turns them into the request."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from isscli.models.presets import PRESETS
from isscli.spec.authors import load_rename_file, parse_renames

Request = TypeVar("Request")

SpecOption = typer.Option(
    None, "--spec", "-s", help="Group spec (native or authors' JSON). Default: derived from the checkpoint."
)
RenameOption = typer.Option([], "--rename", help="Map a spec tensor name to a checkpoint name, OLD=NEW (repeatable).")
RenameFileOption = typer.Option(
    None, "--rename-file", help="JSON object mapping spec tensor names to checkpoint names."
)
ForceOption = typer.Option(False, "--force", help="Replace the output file if it exists (never an input).")
ArchOption = typer.Option(None, "--arch", help="Model family for checkpoints without config: lm or classifier.")
ConfigOption = typer.Option(
    None,
    "--config",
    help=f"Model config JSON file, or a preset name ({', '.join(PRESETS)}), for checkpoints without one.",
)
DeviceOption = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (cuda when available).")


def renames_from(pairs: list[str], rename_file: Optional[Path]) -> dict[str, str]:
    """``--rename OLD=NEW`` pairs over a ``--rename-file`` mapping."""
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
