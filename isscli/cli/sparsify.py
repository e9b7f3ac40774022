"""``isscli sparsify``: one-shot magnitude pruning to a target sparsity, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli.cli.common import ArchOption, ConfigOption, ForceOption, claim_outputs, request_from
from isscli.cli.output import JSON_HELP, console, emit, note, table


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
    from isscli.api.common import output_path  # the library, and torch, only when the command runs
    from isscli.api.masking import SparsifyRequest
    from isscli.api.masking import sparsify as sparsify_checkpoint

    output = output_path(output, checkpoint, "sparse")
    claim_outputs(locals(), "output", "json_path")
    result = sparsify_checkpoint(request_from(SparsifyRequest, locals()))
    report = {"checkpoint": str(checkpoint), "output": str(result.output), "sparsity": sparsity, "kept": result.kept,
              "total": result.total, "density": result.density, "matrices": result.matrices}

    def render() -> None:
        rows = [(m["tensor"], "×".join(map(str, m["shape"])), m["kept"], m["total"], f"{m['kept'] / m['total']:.2%}")
                for m in result.matrices]
        console.print(table(f"sparsify {checkpoint} (sparsity {sparsity:g})",
                            ("tensor", "shape", "kept", "entries", "density"), rows))
        console.print(f"kept {result.kept:,} of {result.total:,} weights (density {result.density:.2%})")

    emit(report, json_path, render, "isscli.sparsify/1")
    note(f"masked checkpoint written to {result.output}")
