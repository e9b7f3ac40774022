"""Group Lasso on ISS components (paper Eq. 2–4), L1 (Appendix A) and per-batch thresholding.

    R(w) = Σ_sets multiplier · Σ_k sqrt(ε + Σ_j w_kj²)          (ε = 1e-8)
    ∂R/∂w = Σ over the slices that hold w of  multiplier_k · w / ‖w_k‖       (Eq. 3)

The group vector w_k of a component is the union of its penalized slices: rows of the
gate blocks, one column of the recurrent matrix, one column of each receiver. A weight that
two slices of the same component both contain (the k-th row of a gate block meets column k
of ``weight_hh``) counts once per slice, exactly as the authors' TensorFlow code and
:func:`isscli.iss.surgery.group_sum_of_squares` count it.

Speed: every slice is a set of whole rows or columns, so ‖w_k‖² is a sum of *line* sums of
squares. Each (tensor, dim) pair is reduced to one value per line (:func:`reduce_lines`), and
the lines are added into their components with one ``index_add`` over index tensors built
once: no Python loop over components, no gathered copy of the weights. The gradient is never built
by autograd (whose temporaries the size of every weight matrix cost a third of a step of the
2×1500 LM): :meth:`GroupLasso.add_gradient_` adds ``scale · w · coefficient[line]`` into
``.grad`` in place, one ``addcmul_`` per (tensor, dim), after the data loss's backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from isscli.io.errors import SpecError
from isscli.iss.spec.schema import GroupSpec

EPSILON = 1e-8
CHUNK = 1 << 18  # elements: 1 MiB of float32, so that temporaries stay in the cache


def chunk_size(weight: torch.Tensor) -> int | None:
    """Elements per cache-sized chunk on a CPU; None on a GPU, where one whole-tensor kernel beats many small ones
    (and a loop of launches would stall the step)."""
    return None if weight.is_cuda else CHUNK


def reduce_lines(weight: torch.Tensor, dim: int, kind: str, chunk: int | None = CHUNK) -> torch.Tensor:
    """Σ w² (``kind="square"``) or Σ |w| (``"abs"``) of every line along ``dim``.

    Leading lines (rows) are contiguous: one fused ``vector_norm`` call does them. Other lines
    cut across memory, where a strided reduction is slow on a CPU, so there the tensor is read in
    cache-sized blocks of ``chunk`` elements whose partial sums are added up; with ``chunk=None``
    (GPUs) one reduction does it.
    """
    square = kind == "square"
    shape = weight.shape
    blocks = weight.reshape(math.prod(shape[:dim]), shape[dim], -1)
    if blocks.shape[0] == 1:
        norms: torch.Tensor = torch.linalg.vector_norm(blocks[0], 2.0 if square else 1.0, dim=1)
        return norms.square() if square else norms
    if chunk is None:
        return (blocks.square() if square else blocks.abs()).sum(dim=(0, 2))
    total = torch.zeros(shape[dim], dtype=weight.dtype, device=weight.device)
    rows = max(1, chunk // (blocks.shape[1] * blocks.shape[2]))
    for block in blocks.split(rows):
        total += (block.square() if square else block.abs()).sum(dim=(0, 2))
    return total


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

    def _line_values(self, kind: str, tensors: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Σ w² (``kind="square"``) or Σ |w| (``"abs"``) of every grouped line, in ``owners`` order."""
        source = self.parameters if tensors is None else tensors
        return torch.cat([
            reduce_lines(source[group.tensor], group.dim, kind, chunk_size(source[group.tensor])).index_select(
                0, group.lines)
            for group in self.groups
        ])

    def _per_component(self, line_values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.total, dtype=line_values.dtype, device=line_values.device).index_add(
            0, self.owners, line_values
        )

    @torch.no_grad()
    def squared_norms(self) -> torch.Tensor:
        """Σ_j w_kj² of every component of every set, concatenated: shape ``[Σ K]``."""
        return self._per_component(self._line_values("square"))

    @torch.no_grad()
    def norms(self) -> torch.Tensor:
        """‖w_k‖ = sqrt(ε + Σ_j w_kj²) per component (Eq. 4)."""
        return torch.sqrt(self.squared_norms() + self.epsilon)

    def penalty(self) -> float:
        """R(w) = Σ multiplier · ‖w_k‖ (λ is applied by the caller)."""
        return float((self.multipliers * self.norms()).sum())

    def _gradient(self, name: str) -> torch.Tensor:
        parameter = self.parameters[name]
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        return parameter.grad

    def per_component(self, per_set: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """One value per set → the same value for each of its components: shape ``[Σ K]``."""
        values = torch.as_tensor(per_set, dtype=self.multipliers.dtype).to(self.multipliers.device)
        if values.shape != (len(self.sizes),):
            raise ValueError(f"expected {len(self.sizes)} per-set values, got shape {tuple(values.shape)}")
        return values.repeat_interleave(torch.tensor(self.sizes, device=values.device))

    @torch.no_grad()
    def add_gradient_(self, scale: float, per_set: Sequence[float] | torch.Tensor | None = None) -> None:
        """``.grad += scale · ∂R/∂w`` for every regularized tensor, in place.

        ``per_set`` (one λ per set, in spec order) gives each set its own strength: set s then
        adds ``scale · per_set[s] · multiplier · w / ‖w_k‖`` (the λ controller's per-layer λ).
        """
        coefficient = scale * self.multipliers / self.norms()
        if per_set is not None:
            coefficient = coefficient * self.per_component(per_set)
        for group in self.groups:
            weight = self.parameters[group.tensor]
            per_line = torch.zeros(weight.shape[group.dim], dtype=weight.dtype, device=weight.device)
            per_line.index_copy_(0, group.lines, coefficient.index_select(0, group.owners))
            shape = [-1 if d == group.dim else 1 for d in range(weight.dim())]
            self._gradient(group.tensor).addcmul_(weight, per_line.view(shape))

    @torch.no_grad()
    def l1(self) -> float:
        """Σ |w| over the tensors the spec regularizes (Appendix A's ℓ1 term, without its D)."""
        return sum(float(torch.linalg.vector_norm(self.parameters[n], 1)) for n in self.tensor_names)

    @torch.no_grad()
    def add_l1_gradient_(self, scale: float) -> None:
        """``.grad += scale · sign(w)``: the (sub)gradient of ``scale · Σ|w|``, in place."""
        for name in self.tensor_names:
            self._gradient(name).add_(torch.sign(self.parameters[name]), alpha=scale)

    @torch.no_grad()
    def threshold_(self, tau: float) -> None:
        """Zero, in place, every weight with |w| < τ in the regularized tensors (paper, after Eq. 4).

        ``hardshrink`` at the largest float below τ zeroes exactly the |w| < τ; applied in
        cache-sized chunks it costs a sixth of a masked fill over the whole matrix on a CPU; on a
        GPU it is one kernel per tensor, and τ is computed on the host, so nothing waits for the GPU.
        """
        for name in self.tensor_names:
            weight = self.parameters[name]
            limit = torch.tensor(tau, dtype=weight.dtype)
            below = float(torch.nextafter(limit, torch.zeros_like(limit)))
            chunk = chunk_size(weight)
            for part in weight.view(-1).split(chunk) if chunk else (weight.view(-1),):
                part.copy_(F.hardshrink(part, below))

    @torch.no_grad()
    def component_sums(self, tensors: dict[str, torch.Tensor], kind: str = "abs") -> torch.Tensor:
        """Σ |x| (or Σ x²) over each component's lines of other tensors shaped like the parameters
        (gradients, 0/1 masks): shape ``[Σ K]``."""
        return self._per_component(self._line_values(kind, {name: tensors[name].float() for name in self.tensor_names}))

    @torch.no_grad()
    def fill_lines_(self, tensors: dict[str, torch.Tensor], components: torch.Tensor, value: float | bool) -> None:
        """Set, in place, every line (row or column) of the chosen components (a ``[Σ K]`` bool mask) to ``value``
        in ``tensors`` (shaped like the parameters: weights, gradients or masks; absent names are skipped)."""
        for group in self.groups:
            if group.tensor not in tensors:
                continue
            chosen = group.lines[components.index_select(0, group.owners)]
            if chosen.numel():
                tensors[group.tensor].index_fill_(group.dim, chosen, value)

    def entries(self) -> torch.Tensor:
        """How many weights each component's lines hold (counted as :meth:`component_sums` counts them): ``[Σ K]``."""
        counts = []
        for group in self.groups:
            weight = self.parameters[group.tensor]
            per_line = weight.numel() // weight.shape[group.dim]
            counts.append(torch.full((group.lines.numel(),), float(per_line), device=group.lines.device))
        return self._per_component(torch.cat(counts))

    def split(self, values: torch.Tensor) -> dict[str, torch.Tensor]:
        """A ``[Σ K]`` tensor cut into one piece per set."""
        return dict(zip((iss.name for iss in self.spec.sets), values.split(self.sizes), strict=True))

    @torch.no_grad()
    def alive(self) -> dict[str, int]:
        """Components per set whose group vector still has a nonzero weight (Σ|w| > 0: w² may underflow)."""
        counts = (self._per_component(self._line_values("abs")) > 0).split(self.sizes)
        return {iss.name: int(count.sum()) for iss, count in zip(self.spec.sets, counts, strict=True)}
