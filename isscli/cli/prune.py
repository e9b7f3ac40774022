"""``isscli prune``: zero the ISS components whose group norm is at most τ, or the weakest down to a size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, with_default_output, writes
from isscli.cli.options import MODEL_DATA, option, renamed
from isscli.cli.output import console, emit, note, table


def prune(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint to prune (left untouched).")],
    group_threshold: Annotated[Optional[float], option("group_threshold")] = None,
    target_hidden: Annotated[Optional[str], option("target_hidden", "Instead: keep this many units per ISS set (e.g. "
                                                                    "100,80), zeroing the weakest.")] = None,
    keep_fraction: Annotated[Optional[float], option("keep_fraction")] = None,
    threshold: Annotated[Optional[float], option("threshold")] = None,
    weight_threshold: Annotated[Optional[float], option("weight_threshold", "Also zero single weights with |w| < "
                                                                            "this (the paper uses τ = 1e-4).")] = None,
    spec: Annotated[Optional[Path], option("spec")] = None,
    rename: Annotated[Optional[list[str]], option("rename")] = None,
    rename_file: Annotated[Optional[Path], option("rename_file")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    data: Annotated[Optional[Path], option("data", MODEL_DATA)] = None,
    input_shape: Annotated[Optional[str], option("input_shape")] = None,
    output: Annotated[Optional[Path], option("output", "Output checkpoint. Default: CKPT.pruned.safetensors.")] = None,
    force: Annotated[bool, option("force")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
) -> None:
    """Zero whole ISS components (and optionally small weights); write a new checkpoint of the same shape.

    Give one of --group-threshold (by norm), --target-hidden or --keep-fraction (by size: the weakest groups go).
    """
    group_threshold = renamed("threshold", threshold, "group_threshold", group_threshold)
    request = with_default_output(api.PruneRequest(
        checkpoint=checkpoint, group_threshold=group_threshold, target_hidden=target_hidden,
        keep_fraction=keep_fraction, weight_threshold=weight_threshold, spec=spec,
        renames=api.read_renames(rename, rename_file), model=model, model_args=model_args, data=data,
        input_shape=input_shape, output=output, force=force))
    claim(writes(request.output), writes(json_path, "json_path"), reads=reads_of(request, rename_file),
          force=force)
    result = api.prune(request)

    def render() -> None:
        rows = [(s.name, s.components, s.alive_before, s.alive_after, s.alive_before - s.alive_after,
                 round(s.norm_min, 6), round(s.norm_median, 6)) for s in result.sets]
        columns = ("set", "K", "nonzero", "after", "zeroed", "‖w_k‖ min", "‖w_k‖ median")
        how = f"τ = {group_threshold:g}" if group_threshold is not None else "the weakest groups"
        console.print(table(f"prune {checkpoint} ({how})", columns, rows))
        console.print(f"weight sparsity of the grouped tensors: {result.weight_sparsity_before:.2%} → "
                      f"{result.weight_sparsity_after:.2%}")

    emit(result.to_json(), json_path, render, "isscli.prune/1")
    if group_threshold is not None and all(s.alive_after == s.alive_before for s in result.sets):
        nothing_zeroed(result.sets, group_threshold)
    note(f"pruned checkpoint written to {result.output}")


def nothing_zeroed(sets: list[api.SetPruning], tau: float) -> None:
    """Say why a threshold zeroed nothing. Groups already exactly zero (a size-target run ends with them) are
    confirmed, the step docs/ci.md runs after such a run; otherwise τ is below every norm, and a larger one is the
    advice."""
    already = sum(s.components - s.alive_before for s in sets)
    alive = [s.norm_min for s in sets if s.alive_before > 0]
    above = f"every other group norm is above {tau:g} (the smallest is {min(alive):.3g})" if alive else \
        "no group is left"
    if already:
        note(f"nothing more to zero: {already:,} group(s) were already exactly zero and {above} — the checkpoint's "
             "zeros are confirmed; compact removes them")
        return
    note(f"no group norm is ≤ {tau:g} (the smallest is {min(alive):.3g}): nothing was zeroed — give a larger "
         "--group-threshold, or a size with --target-hidden / --keep-fraction", warning=True)
