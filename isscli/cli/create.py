"""``isscli init`` and ``isscli import-pt``: get a checkpoint to work on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import typer

from isscli.atomic import check_output_path
from isscli.checkpoint import make_provenance, save_checkpoint
from isscli.cli.common import ForceOption, config_overrides
from isscli.cli.output import console, note
from isscli.errors import CheckpointError, IsscliError
from isscli.models import build_model, model_tensors


def init(
    config: str = typer.Option(
        ..., "--config", "--preset", help="A preset name (tiny, small, medium, large, …) or a config JSON file."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the checkpoint."),
    set_values: list[str] = typer.Option(
        [], "--set", help="Override a config field, KEY=JSON (e.g. hidden_sizes=[[300],[200]])."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the initialisation."),
    force: bool = ForceOption,
) -> None:
    """Write a freshly initialised model (a starting point for training, or to inspect its groups)."""
    check_output_path(output, overwrite=force)
    raw = config_overrides(config) or {}
    for item in set_values:
        key, sep, value = item.partition("=")
        if not sep:
            raise IsscliError(f"--set {item!r} is not KEY=VALUE", "write e.g. --set dropout=0.5")
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value
    torch.manual_seed(seed)
    model = build_model(raw)
    tensors = model_tensors(model)
    save_checkpoint(
        output, tensors, model.config.to_dict(), make_provenance("init", seed=seed, preset=config), overwrite=force
    )
    parameters = sum(t.numel() for t in tensors.values())
    console.print(f"{model.config.family} {model.config.cell} {model.config.hidden_sizes}: {parameters:,} parameters")
    note(f"checkpoint written to {output}")


def _state_dict_of(loaded: Any) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                return _state_dict_of(loaded[key])
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return loaded
    raise CheckpointError("the file holds no state_dict of tensors", "save the model's state_dict() with torch.save")


def import_pt(
    source: Path = typer.Argument(..., help="A torch.save file holding a state_dict."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the safetensors checkpoint."),
    force: bool = ForceOption,
) -> None:
    """Convert a torch.save state_dict (.pt) to safetensors; shared (tied) tensors are stored once."""
    check_output_path(output, [source], overwrite=force)
    if not source.is_file():
        raise CheckpointError(f"{source} not found", "check the path")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad pickles
        raise CheckpointError(
            f"{source} cannot be read by torch.load ({type(error).__name__})",
            "give a file written by torch.save(model.state_dict())",
        ) from None
    state = _state_dict_of(loaded)
    unique: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen[key] = name
        unique[name] = tensor
    save_checkpoint(
        output, unique, None, make_provenance("import-pt", source=str(source)), inputs=(source,), overwrite=force
    )
    note(f"{len(unique)} tensors written to {output}")
