"""Weight masks in training: the :class:`MaskHook` family of :class:`~isscli.learn.run.TrainingHook`.

Masked gradients are zeroed before clipping, masked weights re-zeroed after every step (so they
stay exactly 0 through SGD, clipping and τ-thresholding), masks travel in the resume state and
are written into every checkpoint (``mask.<tensor>``, see :mod:`isscli.models.checkpoint`). SET evolves
its masks after every epoch; gradual magnitude pruning tightens them on Zhu & Gupta's schedule.
The algorithms are in :mod:`isscli.learn.masks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.learn.masks import (
    COUNT_KEYS,
    DEFAULT_PRUNE_EVERY,
    DEFAULT_ZETA,
    METHODS,
    REGROW_VALUE,
    Masks,
    check_density,
    check_sparsity,
    check_zeta,
    checked_masks,
    density,
    erdos_renyi_masks,
    full_masks,
    gradual_sparsity,
    magnitude_prune,
    mask_counts,
    maskable_names,
    one_shot,
    prune_and_regrow,
    sparsity_keep,
)
from isscli.learn.run import TrainingHook

if TYPE_CHECKING:
    from isscli.learn.loop import Trainer
    from isscli.learn.run import EpochReport


# -- training hooks --------------------------------------------------------------------------

def reset_optimizer_state(optimizer: torch.optim.Optimizer | None, parameter: Tensor, positions: Tensor) -> None:
    """Zero the optimizer's per-weight state (momentum, Adam's moments) where the mask changed."""
    if optimizer is None:
        return
    for value in optimizer.state.get(parameter, {}).values():
        if isinstance(value, Tensor) and value.shape == parameter.shape:
            value.masked_fill_(positions.to(value.device), 0)


class MaskHook(TrainingHook):
    """Fixed masks: masked weights stay exactly zero through every step (gradients zeroed, weights re-masked)."""

    name = "masks"

    def __init__(self, model: nn.Module, masks: Masks, info: JSONObject) -> None:
        masks = checked_masks(model, masks)
        parameters: dict[str, Tensor] = dict(model.named_parameters())
        self.parameters = {name: parameters[name] for name in masks}
        self.masks = {name: mask.to(parameters[name].device) for name, mask in masks.items()}
        self.info = {key: value for key, value in info.items() if key not in COUNT_KEYS}
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, parameter in self.parameters.items():
            parameter.masked_fill_(~self.masks[name], 0.0)

    def after_backward(self, trainer: Trainer) -> None:
        for name, parameter in self.parameters.items():
            if parameter.grad is not None:
                parameter.grad.masked_fill_(~self.masks[name], 0.0)

    def after_step(self, trainer: Trainer, epoch: int, index: int) -> None:
        self.apply()

    def state_dict(self) -> tuple[dict[str, Tensor], JSONObject]:
        return {name: mask.cpu() for name, mask in self.masks.items()}, {"info": self.info}

    def load_state_dict(self, tensors: dict[str, Tensor], info: JSONObject) -> None:
        if info.get("info") != self.info or set(tensors) != set(self.masks):
            raise IsscliError("`resume` needs the mask settings the run started with (`method`, `density`, `zeta`, "
                              "`magnitude_sparsity`, `prune_start`/`prune_end`/`prune_every`)",
                              "repeat the original settings, or start afresh with `force`")
        self.masks = {name: tensors[name].to(self.parameters[name].device, torch.bool) for name in self.masks}
        self.apply()

    def checkpoint_masks(self) -> tuple[dict[str, Tensor], JSONObject]:
        return dict(self.masks), {**self.info, **mask_counts(self.masks).to_json()}

    def provenance(self) -> JSONObject:
        return self.info


class SetEvolution(MaskHook):
    """SET: Erdős–Rényi masks, then prune-and-regrow after every epoch but the last."""

    def __init__(self, model: nn.Module, masks: Masks, zeta: float, seed: int) -> None:
        super().__init__(model, masks, {"method": "set", "initial": "erdos-renyi", "target_density": density(masks),
                                        "zeta": check_zeta(zeta), "regrow_value": REGROW_VALUE, "seed": seed})
        self.zeta, self.seed = zeta, seed

    def after_epoch(self, trainer: Trainer, report: EpochReport) -> None:
        if report.epoch < trainer.settings.epochs:  # the last epoch's topology is the trained one
            self.evolve(self.generator(report.epoch), trainer.optimizer)

    def generator(self, epoch: int) -> torch.Generator:
        """The draws of epoch ``epoch``'s regrowth: a function of the seed and the epoch, so --resume repeats them."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    @torch.no_grad()
    def evolve(self, generator: torch.Generator, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
        """Prune and regrow every matrix (module docstring); returns the regrown count per matrix."""
        regrown = {}
        for name, parameter in self.parameters.items():
            new, changed, grown = prune_and_regrow(parameter, self.masks[name], self.zeta, generator)
            parameter.masked_fill_(~new, 0.0)
            parameter.masked_fill_(grown, REGROW_VALUE)
            reset_optimizer_state(optimizer, parameter, changed)
            self.masks[name] = new
            regrown[name] = int(grown.sum())
        return regrown


class GradualPruning(MaskHook):
    """Magnitude pruning on Zhu & Gupta's cubic schedule, from the first batch of ``start`` to the last of ``end``."""

    def __init__(self, model: nn.Module, masks: Masks, sparsity: float, start: int, end: int, every: int) -> None:
        self.initial = round(1 - density(masks), 12)
        super().__init__(model, masks, {"method": "magnitude", "schedule": "gradual", "sparsity": sparsity,
                                        "initial_sparsity": self.initial, "prune_start": start, "prune_end": end,
                                        "prune_every": every})
        self.final, self.start, self.end, self.every = sparsity, start, end, every
        self.total = sum(mask.numel() for mask in self.masks.values())

    def keeps(self, epoch: int) -> bool:
        """OUT holds a model at the final sparsity only, never one of the schedule's way there."""
        return epoch >= self.end

    def window(self, batches: int) -> tuple[int, int]:
        """The schedule's first and last mini-batch, counted from 1 over the whole run."""
        return (self.start - 1) * batches + 1, self.end * batches

    def after_step(self, trainer: Trainer, epoch: int, index: int) -> None:
        batches = trainer.run.task.num_batches(trainer.settings.max_batches)
        step = (epoch - 1) * batches + index
        first, last = self.window(batches)
        if first <= step <= last and ((step - first) % self.every == 0 or step == last):
            self.prune_to(gradual_sparsity(step, first, last, self.initial, self.final), trainer.optimizer)
        self.apply()

    @torch.no_grad()
    def prune_to(self, sparsity: float, optimizer: torch.optim.Optimizer | None = None) -> None:
        keep = sparsity_keep(self.total, sparsity)
        if keep >= sum(int(mask.sum()) for mask in self.masks.values()):
            return
        new = magnitude_prune(self.parameters, self.masks, keep)
        for name, parameter in self.parameters.items():
            reset_optimizer_state(optimizer, parameter, self.masks[name] & ~new[name])
        self.masks = new


# -- what a run asks for -----------------------------------------------------------------------

def check_set_options(method: str, target_density: float | None, zeta: float | None, target: str | None = None
                      ) -> None:
    """``train --method/--density/--zeta``: a one-line error for every bad combination (with a size target too)."""
    if method not in METHODS:
        raise IsscliError(f"unknown `method` {method!r}", f"use one of {', '.join(METHODS)}")
    if method == "dense":
        if target_density is not None or zeta is not None:
            raise IsscliError("`density` and `zeta` need `method`=set", "add `method`=set, or drop them")
        return
    if target_density is None:
        raise IsscliError("`method`=set needs `density`", "give the share of connections to keep, e.g. `density`=0.1")
    check_density(target_density)
    check_zeta(DEFAULT_ZETA if zeta is None else zeta)
    if target is not None:
        raise IsscliError("a size target does not combine with `method`=set", "drop one of them")


def set_hook(model: nn.Module, target_density: float, zeta: float | None, seed: int) -> SetEvolution:
    """SET on ``model``: Erdős–Rényi masks at ``target_density`` (drawn from ``seed``), applied at once."""
    parameters = dict(model.named_parameters())
    shapes = {name: tuple(parameters[name].shape) for name in maskable_names(model)}
    masks = erdos_renyi_masks(shapes, target_density, torch.Generator().manual_seed(seed))
    return SetEvolution(model, masks, DEFAULT_ZETA if zeta is None else zeta, seed)


def check_schedule(sparsity: float | None, start: int | None, end: int | None, every: int | None, epochs: int) -> None:
    if sparsity is None:
        if start is not None or end is not None or every is not None:
            raise IsscliError("`prune_start`, `prune_end` and `prune_every` need `magnitude_sparsity`",
                              "add e.g. `magnitude_sparsity`=0.9")
        return
    check_sparsity(sparsity, "magnitude_sparsity")
    if end is None and (start is not None or every is not None):
        raise IsscliError("`prune_start` and `prune_every` set a gradual schedule, which needs `prune_end`",
                          "add `prune_end`=EPOCH, or drop them for one-shot pruning")
    if end is not None:
        first = 1 if start is None else start
        if not 1 <= first <= end <= epochs:
            raise IsscliError(f"the pruning epochs must satisfy 1 ≤ `prune_start` ({first}) ≤ `prune_end` ({end}) "
                              f"≤ epochs ({epochs})", "choose epochs within the run")
    if every is not None and every < 1:
        raise IsscliError(f"`prune_every` {every} is not a number of batches", "give e.g. `prune_every`=100")


def finetune_hook(
    model: nn.Module, parent_masks: Masks, parent_info: JSONObject | None, sparsity: float | None,
    start: int | None, end: int | None, every: int | None, epochs: int,
) -> MaskHook | None:
    """The masks of a fine-tuning run: the parent's kept fixed, one-shot or gradual magnitude pruning, or none."""
    check_schedule(sparsity, start, end, every, epochs)
    if sparsity is None:
        return MaskHook(model, parent_masks, parent_info or {"method": "fixed"}) if parent_masks else None
    if end is None:
        masks = one_shot(model, sparsity, parent_masks or None)
        return MaskHook(model, masks, {"method": "magnitude", "schedule": "one-shot", "sparsity": sparsity})
    masks = checked_masks(model, parent_masks) if parent_masks else full_masks(model)
    if sparsity <= 1 - density(masks):
        raise IsscliError(f"the model is already {1 - density(masks):.2%} sparse, more than `magnitude_sparsity` "
                          f"{sparsity:g}", "give a higher sparsity")
    return GradualPruning(model, masks, sparsity, 1 if start is None else start, end,
                          DEFAULT_PRUNE_EVERY if every is None else every)
