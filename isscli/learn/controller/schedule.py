"""The λ schedule of a size-target run: one λ per ISS set, steered towards a linear unit schedule.

Each set's units should fall linearly from where they started to the target over the first
``SCHEDULE_FRACTION`` of the pruning phase. At every check a set behind schedule gets a larger
λ (× growth, up to its cap), a set ahead of it a smaller one (÷ growth, down to a floor); its
first λ is a tenth of the data-gradient length at the target's rank, where group Lasso starts
to bite. When the training perplexity of a window of batches (or the validation perplexity)
exceeds ``backoff_factor`` × its best, every set still pruning has its λ halved and capped
there, and no λ is raised for a few checks.
"""

from __future__ import annotations

import math

import torch

from isscli.learn.controller.state import ControllerSettings, ControllerState
from isscli.learn.controller.units import SetLayout

#: The first λ of a set, as a share of the data-gradient length ‖∂E/∂w_k‖ of the unit at the target's rank.
START_FRACTION = 0.1
#: λ never drops below this share of its starting value (ahead of schedule, it only eases off).
FLOOR_FRACTION = 0.1
#: The schedule reaches the target after this share of the pruning phase, leaving time to catch up.
SCHEDULE_FRACTION = 0.8
#: Checks without any raise of λ after a back-off.
COOLDOWN_CHECKS = 5
#: Batches per training-loss window of the back-off test.
LOSS_WINDOW = 20
#: λ when no gradient has been measured yet.
FALLBACK_LAMBDA = 1e-6


class LambdaSchedule:
    """Steers ``state.lambdas``; it reads units and losses, and never touches weights."""

    def __init__(self, settings: ControllerSettings, layout: SetLayout, state: ControllerState,
                 batches_per_epoch: int, check_every: int) -> None:
        self.settings = settings
        self.layout = layout
        self.state = state
        self.batches_per_epoch = batches_per_epoch
        self.check_every = check_every

    def pruning(self, index: int) -> bool:
        """Whether set ``index`` is still being pruned (not frozen)."""
        return self.layout.names[index] not in self.state.frozen

    def desired(self, index: int, batch: int) -> float:
        """Units the schedule wants after ``batch`` pruning batches: linear from the start to the target."""
        goal = SCHEDULE_FRACTION * self.settings.prune_epochs * self.batches_per_epoch
        progress = min(1.0, batch / max(goal, 1.0))
        initial, target = self.state.initial[index], self.layout.targets[index]
        return initial - (initial - target) * progress

    def steer(self, batch: int, units: dict[str, int]) -> None:
        """Raise λ of a set behind schedule (×growth, up to its cap), lower it when ahead, else hold."""
        state, growth = self.state, self.settings.growth
        for i, name in enumerate(self.layout.names):
            if not self.pruning(i):
                continue
            if state.lambdas[i] == 0:
                state.lambdas[i] = state.starts[i] = self.starting_lambda(i)
                continue
            desired = self.desired(i, batch)
            tolerance = max(1.0, 0.02 * (state.initial[i] - self.layout.targets[i]))
            if units[name] > desired + tolerance and state.cooldown == 0:
                state.lambdas[i] = min(state.caps[i], state.lambdas[i] * growth)
            elif units[name] < desired - tolerance:
                state.lambdas[i] = max(state.starts[i] * FLOOR_FRACTION, state.lambdas[i] / growth)
        state.cooldown = max(0, state.cooldown - 1)

    def starting_lambda(self, index: int) -> float:
        """A tenth of the data-gradient length of the unit at the target's rank: where group Lasso starts to bite.

        A group is zero at the optimum when λ·multiplier ≥ ‖∂E/∂w_k‖ (the subgradient
        condition), so the (K − target)-th smallest gradient length is the scale of λ that
        removes the surplus; the controller starts well below it and grows.
        """
        state, part = self.state, self.layout.slices[index]
        multiplier = self.layout.multipliers[index]
        if state.grad_sum is None or state.grad_batches == 0:
            value = FALLBACK_LAMBDA
        else:
            lengths = (state.grad_sum[part] / state.grad_batches).float()
            initial = state.initial[index]
            share = (initial - self.layout.targets[index]) / max(initial, 1)
            value = START_FRACTION * float(torch.quantile(lengths, min(max(share, 0.0), 1.0)))
            value = value / multiplier if multiplier > 0 else value
        value = value if value > 0 and math.isfinite(value) else FALLBACK_LAMBDA
        return min(value, state.caps[index])

    def measure_gradients(self, lengths: torch.Tensor) -> None:
        """Add one batch's data-gradient length per component (for the starting λ of each set)."""
        state = self.state
        state.grad_sum = lengths if state.grad_sum is None else state.grad_sum + lengths
        state.grad_batches += 1

    def step_length(self, index: int, lr: float, adam: bool) -> float:
        """How far one optimizer step can move a group: within this of zero, a group is as good as zero."""
        if adam:
            return lr * math.sqrt(self.layout.group_lengths[index])
        return lr * self.state.lambdas[index] * self.layout.multipliers[index]

    # -- backing off ----------------------------------------------------------------------

    def add_loss(self, total: float, count: int) -> None:
        state = self.state
        state.loss_total += total
        state.loss_count += count
        state.window_batches += 1

    def training_blow_up(self) -> str | None:
        """Close a full loss window; the reason to back off when its perplexity exceeds back-off × the best."""
        state = self.state
        if state.window_batches < max(LOSS_WINDOW, self.check_every) or not state.loss_count:
            return None
        window = state.loss_total / state.loss_count
        state.loss_total, state.loss_count, state.window_batches = 0.0, 0, 0
        if state.best_window is None or window < state.best_window:
            state.best_window = window
            return None
        if window <= state.best_window + math.log(self.settings.backoff_factor):
            return None
        ratio = math.exp(min(window - state.best_window, 700))
        state.best_window = window if math.isfinite(window) else state.best_window
        return f"training perplexity is {ratio:.2f}× its best"

    def validation_blow_up(self, valid: float) -> str | None:
        """The reason to back off when validation perplexity exceeds back-off × its best; else None."""
        state, factor = self.state, self.settings.backoff_factor
        if state.best_valid is not None and not (valid <= factor * state.best_valid):
            reason = f"validation perplexity {valid:.4g} is over {factor:g}× its best ({state.best_valid:.4g})"
            state.best_valid = valid if math.isfinite(valid) else state.best_valid
            return reason
        if math.isfinite(valid):
            state.best_valid = valid if state.best_valid is None else min(state.best_valid, valid)
        return None

    def back_off(self) -> dict[str, float]:
        """Halve λ of every set still pruning and cap it there; no raise for a few checks. The new λ per set."""
        state, changed = self.state, {}
        for i, name in enumerate(self.layout.names):
            if not self.pruning(i) or state.lambdas[i] == 0:
                continue
            state.lambdas[i] /= 2
            state.caps[i] = state.lambdas[i]
            changed[name] = state.lambdas[i]
        state.cooldown = COOLDOWN_CHECKS
        return changed
