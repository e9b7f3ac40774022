"""Unstructured sparsity as weight masks: SET, and magnitude pruning (one-shot and gradual).

A mask is a boolean tensor shaped like the weight matrix it masks; True keeps the connection.
The masked matrices are the embedding and every weight matrix of the recurrent layers
(``W_ih`` and ``W_hh`` of each layer and direction; :func:`maskable_names`). The output layer
(decoder or classifier) stays dense, as in SET-LSTM; with tied weights the embedding's mask
is also the decoder's.

**Density is counted, never sampled**: it is kept connections / entries over all the masked
matrices together, and a density D keeps exactly ``round(D·N)`` of the N entries (a sparsity
S removes exactly ``round(S·N)``).

* :func:`erdos_renyi_masks`: SET's initial topology (Mocanu et al. 2018, used by SET-LSTM,
  Liu et al. 2019). A matrix of n_out × n_in keeps ε(n_in + n_out) connections (the
  Erdős–Rényi probability ε(n_in + n_out)/(n_in·n_out) times its size), at most all of them;
  ε is solved so that the counts add up to ``round(D·N)`` exactly (matrices that would exceed
  1 are kept whole and the rest shares what is left), then the fractions are apportioned by
  largest remainders and each matrix's connections are drawn uniformly at random.
* :func:`prune_and_regrow`: SET's evolution step, after every epoch but the last: in each
  matrix, remove ⌊ζ·P⌋ of its P positive kept weights (the smallest) and ⌊ζ·M⌋ of its M
  other kept weights (the negative ones closest to zero; an exact 0 counts as closest), then
  regrow as many connections at positions drawn uniformly among the matrix's empty ones (a
  connection just removed may be drawn again). Every matrix keeps its count exactly.
  **Regrown weights start at 0** (:data:`REGROW_VALUE`): a new connection changes no output
  until training moves it, and the optimizer's state at changed positions is reset to 0.
* :func:`magnitude_prune`: keep the largest-magnitude connections. Each matrix loses in
  proportion to what it keeps (from a dense model: the same sparsity in every matrix, as in
  Zhu & Gupta 2017 and Narang et al. 2017), and inside a matrix the smallest |w| go first
  (ties: the later position goes first).
* :func:`gradual_sparsity`: Zhu & Gupta (2017)'s schedule, s_t = s_f + (s_i − s_f)(1 − (t −
  t0)/(n·Δt))³, over the mini-batches t0 … t0 + n·Δt, pruning every Δt batches and at the last.

:mod:`isscli.learn.mask_hooks` plugs this into :class:`isscli.learn.loop.Trainer`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.runtime.unstructured import recurrent_part_name

Masks = dict[str, Tensor]

METHODS = ("dense", "set")
#: SET's share of connections removed and regrown after each epoch (Mocanu et al. 2018: 0.3).
DEFAULT_ZETA = 0.3
#: The value every regrown connection starts from.
REGROW_VALUE = 0.0
#: Mini-batches between two steps of gradual magnitude pruning (Zhu & Gupta: 100 to 1000).
DEFAULT_PRUNE_EVERY = 100
#: Keys of a checkpoint's mask info that describe the masks' current counts (not how they were made).
COUNT_KEYS = ("kept", "total", "density")


# -- which matrices, and counting ------------------------------------------------------------

def maskable_names(model: nn.Module) -> list[str]:
    """The embedding and the recurrent layers' weight matrices, in the model's order."""
    part = recurrent_part_name(model) + "."
    return [name for name, parameter in model.named_parameters()
            if name == "encoder.weight" or (name.startswith(part) and parameter.dim() == 2)]


def count_of(total: int, share: float) -> int:
    """``round(share · total)``, halves rounded up."""
    return min(total, math.floor(share * total + 0.5))


def density(masks: Masks) -> float:
    total = sum(mask.numel() for mask in masks.values())
    return sum(int(mask.sum()) for mask in masks.values()) / total if total else 1.0


@dataclass(frozen=True)
class MaskCounts:
    """The weights masks keep, of how many, and their share: what a checkpoint records beside its masks."""

    kept: int
    total: int
    density: float

    def to_json(self) -> JSONObject:
        """As the checkpoint's mask info holds them (:data:`COUNT_KEYS`)."""
        return asdict(self)


def mask_counts(masks: Masks) -> MaskCounts:
    """The counts of ``masks``, all matrices together."""
    kept, total = sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())
    return MaskCounts(kept, total, kept / total if total else 1.0)


def apportion(shares: dict[str, float], caps: dict[str, int], total: int) -> dict[str, int]:
    """Integers within 1 of ``shares`` (which sum to ``total``), at most ``caps``, summing to ``total`` exactly.

    Largest remainders first; ties by name, so the result is deterministic.
    """
    counts = {name: min(caps[name], max(0, math.floor(share))) for name, share in shares.items()}
    by_remainder = sorted(shares, key=lambda name: (-(shares[name] - math.floor(shares[name])), name))
    left = total - sum(counts.values())
    while left > 0:
        room = [name for name in by_remainder if counts[name] < caps[name]]
        if not room:
            raise ValueError(f"cannot place {total} in capacities summing to {sum(caps.values())}")
        for name in room[:left]:
            counts[name] += 1
        left = total - sum(counts.values())
    while left < 0:  # only from rounding noise in the shares
        for name in reversed(by_remainder):
            if counts[name] > 0 and left < 0:
                counts[name] -= 1
                left += 1
    return counts


def check_density(value: float, name: str = "density") -> float:
    if not 0 < value <= 1:
        raise IsscliError(f"`{name}` {value:g} is outside (0, 1]",
                          f"give the share of connections to keep, e.g. `{name}`=0.1")
    return value


def check_zeta(value: float) -> float:
    if not 0 <= value < 1:
        raise IsscliError(f"`zeta` {value:g} is outside [0, 1)",
                          "give the share of connections to remove and regrow each epoch, e.g. `zeta`=0.3")
    return value


def check_sparsity(value: float, name: str) -> float:
    if not 0 < value < 1:
        raise IsscliError(f"`{name}` {value:g} is outside (0, 1)",
                          f"give the share of weights to remove, e.g. `{name}`=0.9")
    return value


# -- Erdős–Rényi initial masks ---------------------------------------------------------------

def erdos_renyi_counts(shapes: dict[str, tuple[int, ...]], target_density: float) -> dict[str, int]:
    """Connections per matrix: ε(n_in + n_out) each, capped at its size, summing to ``round(D·N)`` exactly."""
    check_density(target_density)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    keep = count_of(sum(sizes.values()), target_density)
    spread = {name: float(sum(shape)) for name, shape in shapes.items()}  # n_in + n_out
    full: set[str] = set()
    epsilon = math.inf
    while len(full) < len(shapes):
        free = [name for name in shapes if name not in full]
        epsilon = (keep - sum(sizes[name] for name in full)) / sum(spread[name] for name in free)
        saturated = [name for name in free if epsilon * spread[name] >= sizes[name]]
        if not saturated:
            break
        full.update(saturated)
    shares = {name: float(sizes[name]) if name in full else epsilon * spread[name] for name in shapes}
    return apportion(shares, sizes, keep)


def random_mask(shape: tuple[int, ...], count: int, generator: torch.Generator) -> Tensor:
    """``count`` True entries at uniformly random places."""
    numel = math.prod(shape)
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:count]] = True
    return mask.view(shape)


def erdos_renyi_masks(shapes: dict[str, tuple[int, ...]], target_density: float, generator: torch.Generator) -> Masks:
    counts = erdos_renyi_counts(shapes, target_density)
    return {name: random_mask(tuple(shapes[name]), counts[name], generator) for name in shapes}


# -- SET: prune and regrow -------------------------------------------------------------------

@torch.no_grad()
def prune_and_regrow(
    weight: Tensor, mask: Tensor, zeta: float, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """One SET step on one matrix: ``(new mask, removed-or-regrown positions, regrown positions)``.

    The weights are not touched; :meth:`SetEvolution.evolve` zeroes the removed ones and sets
    the regrown ones to :data:`REGROW_VALUE`.
    """
    flat_weight, flat_mask = weight.detach().reshape(-1), mask.reshape(-1)
    kept = flat_mask.nonzero().squeeze(1)
    values = flat_weight[kept]
    positive, other = kept[values > 0], kept[values <= 0]
    drop_positive = math.floor(zeta * positive.numel() + 1e-9)
    drop_other = math.floor(zeta * other.numel() + 1e-9)
    smallest = torch.sort(flat_weight[positive], stable=True).indices[:drop_positive]
    closest = torch.sort(flat_weight[other], descending=True, stable=True).indices[:drop_other]
    removed = torch.cat([positive[smallest], other[closest]])
    new = flat_mask.clone()
    new[removed] = False
    empty = (~new).nonzero().squeeze(1)
    draw = torch.randperm(empty.numel(), generator=generator)[: removed.numel()].to(empty.device)
    grown = torch.zeros_like(flat_mask)
    grown[empty[draw]] = True
    new |= grown
    changed = grown.clone()
    changed[removed] = True
    return new.view_as(mask), changed.view_as(mask), grown.view_as(mask)


# -- magnitude pruning -----------------------------------------------------------------------

@torch.no_grad()
def magnitude_prune(weights: dict[str, Tensor], masks: Masks, keep: int) -> Masks:
    """Masks keeping ``keep`` connections in all: each matrix keeps its largest |w| among those it keeps now."""
    current = {name: int(mask.sum()) for name, mask in masks.items()}
    total = sum(current.values())
    if keep >= total:
        return {name: mask.clone() for name, mask in masks.items()}
    counts = apportion({name: n * keep / total for name, n in current.items()}, current, keep)
    result = {}
    for name, mask in masks.items():
        flat = mask.reshape(-1)
        kept = flat.nonzero().squeeze(1)
        magnitude = weights[name].detach().reshape(-1)[kept].abs()
        order = torch.sort(magnitude, descending=True, stable=True).indices[: counts[name]]
        new = torch.zeros_like(flat)
        new[kept[order]] = True
        result[name] = new.view_as(mask)
    return result


def sparsity_keep(total: int, sparsity: float) -> int:
    """Connections kept at ``sparsity``: ``total − round(sparsity · total)``."""
    return total - count_of(total, sparsity)


def gradual_sparsity(step: int, start: int, end: int, initial: float, final: float) -> float:
    """Zhu & Gupta (2017), Eq. 1: s_t = s_f + (s_i − s_f)(1 − (t − t0)/(t1 − t0))³; s_i before t0, s_f from t1."""
    if step >= end:
        return final
    if step <= start:
        return initial
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


def full_masks(model: nn.Module) -> Masks:
    parameters = dict(model.named_parameters())
    return {name: torch.ones_like(parameters[name], dtype=torch.bool) for name in maskable_names(model)}


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Masks) -> None:
    parameters = dict(model.named_parameters())
    for name, mask in masks.items():
        parameters[name].masked_fill_(~mask.to(parameters[name].device), 0.0)


def checked_masks(model: nn.Module, masks: Masks) -> Masks:
    """``masks`` if they fit ``model``'s parameters (names and shapes), else a one-line error."""
    parameters = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in parameters or parameters[name].shape != mask.shape:
            raise IsscliError(f"the checkpoint's mask for {name} does not fit the model",
                              "re-create the checkpoint; masks must match the weights they mask")
    return {name: masks[name].to(dtype=torch.bool) for name in parameters if name in masks}


def one_shot(model: nn.Module, sparsity: float, start: Masks | None = None) -> Masks:
    """Prune ``model`` in place by magnitude to ``sparsity`` of its maskable matrices (from ``start``'s masks)."""
    check_sparsity(sparsity, "sparsity")
    masks = checked_masks(model, start) if start else full_masks(model)
    before = 1 - density(masks)
    if sparsity <= before:
        raise IsscliError(f"the model is already {before:.2%} sparse, more than the {sparsity:.2%} asked for",
                          "give a higher sparsity")
    parameters = dict(model.named_parameters())
    total = sum(mask.numel() for mask in masks.values())
    pruned = magnitude_prune({name: parameters[name] for name in masks}, masks, sparsity_keep(total, sparsity))
    apply_masks_(model, pruned)
    return pruned
