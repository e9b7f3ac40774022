"""Compaction's check: the compacted model computes what the input model computed, or nothing is written.

Both models run on the same inputs in the checkpoint's precision; their outputs may differ only by the rounding of
sums taken in another order (:data:`TOLERANCE`). :func:`isscli.compact` writes only what passed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from isscli.io.errors import IsscliError
from isscli.iss.equivalence import output_difference
from isscli.models.checkpoint import Checkpoint
from isscli.models.registry import config_after_surgery, load_model, resolve_config

#: Allowed output difference per unit of the largest |output| (rounding of sums in another order), by the
#: precision the check runs in: float64 for float64 checkpoints, float32 for the others (float16 and bfloat16
#: weights are exact in float32).
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
SIZE_FIELDS = ("hidden_sizes", "embedding_size")  # compaction changes them
MISSING_RECEIVER_HINT = (
    "the spec misses (or mislabels) a receiver of some hidden unit: derive it with `isscli groups CKPT`"
)


class CompactionMismatch(IsscliError):
    """The compacted model would not compute what the input model computes: nothing is written."""

    exit_code = 1


@dataclass
class Verification:
    """How the compacted model's outputs compare with the input model's on random inputs."""

    max_output_difference: float
    output_scale: float
    tolerance: float
    dtype: str  # the precision the check ran in: float64 for a float64 checkpoint, else float32
    inputs: str = "random inputs"  # what both models ran on
    relative: bool = False  # True: ``max_output_difference`` is already divided by ``output_scale`` (``model``)



def verify(
    before: Checkpoint, after: dict[str, torch.Tensor], arch: str | None, overrides: Mapping[str, Any] | None
) -> Verification:
    """Run the input model and the compacted tensors on random inputs, in the checkpoint's precision (float64 for
    float64 weights, else float32); refuse outputs that differ, and weights or outputs that are not finite."""
    unusable = sorted(name for name, tensor in before.tensors.items()
                      if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()))
    if unusable:
        raise CompactionMismatch(
            f"tensor(s) {', '.join(unusable[:3])} hold NaN or infinite values: the model's outputs are not finite, "
            "so compaction cannot be verified; nothing was written", "fix or re-create the checkpoint")
    precision = torch.float64 if any(t.dtype == torch.float64 for t in before.tensors.values()) else torch.float32
    config, _ = resolve_config(before, arch, overrides)
    size_free = {key: value for key, value in (overrides or {}).items() if key not in SIZE_FIELDS}
    with default_dtype(precision):
        reference = load_model(before, arch, overrides)
        try:
            candidate = load_model(Checkpoint(after, config_after_surgery(before.config, after)), arch, size_free)
        except IsscliError as error:
            raise CompactionMismatch(
                f"the compacted tensors do not form a consistent model ({error.message}); nothing was written",
                MISSING_RECEIVER_HINT,
            ) from None
        difference, scale = output_difference(reference, candidate, config)
    dtype = str(precision).removeprefix("torch.")
    tolerance = TOLERANCE[dtype] * max(1.0, scale)  # relative to the logits' size
    if not difference <= tolerance:  # NaN (outputs not finite) fails too
        raise CompactionMismatch(
            f"the compacted model's outputs differ by {difference:.3g} (> {tolerance:.3g}, {dtype}); nothing was "
            "written", MISSING_RECEIVER_HINT,
        )
    return Verification(difference, scale, tolerance, dtype)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Models built meanwhile hold ``dtype`` parameters (and load a checkpoint's weights without rounding)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
