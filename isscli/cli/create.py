"""``isscli init`` and ``isscli import-pt``: get a checkpoint to work on."""

from __future__ import annotations

from pathlib import Path

import typer

from isscli import api
from isscli.cli.common import ForceOption, claim_outputs
from isscli.cli.output import console, note, safe
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import parse_json


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
    claim_outputs(locals(), "output")
    changes = {}
    for item in set_values:
        key, sep, value = item.partition("=")
        if not sep:
            raise IsscliError(f"--set {item!r} is not KEY=VALUE", "write e.g. --set dropout=0.5")
        try:
            changes[key] = parse_json(value)
        except ValueError:  # not JSON (or nested absurdly deep): the text itself
            changes[key] = value
    checkpoint = api.new_model(config, seed, changes)
    api.save(checkpoint, output, force)
    model = checkpoint.config or {}
    console.print(safe(f"{model['family']} {model['cell']} {model['hidden_sizes']}: {checkpoint.num_parameters():,} "
                       "parameters"))
    note(f"checkpoint written to {output}")


def import_pt(
    source: Path = typer.Argument(..., help="A torch.save file holding a state_dict."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the safetensors checkpoint."),
    force: bool = ForceOption,
) -> None:
    """Convert a torch.save state_dict (.pt) to safetensors; shared (tied) tensors are stored once."""
    claim_outputs(locals(), "output")
    checkpoint = api.import_state_dict(source)
    api.save(checkpoint, output, force)
    note(f"{len(checkpoint.tensors)} tensors written to {output}")
