"""``isscli sparsify``: one-shot magnitude pruning to a target sparsity, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, with_default_output, writes
from isscli.cli.options import option
from isscli.cli.output import console, emit, note, table


def sparsify(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint to prune (left untouched).")],
    sparsity: Annotated[float, option("sparsity")],
    output: Annotated[Optional[Path], option("output", "Output checkpoint. Default: CKPT.sparse.safetensors.")] = None,
    arch: Annotated[Optional[str], option("arch")] = None,
    config: Annotated[Optional[str], option("config")] = None,
    force: Annotated[bool, option("force")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
) -> None:
    """Zero the smallest-magnitude weights of the embedding and recurrent matrices; write a masked checkpoint.

    Each matrix keeps the same share (exact counts; a masked CKPT loses in proportion to what it keeps).
    Fine-tune the result with `isscli finetune`: the masks are kept.
    """
    request = with_default_output(api.SparsifyRequest(checkpoint=checkpoint, sparsity=sparsity, output=output,
                                                      arch=arch, config=config, force=force))
    claim(writes(request.output), writes(json_path, "json_path"), reads=reads_of(request), force=force)
    result = api.sparsify(request)

    def render() -> None:
        rows = [(m.tensor, "×".join(map(str, m.shape)), m.kept, m.total, f"{m.density:.2%}") for m in result.matrices]
        console.print(table(f"sparsify {checkpoint} (sparsity {sparsity:g})",
                            ("tensor", "shape", "kept", "entries", "density"), rows))
        console.print(f"kept {result.kept:,} of {result.total:,} weights (density {result.density:.2%})")

    emit(result.to_json(), json_path, render, "isscli.sparsify/1")
    note(f"masked checkpoint written to {result.output}")
