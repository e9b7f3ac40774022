"""``isscli init`` and ``isscli import-pt``: get a checkpoint to work on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, writes
from isscli.cli.options import option
from isscli.cli.output import console, note, safe


def init(
    config: Annotated[str, option("config", "A preset name (tiny, small, medium, large, …) or a config JSON file.",
                                  flags=("--config", "--preset"))],
    output: Annotated[Path, option("output")],
    changes: Annotated[Optional[list[str]], option("changes")] = None,
    seed: Annotated[int, option("seed", "Random seed of the initialisation.")] = 0,
    force: Annotated[bool, option("force")] = False,
) -> None:
    """Write a freshly initialised model (a starting point for training, or to inspect its groups)."""
    claim(writes(output), reads=api.input_files(config=config), force=force)
    checkpoint = api.init(config, seed, changes or {})
    api.save(checkpoint, output, force)
    model = checkpoint.config
    assert model is not None  # init builds one of isscli's families
    console.print(safe(f"{model.family} {model.cell} {model.hidden_sizes}: {checkpoint.num_parameters():,} parameters"))
    note(f"checkpoint written to {output}")


def import_pt(
    source: Annotated[Path, typer.Argument(help="A torch.save file holding a state_dict.")],
    output: Annotated[Path, option("output", "Where to write the safetensors checkpoint.")],
    force: Annotated[bool, option("force")] = False,
) -> None:
    """Convert a torch.save state_dict (.pt) to safetensors; shared (tied) tensors are stored once."""
    claim(writes(output), reads=api.input_files(source=source), force=force)
    checkpoint = api.import_pt(source)
    api.save(checkpoint, output, force)
    note(f"{len(checkpoint.tensors)} tensors written to {output}")
