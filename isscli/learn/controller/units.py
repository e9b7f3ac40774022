"""Counting units and zeroing weights without ever taking an ISS set below its target.

A *unit* is a component whose receivers (the weights that multiply h_k) are not all zero:
exactly what ``isscli compact`` keeps. Whatever zeroes weights — τ-thresholding, the
controller's own zeroing of groups near zero, the lines of units held dead, the final cut —
goes through :meth:`UnitGuard.enforce`, which never lets a set drop below its target: if a
step would, the strongest of the units it would kill keep their receiver weights for that
step. So no set ever has fewer units than its target, at any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from isscli.iss.regularizer import GroupLasso
from isscli.iss.spec.schema import GroupSpec, IssSet
from isscli.learn.controller.state import ControllerState


@dataclass(frozen=True)
class SetLayout:
    """The ISS sets as the controller sees them: names, targets and slices of the ``[Σ K]`` component axis."""

    names: list[str]
    targets: list[int]
    slices: list[slice]
    multipliers: list[float]
    group_lengths: list[int]

    @classmethod
    def of(cls, spec: GroupSpec, targets: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> SetLayout:
        starts = [0]
        for iss in spec.sets:
            starts.append(starts[-1] + iss.components)
        return cls(
            names=[iss.name for iss in spec.sets],
            targets=[targets[iss.name] for iss in spec.sets],
            slices=[slice(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)],
            multipliers=[iss.multiplier for iss in spec.sets],
            group_lengths=[iss.group_length(shapes) for iss in spec.sets],
        )


def receiver_spec(spec: GroupSpec) -> GroupSpec:
    """Each set's receivers only, all counted: a component is a unit while this group is nonzero."""
    return GroupSpec([IssSet(iss.name, iss.components, [replace(p, penalize=True) for p in iss.receivers],
                             iss.multiplier) for iss in spec.sets])


def whole_spec(spec: GroupSpec) -> GroupSpec:
    """Each set's group vector and its receivers: what is zeroed when a unit is removed."""
    sets = []
    for iss in spec.sets:
        pieces = list(iss.penalized) + [replace(p, penalize=True) for p in iss.receivers if not p.penalize]
        sets.append(IssSet(iss.name, iss.components, pieces, iss.multiplier))
    return GroupSpec(sets)


class UnitGuard:
    """Counts units and zeroes weights on live parameters, keeping every set at or above its target."""

    def __init__(self, regularizer: GroupLasso, layout: SetLayout, state: ControllerState) -> None:
        self.main = regularizer
        self.parameters = regularizer.parameters
        self.layout = layout
        self.state = state
        self.reach = GroupLasso(receiver_spec(regularizer.spec), self.parameters, regularizer.epsilon)
        self.whole = GroupLasso(whole_spec(regularizer.spec), self.parameters, regularizer.epsilon)
        self.thresholded = set(regularizer.tensor_names)
        self.entries = self.reach.entries()

    # -- counting -------------------------------------------------------------------------

    @torch.no_grad()
    def unit_mask(self) -> torch.Tensor:
        """``[Σ K]``: components whose receivers are not all zero (units ``compact`` keeps)."""
        return self.reach.component_sums(self.parameters, "abs") > 0

    def units(self, mask: torch.Tensor | None = None) -> dict[str, int]:
        mask = self.unit_mask() if mask is None else mask
        return {name: int(mask[part].sum()) for name, part in zip(self.layout.names, self.layout.slices, strict=True)}

    def note_lowest(self, counts: dict[str, int]) -> None:
        """Remember the fewest units each set has had (the guarantee, measured)."""
        lowest = self.state.lowest_units
        for name, count in counts.items():
            lowest[name] = min(lowest.get(name, count), count)

    # -- enforcing ------------------------------------------------------------------------

    @torch.no_grad()
    def enforce(self, tau: float, extra: torch.Tensor | None = None) -> None:
        """Zero weights below τ, the held-dead units and ``extra`` components, but never a set below its target.

        Every set whose unit count would fall under its target keeps, for this step, the
        receiver weights of its strongest (largest ‖w_k‖) units that would otherwise die.
        After most batches a cheap bound shows that no set can fall below its target, and
        plain thresholding follows (:meth:`enforce_fast`); otherwise the exact path runs.
        """
        if extra is None and not self.state.overridden and self.enforce_fast(tau):
            return
        self.enforce_exact(tau, extra)

    @torch.no_grad()
    def enforce_fast(self, tau: float) -> bool:
        """Re-zero the held-dead lines, bound the units thresholding can kill, threshold if safe; False if not.

        A unit survives thresholding if the mean |w| over its receiver weights is ≥ τ (then one
        of them is ≥ τ), so the units that could die are those alive with Σ|w| < τ·(entries).
        Held-dead lines are already zero under SGD (their gradients are zeroed), so re-zeroing
        them kills nothing unless a protection once kept some of their weights (``overridden``).
        """
        dead = self.state.dead
        if dead.any():
            self.whole.fill_lines_(self.parameters, dead, 0.0)
        sums = self.reach.component_sums(self.parameters, "abs")
        safe = sums >= tau * self.entries if tau > 0 else sums > 0
        safe &= sums > 0
        counts = [int(safe[part].sum()) for part in self.layout.slices]
        if any(count < target for count, target in zip(counts, self.layout.targets, strict=True)):
            return False
        if tau > 0:
            self.main.threshold_(tau)
        self.note_lowest(dict(zip(self.layout.names, counts, strict=True)))  # a lower bound of the units left
        return True

    @torch.no_grad()
    def enforce_exact(self, tau: float, extra: torch.Tensor | None = None) -> None:
        """Threshold and zero with 0/1 masks, counting each set's units before anything is written."""
        keep = {}
        for name in self.whole.tensor_names:
            weight = self.parameters[name]
            keep[name] = weight.abs() >= tau if tau > 0 and name in self.thresholded else weight != 0
        kill = self.state.dead if extra is None else self.state.dead | extra
        if kill.any():
            self.whole.fill_lines_(keep, kill, False)
        after = self.reach.component_sums(keep) > 0
        protect = self.protection(after)
        if protect is not None:
            self.reach.fill_lines_(keep, protect, True)
            after = after | protect
            self.state.overridden = self.state.overridden or bool(kill.any())
        for name, mask in keep.items():
            self.parameters[name].mul_(mask)
        self.note_lowest(self.units(after))

    @torch.no_grad()
    def protection(self, after: torch.Tensor) -> torch.Tensor | None:
        """Components to keep alive so that no set ends below its target (None when none are needed)."""
        layout = self.layout
        needs = [target - int(after[part].sum()) for target, part in zip(layout.targets, layout.slices, strict=True)]
        if all(need <= 0 for need in needs):
            return None
        before, norms, protect = self.unit_mask(), self.main.norms(), torch.zeros_like(after)
        for need, part in zip(needs, layout.slices, strict=True):
            if need <= 0:
                continue
            candidates = before[part] & ~after[part]
            scores = torch.where(candidates, norms[part], torch.full_like(norms[part], -1.0))
            chosen = scores.topk(min(need, int(candidates.sum()))).indices
            protect[part][chosen] = True
        return protect

    # -- zeroing groups -------------------------------------------------------------------

    @torch.no_grad()
    def zero_near_zero(self, lengths: torch.Tensor, steps: list[float], skip: list[bool]) -> None:
        """Zero, per set, the units whose group length is within one SGD step (``steps``) of zero.

        At most the set's surplus over its target, shortest first; sets marked in ``skip`` are left alone.
        """
        mask = self.unit_mask()
        extra = torch.zeros_like(mask)
        for index, part in enumerate(self.layout.slices):
            surplus = int(mask[part].sum()) - self.layout.targets[index]
            if skip[index] or surplus <= 0:
                continue
            near_zero = mask[part] & (lengths[part] <= steps[index])
            count = min(surplus, int(near_zero.sum()))
            if count:
                scores = torch.where(near_zero, -lengths[part], torch.full_like(lengths[part], -float("inf")))
                extra[part][scores.topk(count).indices] = True
        if extra.any():
            self.enforce(0.0, extra)

    @torch.no_grad()
    def hold_dead(self, index: int) -> int:
        """From now on hold set ``index``'s dead units at zero; return its units."""
        part = self.layout.slices[index]
        mask = self.unit_mask()
        self.state.dead[part] = ~mask[part]
        self.enforce_exact(0.0)  # newly held-dead lines: only the exact path may protect what they would kill
        return int(mask[part].sum())

    @torch.no_grad()
    def cut_to_target(self, index: int, norms: torch.Tensor) -> int:
        """Zero the weakest groups (smallest ``norms``) of set ``index`` down to its target; return how many."""
        part = self.layout.slices[index]
        mask = self.unit_mask()[part]
        surplus = int(mask.sum()) - self.layout.targets[index]
        if surplus > 0:
            scores = torch.where(mask, norms[part], torch.full_like(norms[part], -1.0))
            weakest = torch.zeros_like(mask)
            weakest[scores.topk(int(mask.sum())).indices[self.layout.targets[index]:]] = True
            extra = torch.zeros_like(self.state.dead)
            extra[part] = weakest
            self.enforce(0.0, extra)
        return max(surplus, 0)

    @torch.no_grad()
    def zero_dead_gradients(self) -> None:
        """Dead units get no gradient (they stay zero and do not weigh in the clipping)."""
        if self.state.dead.any():
            grads = {name: p.grad for name, p in self.parameters.items() if p.grad is not None}
            self.whole.fill_lines_(grads, self.state.dead, 0.0)
