"""Tensor surgery on ISS groups: group norms, pruning (zeroing) and compaction (removal).

Everything works on a flat ``{name: tensor}`` dict and a :class:`GroupSpec`, so it applies
equally to this package's models, to plain ``state_dict`` files and to TensorFlow-layout
checkpoints. Inputs are never modified; results are new dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from isscli.io.errors import IsscliError
from isscli.iss.spec.schema import GroupSpec, IssSet, TensorSlice


def component_values(tensor: torch.Tensor, piece: TensorSlice, components: int) -> torch.Tensor:
    """The slice's entries of every component: ``[blocks, components, rest]``.

    Differentiable (it is an index), so the regularizer can use it on live parameters.
    """
    index = piece.indices(components).to(tensor.device).flatten()
    picked = tensor.movedim(piece.dim, 0).index_select(0, index)
    return picked.reshape(piece.blocks, components, -1)


def group_sum_of_squares(tensors: dict[str, torch.Tensor], iss: IssSet) -> torch.Tensor:
    """Σ w² over each component's group vector (penalized slices): shape ``[components]``."""
    total = None
    for piece in iss.penalized:
        part = component_values(tensors[piece.tensor], piece, iss.components).pow(2).sum(dim=(0, 2))
        total = part if total is None else total + part
    if total is None:
        return torch.zeros(iss.components)
    return total


def group_norms(tensors: dict[str, torch.Tensor], iss: IssSet, epsilon: float = 0.0) -> torch.Tensor:
    """‖w_k‖₂ = sqrt(ε + Σ w²) per component (paper Eq. 4; ε = 0 for reporting)."""
    return torch.sqrt(group_sum_of_squares(tensors, iss).float() + epsilon)


def _all_zero(tensors: dict[str, torch.Tensor], iss: IssSet, slices: list[TensorSlice]) -> torch.Tensor:
    zero = torch.ones(iss.components, dtype=torch.bool)
    for piece in slices:
        values = component_values(tensors[piece.tensor], piece, iss.components)
        zero &= ~(values != 0).any(dim=2).any(dim=0).cpu()
    return zero


def alive_components(tensors: dict[str, torch.Tensor], iss: IssSet) -> torch.Tensor:
    """Components whose group vector has any nonzero weight."""
    return ~_all_zero(tensors, iss, iss.penalized)


def removable_components(tensors: dict[str, torch.Tensor], iss: IssSet) -> torch.Tensor:
    """Components whose receivers are all zero: h_k then reaches nothing, so removal is exact."""
    return _all_zero(tensors, iss, iss.receivers)


def zero_components(tensors: dict[str, torch.Tensor], iss: IssSet, mask: torch.Tensor) -> None:
    """Zero, in place, the group vectors of the components where ``mask`` is true."""
    chosen = torch.nonzero(mask).flatten()
    if chosen.numel() == 0:
        return
    for piece in iss.penalized:
        index = piece.indices(iss.components)[:, chosen].flatten()
        tensors[piece.tensor].index_fill_(piece.dim, index, 0)


def weight_sparsity(tensors: dict[str, torch.Tensor], names: list[str]) -> float:
    total = sum(tensors[name].numel() for name in names)
    zeros = sum(int((tensors[name] == 0).sum()) for name in names)
    return zeros / total if total else 0.0


def count_parameters(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors.values())


def penalized_tensor_names(spec: GroupSpec) -> list[str]:
    return sorted({piece.tensor for iss in spec.sets for piece in iss.penalized})


@dataclass
class SetChange:
    """What happened to one ISS set."""

    name: str
    components: int
    before: int
    after: int
    kept: list[int] = field(default_factory=list)


@dataclass
class PrunedTensors:
    tensors: dict[str, torch.Tensor]
    sets: list[SetChange]
    sparsity_before: float
    sparsity_after: float


def prune(
    tensors: dict[str, torch.Tensor],
    spec: GroupSpec,
    group_threshold: float,
    weight_threshold: float | None = None,
    chosen: list[torch.Tensor] | None = None,
) -> PrunedTensors:
    """Zero every component whose group norm is ≤ ``group_threshold`` (or, per set, those ``chosen``);
    optionally single weights below ``weight_threshold``.

    All norms are measured on the input before anything is zeroed, so the result does not
    depend on the order of the sets (neighbouring sets share tensors).
    """
    names = penalized_tensor_names(spec)
    result = {name: tensor.clone() for name, tensor in tensors.items()}
    before = [int(alive_components(tensors, iss).sum()) for iss in spec.sets]
    doomed = chosen if chosen is not None else [group_norms(tensors, iss) <= group_threshold for iss in spec.sets]
    for iss, mask in zip(spec.sets, doomed):
        zero_components(result, iss, mask)
    if weight_threshold is not None:
        for name in names:
            result[name][result[name].abs() < weight_threshold] = 0
    changes = [
        SetChange(iss.name, iss.components, count, int(alive_components(result, iss).sum()))
        for iss, count in zip(spec.sets, before)
    ]
    return PrunedTensors(result, changes, weight_sparsity(tensors, names), weight_sparsity(result, names))


@dataclass
class CompactedTensors:
    tensors: dict[str, torch.Tensor]
    sets: list[SetChange]
    parameters_before: int
    parameters_after: int


def compact(tensors: dict[str, torch.Tensor], spec: GroupSpec) -> CompactedTensors:
    """Remove every component whose receivers are all zero and return the smaller tensors.

    Removing such a component is exact: h_k is multiplied only by the receiver weights, all
    zero, so it never reaches another unit, the next layer or the output; what computes h_k
    (gate rows, biases, c_k) then has no effect and goes with it.
    """
    removed: dict[tuple[str, int], set[int]] = {}
    changes = []
    for iss in spec.sets:
        dropped = removable_components(tensors, iss)
        kept = torch.nonzero(~dropped).flatten().tolist()
        if not kept:
            raise IsscliError(
                f"set {iss.name!r}: all {iss.components} components are zero, so compaction would leave no units",
                "the model is dead: train with a smaller λ or prune with a lower `group_threshold`",
            )
        changes.append(SetChange(iss.name, iss.components, iss.components, len(kept), kept))
        chosen = torch.nonzero(dropped).flatten()
        for piece in iss.slices:
            dropped_indices = piece.indices(iss.components)[:, chosen].flatten().tolist()
            removed.setdefault((piece.tensor, piece.dim), set()).update(dropped_indices)
    result = dict(tensors)
    for (name, dim), indices in sorted(removed.items()):
        if not indices:
            continue
        size = result[name].shape[dim]
        keep = torch.tensor([i for i in range(size) if i not in indices], dtype=torch.long)
        result[name] = result[name].index_select(dim, keep).contiguous()
    return CompactedTensors(result, changes, count_parameters(tensors), count_parameters(result))
