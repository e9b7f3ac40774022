"""Options and helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from isscli.checkpoint import Checkpoint
from isscli.errors import IsscliError
from isscli.jsonfile import read_json_object
from isscli.models.presets import PRESETS, preset_config
from isscli.spec import GroupSpec, check_spec, derive_spec, load_spec
from isscli.spec.authors import attach_companion_biases, load_rename_file, parse_renames

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


def renames_from(pairs: list[str], rename_file: Optional[Path]) -> dict[str, str]:
    mapping = load_rename_file(rename_file) if rename_file else {}
    mapping.update(parse_renames(pairs))
    return mapping


def resolve_spec(
    checkpoint: Checkpoint, spec_path: Optional[Path], pairs: list[str], rename_file: Optional[Path]
) -> GroupSpec:
    """The spec from ``--spec`` (renamed, then checked) or derived from the checkpoint."""
    if spec_path is None:
        spec = derive_spec(checkpoint.tensors)
    else:
        spec = load_spec(spec_path, renames_from(pairs, rename_file))
        if spec.origin == "authors":
            attach_companion_biases(spec, checkpoint.tensors)
    check_spec(spec, checkpoint.tensors)
    return spec


def default_output(source: Path, tag: str) -> Path:
    """``model.safetensors`` → ``model.<tag>.safetensors`` beside it."""
    return source.with_name(f"{source.stem}.{tag}.safetensors")


def config_overrides(value: Optional[str]) -> Optional[dict[str, Any]]:
    """``--config``: a preset name or a JSON file holding (part of) a model config."""
    if value is None:
        return None
    if value in PRESETS:
        return preset_config(value)
    path = Path(value)
    if not path.is_file():
        raise IsscliError(f"config {value} is neither a preset nor a file", f"presets: {', '.join(PRESETS)}")
    return read_json_object(path, "config", '{"family": "lm", "dropout": 0.5}')
