"""``isscli compact``: physically remove zero ISS components and write a smaller checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import typer

from isscli.atomic import check_output_path
from isscli.checkpoint import Checkpoint, load_checkpoint, make_provenance, save_checkpoint
from isscli.cli.common import (
    ArchOption,
    ConfigOption,
    ForceOption,
    RenameFileOption,
    RenameOption,
    SpecOption,
    config_overrides,
    default_output,
    resolve_spec,
)
from isscli.cli.output import JSON_HELP, console, emit, note, table
from isscli.equivalence import output_difference
from isscli.errors import IsscliError
from isscli.models.registry import config_after_surgery, load_model, resolve_config
from isscli.surgery import compact as compact_tensors

#: Allowed output difference per unit of the largest |output| (rounding of sums in another order).
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
SIZE_FIELDS = ("hidden_sizes", "embedding_size")  # compaction changes them
MISSING_RECEIVER_HINT = (
    "the spec misses (or mislabels) a receiver of some hidden unit: derive it with `isscli groups CKPT`"
)


class CompactionMismatch(IsscliError):
    exit_code = 1


def verify(
    before: Checkpoint, after: dict[str, torch.Tensor], arch: Optional[str], overrides: Optional[dict[str, Any]]
) -> tuple[float, float]:
    """Largest output difference between the input model and the compacted tensors, and the outputs' scale."""
    config, _ = resolve_config(before, arch, overrides)
    reference = load_model(before, arch, overrides)
    size_free = {key: value for key, value in (overrides or {}).items() if key not in SIZE_FIELDS}
    try:
        candidate = load_model(Checkpoint(after, config_after_surgery(before.config, after)), arch, size_free)
    except IsscliError as error:
        raise CompactionMismatch(
            f"the compacted tensors do not form a consistent model ({error.message}); nothing was written",
            MISSING_RECEIVER_HINT,
        ) from None
    return output_difference(reference, candidate, config)


def compact(
    checkpoint: Path = typer.Argument(..., help="A pruned checkpoint (left untouched)."),
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output checkpoint. Default: CKPT.compact.safetensors."
    ),
    verify_outputs: bool = typer.Option(
        True, "--verify/--no-verify", help="Compare the outputs of both models on random inputs before writing."
    ),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Remove every ISS component whose receivers are all zero; the smaller model computes the same outputs."""
    output = output or default_output(checkpoint, "compact")
    check_output_path(output, [checkpoint], overwrite=force)
    loaded = load_checkpoint(checkpoint)
    group_spec = resolve_spec(loaded, spec, rename, rename_file)
    result = compact_tensors(loaded.tensors, group_spec)
    new_config = config_after_surgery(loaded.config, result.tensors)

    difference = None
    runnable = loaded.config is not None or arch is not None or config is not None or _inferable(loaded)
    if verify_outputs and runnable:
        overrides = config_overrides(config)
        difference, scale = verify(loaded, result.tensors, arch, overrides)
        dtype = str(next(iter(loaded.tensors.values())).dtype).removeprefix("torch.")
        tolerance = TOLERANCE.get(dtype, 1e-2) * max(1.0, scale)  # relative to the logits' size
        if difference > tolerance:
            raise CompactionMismatch(
                f"the compacted model's outputs differ by {difference:.3g} (> {tolerance:g}); nothing was written",
                MISSING_RECEIVER_HINT,
            )
    provenance = make_provenance(
        "compact",
        loaded,
        spec=group_spec.to_json(),
        parent_provenance=loaded.provenance,
        kept_units={change.name: change.kept for change in result.sets},
        max_output_difference=difference,
    )
    save_checkpoint(output, result.tensors, new_config, provenance, inputs=(checkpoint,), overwrite=force)

    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "output": str(output),
        "sets": [{"name": c.name, "components_before": c.components, "components_after": c.after} for c in result.sets],
        "parameters_before": result.parameters_before,
        "parameters_after": result.parameters_after,
        "max_output_difference": difference,
    }

    def render() -> None:
        rows = [(c.name, c.components, c.after, c.components - c.after) for c in result.sets]
        console.print(table(f"compact {checkpoint}", ("set", "units before", "units after", "removed"), rows))
        ratio = result.parameters_before / max(result.parameters_after, 1)
        console.print(f"parameters: {result.parameters_before:,} → {result.parameters_after:,} ({ratio:.2f}× smaller)")
        if difference is not None:
            console.print(f"verified: max |output difference| = {difference:.3g} on random inputs")
        elif verify_outputs:
            console.print("not verified: the checkpoint has no config (pass --config or --arch to verify)")

    emit(report, json_path, render)
    note(f"compacted checkpoint written to {output}")


def _inferable(checkpoint: Checkpoint) -> bool:
    try:
        resolve_config(checkpoint)
    except IsscliError:
        return False
    return True
