"""``isscli prune``: zero the ISS components whose group norm is at most τ, or the weakest down to a size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from isscli import api
from isscli.cli.common import ForceOption, RenameFileOption, RenameOption, SpecOption, claim_outputs, request_from
from isscli.cli.options import HELP, option
from isscli.cli.output import console, emit, note, table

if TYPE_CHECKING:
    from isscli.api.pruning import SetPruning


def prune(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to prune (left untouched)."),
    group_threshold: Optional[float] = option("group_threshold"),
    target_hidden: Optional[str] = option("target_hidden", "Instead: keep this many units per ISS set (e.g. "
                                                           "100,80), zeroing the weakest."),
    keep_fraction: Optional[float] = option("keep_fraction"),
    threshold: Optional[float] = option("threshold"),
    weight_threshold: Optional[float] = option("weight_threshold", "Also zero single weights with |w| < this (the "
                                                                   "paper uses τ = 1e-4)."),
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    data: Optional[Path] = option("data", HELP["model_data"]),
    input_shape: Optional[str] = option("input_shape"),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output checkpoint. Default: CKPT.pruned.safetensors."
    ),
    force: bool = ForceOption,
    json_path: Optional[Path] = option("json_path"),
) -> None:
    """Zero whole ISS components (and optionally small weights); write a new checkpoint of the same shape.

    Give one of --group-threshold (by norm), --target-hidden or --keep-fraction (by size: the weakest groups go).
    """
    from isscli.api.common import output_path  # the library, and torch, only when the command runs

    if threshold is not None:
        note("--threshold of prune is now --group-threshold (group norm ≤ τ); the old name will go", warning=True)
        group_threshold = threshold if group_threshold is None else group_threshold
    output = output_path(output, checkpoint, "pruned")
    claim_outputs(locals(), "output", "json_path")
    request = request_from(api.PruneRequest, locals())
    result = api.prune(request)

    def render() -> None:
        rows = [(s.name, s.components, s.alive_before, s.alive_after, s.alive_before - s.alive_after,
                 round(s.norm_min, 6), round(s.norm_median, 6)) for s in result.sets]
        columns = ("set", "K", "nonzero", "after", "zeroed", "‖w_k‖ min", "‖w_k‖ median")
        how = f"τ = {group_threshold:g}" if group_threshold is not None else "the weakest groups"
        console.print(table(f"prune {checkpoint} ({how})", columns, rows))
        console.print(f"weight sparsity of the grouped tensors: {result.weight_sparsity_before:.2%} → "
                      f"{result.weight_sparsity_after:.2%}")

    emit({"checkpoint": str(checkpoint), **result.to_json()}, json_path, render, "isscli.prune/1")
    if group_threshold is not None and all(s.alive_after == s.alive_before for s in result.sets):
        nothing_zeroed(result.sets, group_threshold)
    note(f"pruned checkpoint written to {result.output}")


def nothing_zeroed(sets: list[SetPruning], tau: float) -> None:
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
