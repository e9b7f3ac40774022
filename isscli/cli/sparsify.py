"""``isscli sparsify``: one-shot magnitude pruning to a target sparsity, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from isscli.atomic import check_output_path
from isscli.checkpoint import load_checkpoint, make_provenance, save_checkpoint
from isscli.cli.common import ArchOption, ConfigOption, ForceOption, config_overrides, default_output
from isscli.cli.output import JSON_HELP, console, emit, note, table
from isscli.masks import check_sparsity, mask_counts, one_shot
from isscli.models import load_model, model_tensors


def sparsify(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to prune (left untouched)."),
    sparsity: float = typer.Option(
        ..., "--sparsity", help="Share of the embedding and recurrent weights to remove, smallest |w| first, in (0, 1)."
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output checkpoint. Default: CKPT.sparse.safetensors."
    ),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Zero the smallest-magnitude weights of the embedding and recurrent matrices; write a masked checkpoint.

    Each matrix keeps the same share (exact counts; a masked CKPT loses in proportion to what it keeps).
    Fine-tune the result with `isscli finetune`: the masks are kept.
    """
    check_sparsity(sparsity, "--sparsity")
    output = output or default_output(checkpoint, "sparse")
    check_output_path(output, [checkpoint], overwrite=force)
    loaded = load_checkpoint(checkpoint)
    model = load_model(loaded, arch, config_overrides(config))
    masks = one_shot(model, sparsity, loaded.masks or None)
    info = {"method": "magnitude", "schedule": "one-shot", "sparsity": sparsity}
    provenance = make_provenance("sparsify", loaded, masks=info, parent_provenance=loaded.provenance)
    save_checkpoint(output, model_tensors(model), model.config.to_dict(), provenance, inputs=(checkpoint,),
                    overwrite=force, masks=masks, mask_info={**info, **mask_counts(masks)})
    counts = mask_counts(masks)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "output": str(output),
        "sparsity": sparsity,
        "kept": counts["kept"],
        "total": counts["total"],
        "density": counts["density"],
        "matrices": [{"tensor": name, "shape": list(mask.shape), "kept": int(mask.sum()), "total": mask.numel()}
                     for name, mask in masks.items()],
    }

    def render() -> None:
        rows = [(m["tensor"], "×".join(map(str, m["shape"])), m["kept"], m["total"], f"{m['kept'] / m['total']:.2%}")
                for m in report["matrices"]]
        console.print(table(f"sparsify {checkpoint} (sparsity {sparsity:g})",
                            ("tensor", "shape", "kept", "entries", "density"), rows))
        console.print(f"kept {counts['kept']:,} of {counts['total']:,} weights (density {counts['density']:.2%})")

    emit(report, json_path, render)
    note(f"masked checkpoint written to {output}")
