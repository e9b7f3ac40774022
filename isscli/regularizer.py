"""Group Lasso on ISS components (paper Eq. 2–4), L1 (Appendix A) and per-batch thresholding.

    R(w) = Σ_sets multiplier · Σ_k sqrt(ε + Σ_j w_kj²)          (ε = 1e-8)

The group vector w_k of a component is the union of its penalized slices: rows of the
gate blocks, one column of the recurrent matrix, one column of each receiver. A weight that
two slices of the same component both contain (the k-th row of a gate block meets column k
of ``weight_hh``) counts once per slice, exactly as the authors' TensorFlow code and
:func:`isscli.surgery.group_sum_of_squares` count it.

Speed: every slice is a set of whole rows or columns, so Σ_j w_kj² is a sum of *line sums*.
Each tensor is squared once, reduced to one sum per row (or column) in a single call, and all
line sums are added into their components with one ``index_add`` over index tensors built
once. There is no Python loop over components, and no copy of the weights is gathered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from isscli.errors import SpecError
from isscli.spec.schema import GroupSpec

EPSILON = 1e-8


@dataclass(frozen=True)
class _Lines:
    """One (tensor, dim) pair: which of its lines belong to which component."""

    tensor: str
    dim: int
    lines: torch.Tensor  # indices along ``dim``
    owners: torch.Tensor  # global component index of each line


class GroupLasso:
    """The ISS regularizer over live parameters; build it once, call it every batch."""

    def __init__(self, spec: GroupSpec, parameters: dict[str, torch.Tensor], epsilon: float = EPSILON) -> None:
        self.spec = spec
        self.parameters = parameters
        self.epsilon = epsilon
        self.sizes = [iss.components for iss in spec.sets]
        starts = torch.tensor([0, *self.sizes]).cumsum(0).tolist()
        self.total = starts[-1]
        device = next(iter(parameters.values())).device
        self.multipliers = torch.cat(
            [torch.full((iss.components,), iss.multiplier) for iss in spec.sets]
        ).to(device)
        grouped: dict[tuple[str, int], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for start, iss in zip(starts[:-1], spec.sets, strict=True):
            for piece in iss.penalized:
                if piece.tensor not in parameters:
                    raise SpecError(
                        f"set {iss.name!r} names tensor {piece.tensor!r}, which the model does not have",
                        "derive the spec from this checkpoint, or map names with --rename",
                    )
                index = piece.indices(iss.components)
                lines, owners = grouped.setdefault((piece.tensor, piece.dim), ([], []))
                lines.append(index.flatten())
                owners.append((start + torch.arange(iss.components)).expand_as(index).flatten())
        self.groups = [
            _Lines(name, dim, torch.cat(lines).to(device), torch.cat(owners).to(device))
            for (name, dim), (lines, owners) in sorted(grouped.items())
        ]
        self.owners = torch.cat([group.owners for group in self.groups])
        self.tensor_names = sorted({group.tensor for group in self.groups})

    def squared_norms(self) -> torch.Tensor:
        """Σ_j w_kj² of every component of every set, concatenated: shape ``[Σ K]``."""
        return self._component_sums(torch.square)

    def _component_sums(self, elementwise: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Σ_j f(w_kj) per component: f once per tensor, one reduction per (tensor, dim), one index_add."""
        transformed = {name: elementwise(self.parameters[name]) for name in self.tensor_names}
        line_sums = []
        for group in self.groups:
            values = transformed[group.tensor]
            other = [d for d in range(values.dim()) if d != group.dim]
            line_sums.append(values.sum(dim=other).index_select(0, group.lines))
        flat = torch.cat(line_sums)
        return torch.zeros(self.total, dtype=flat.dtype, device=flat.device).index_add(0, self.owners, flat)

    def penalty(self) -> torch.Tensor:
        """R(w) = Σ multiplier · sqrt(ε + Σ w²), differentiable (λ is applied by the caller)."""
        return (self.multipliers * torch.sqrt(self.squared_norms() + self.epsilon)).sum()

    def l1(self) -> torch.Tensor:
        """Σ |w| over the tensors the spec regularizes (Appendix A's ℓ1 term, without its D)."""
        return sum(self.parameters[name].abs().sum() for name in self.tensor_names)  # type: ignore[return-value]

    @torch.no_grad()
    def threshold_(self, tau: float) -> None:
        """Zero, in place, every weight with |w| < τ in the regularized tensors (paper, after Eq. 4)."""
        for name in self.tensor_names:
            weight = self.parameters[name]
            weight.masked_fill_(weight.abs() < tau, 0.0)

    @torch.no_grad()
    def alive(self) -> dict[str, int]:
        """Components per set whose group vector still has a nonzero weight (|w| sums: w² may underflow)."""
        counts = (self._component_sums(torch.abs) > 0).split(self.sizes)
        return {iss.name: int(count.sum()) for iss, count in zip(self.spec.sets, counts, strict=True)}
