"""Target-driven ISS: a λ controller that prunes every ISS set to a requested size.

The paper tuned λ by hand, and a wrong guess costs a whole run (λ = 0.0035 kills the large
LM in epoch 2 where 0.00245 gives (362, 479) units). Here the user states the size instead —
units per set (``--target-hidden``), a parameter budget (``--target-params``, turned into
sizes by :func:`sizes_for_parameters`) or a speed-up measured on this machine
(``--target-speedup``, :func:`sizes_for_speedup`) — and :class:`IssController`, a
:class:`~isscli.training.TrainingHook`, steers one λ per set during training.

A run has two phases:

* **pruning** (``prune_epochs``): every ``check_every`` batches the controller counts the
  units of each set, raises or lowers that set's λ to follow a linear schedule from the
  starting size to the target, zeroes groups that sit within one SGD step of zero, and
  *freezes* a set the moment it reaches its target (λ = 0, its dead units held at exactly
  zero, its survivors protected from thresholding). At the end of the phase every set still
  above target loses its weakest groups (smallest ‖w_k‖), so each set has exactly its target.
* **recovery** (``recover_epochs``): λ = 0, dead units held at zero (their gradients and
  weights), the survivors fine-tuned.

A *unit* is a component whose receivers (the weights that multiply h_k) are not all zero:
exactly what ``isscli compact`` keeps. Whatever zeroes weights — τ-thresholding, the
controller's own zeroing, the held-dead lines — goes through :meth:`IssController.enforce`,
which never lets a set drop below its target: if a step would, the strongest of the units it
would kill keep their receiver weights for that step. So no set ever has fewer units than its
target, at any batch, and the compacted model has exactly the target sizes. docs/training.md
describes the λ schedule, the divergence back-off and the log records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from isscli.accounting import parameter_count
from isscli.errors import IsscliError
from isscli.models.config import ModelConfig
from isscli.models.registry import is_tied
from isscli.regularizer import GroupLasso
from isscli.spec.schema import GroupSpec, IssSet
from isscli.training import JsonLog, Trainer, TrainingHook

#: λ of a set grows (or shrinks) by this factor per check while it is behind (ahead of) schedule.
GROWTH = 1.25
#: The first λ of a set, as a share of the data-gradient length ‖∂E/∂w_k‖ of the unit at the target's rank.
START_FRACTION = 0.1
#: λ never drops below this share of its starting value (ahead of schedule, it only eases off).
FLOOR_FRACTION = 0.1
#: The schedule reaches the target after this share of the pruning phase, leaving time to catch up.
SCHEDULE_FRACTION = 0.8
#: Back off when the training (or validation) perplexity exceeds this × its best.
BACKOFF_FACTOR = 2.0
#: Checks without any raise of λ after a back-off.
COOLDOWN_CHECKS = 5
#: Batches per training-loss window of the back-off test.
LOSS_WINDOW = 20
#: Most batches between two checks (the default is a tenth of an epoch, at most this).
MAX_CHECK_EVERY = 20

SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


# -- what the user asks for ------------------------------------------------------------------


def parse_count(text: str, option: str = "--target-params") -> int:
    """``"20M"`` → 20,000,000; ``"1.5k"`` → 1500; ``"123456"``, ``"2.5e6"`` as written."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)\s*", text.lower())
    if not match:
        raise IsscliError(f"{option} {text!r} is not a count", f"write e.g. {option} 20M, 1.5k or 123456")
    value = float(match[1]) * SUFFIXES[match[2]]
    if value < 1 or value != value:
        raise IsscliError(f"{option} {text!r} must be at least 1", f"write e.g. {option} 20M")
    return int(value)


def parse_sizes(text: str, option: str = "--target-hidden") -> list[int]:
    """``"400,350"`` → [400, 350]."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes:
        raise IsscliError(f"{option} {text!r} is not a comma-separated list of unit counts",
                          f"write one size per ISS set, e.g. {option} 400,350")
    return sizes


def receiver_units(spec: GroupSpec, tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """Units per set that ``compact`` would keep: components whose receivers are not all zero."""
    from isscli.surgery import removable_components

    return {iss.name: int((~removable_components(tensors, iss)).sum()) for iss in spec.sets}


def check_targets(spec: GroupSpec, targets: dict[str, int], units: dict[str, int], flag: str) -> None:
    """Every target is a unit count between 1 and what the set has now; something must be pruned."""
    for iss in spec.sets:
        if not iss.receivers:
            raise IsscliError(f"set {iss.name} has no receiver slices, so no unit of it can be removed",
                              "use a spec that says which weights consume h_k (`isscli groups CKPT`)")
        target, now = targets[iss.name], units[iss.name]
        if target < 1:
            raise IsscliError(f"{flag}: set {iss.name} needs at least 1 unit (got {target})",
                              "every layer must keep a unit")
        if target > now:
            what = f"{iss.components} units" if now == iss.components else f"{now} units in use (of {iss.components})"
            raise IsscliError(f"{flag}: set {iss.name} has {what}, fewer than the target {target}",
                              f"give a target ≤ {now}")
    if all(targets[iss.name] == units[iss.name] for iss in spec.sets):
        raise IsscliError(f"{flag}: every set is already at its target size, so there is nothing to prune",
                          "give smaller targets")


def targets_from_sizes(spec: GroupSpec, sizes: Sequence[int], flag: str = "--target-hidden") -> dict[str, int]:
    names = [iss.name for iss in spec.sets]
    if len(sizes) != len(names):
        raise IsscliError(f"{flag} gives {len(sizes)} size(s) but the model has {len(names)} ISS sets "
                          f"({', '.join(names)})", "give one size per set, in this order")
    return dict(zip(names, (int(size) for size in sizes), strict=True))


def check_layout(config: ModelConfig, spec: GroupSpec, flag: str) -> None:
    """Parameter and speed targets map sets onto layer-directions: the spec must be the derived one."""
    flat = [size for sizes in config.hidden_sizes for size in sizes]
    if [iss.components for iss in spec.sets] != flat:
        raise IsscliError(f"{flag} needs one ISS set per layer-direction, in order (the derived spec)",
                          "drop --spec, or give the sizes with --target-hidden")


def sized_config(config: ModelConfig, sizes: Sequence[int]) -> ModelConfig:
    """The config with these units per layer-direction (in set order), as ``compact`` would leave it."""
    flat = iter(sizes)
    hidden = [[int(next(flat)) for _ in layer] for layer in config.hidden_sizes]
    raw = config.to_dict()
    raw["hidden_sizes"] = hidden
    if config.family == "rhn":
        raw["embedding_size"] = hidden[0][0]
    elif is_tied(config):
        raw["embedding_size"] = sum(hidden[-1])
    return ModelConfig.from_dict(raw)


def fraction_grid(components: Sequence[int]) -> list[Fraction]:
    """Every kept fraction at which some set gains a unit, in increasing order."""
    return sorted({Fraction(j, k) for k in components for j in range(1, k + 1)})


def sizes_at(fraction: Fraction, components: Sequence[int]) -> list[int]:
    """The same fraction of every set's units, rounded down, at least one."""
    return [max(1, math.floor(fraction * k)) for k in components]


def _largest(grid: list[Fraction], good: Callable[[Fraction], bool]) -> int:
    """Index of the largest grid entry that is ``good``, for a predicate true up to some point; -1 if none."""
    low, high = -1, len(grid) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if good(grid[middle]):
            low = middle
        else:
            high = middle - 1
    return low


def sizes_for_parameters(
    config: ModelConfig, limit: int, current: Sequence[int] | None = None
) -> tuple[list[int], int]:
    """The largest sizes keeping the same fraction of every set whose compacted model has ≤ ``limit`` parameters.

    The fraction is of ``current`` (the units each set has now; default: the config's sizes).
    Keeping one more unit in every set would exceed ``limit``.
    """
    components = list(current) if current is not None else [size for sizes in config.hidden_sizes for size in sizes]
    grid = fraction_grid(components)

    def count(fraction: Fraction) -> int:
        return parameter_count(sized_config(config, sizes_at(fraction, components)))

    index = _largest(grid, lambda fraction: count(fraction) <= limit)
    if index < 0:
        smallest = count(grid[0])
        raise IsscliError(f"--target-params {limit:,}: even one unit per layer leaves {smallest:,} parameters "
                          "(embedding and output layer)", f"give at least {smallest:,}")
    return sizes_at(grid[index], components), count(grid[index])


def speedup_meter(config: ModelConfig, device: torch.device, repeats: int = 5, warmup: int = 1,
                  batch: int = 10, steps: int = 30) -> Callable[[list[int]], float]:
    """Speed-up of a random-weight model of given sizes over the dense one, timed here (isscli bench's harness)."""
    from isscli.benchmark import inference
    from isscli.models import build_model
    from isscli.timing import clock_for, time_interleaved

    torch.manual_seed(0)
    dense = build_model(config).eval().to(device)

    def measure(sizes: list[int]) -> float:
        torch.manual_seed(0)
        small = build_model(sized_config(config, sizes)).eval().to(device)
        with torch.inference_mode():
            runs = {"baseline": inference(dense, "full", batch, steps, device, 0),
                    "model": inference(small, "full", batch, steps, device, 0)}
            timings = time_interleaved(runs, repeats, warmup, clock_for(device))
        return timings["baseline"].median_ms / timings["model"].median_ms

    return measure


def sizes_for_speedup(
    config: ModelConfig, speedup: float, measure: Callable[[list[int]], float], current: Sequence[int] | None = None
) -> tuple[list[int], float]:
    """The largest sizes keeping the same fraction of every set whose measured speed-up is ≥ ``speedup``.

    A bisection over the kept fraction; each probe times a random-weight model against the
    dense one (``measure``). Timings are noisy, so the answer is as good as the machine is quiet.
    """
    if speedup <= 1:
        raise IsscliError(f"--target-speedup {speedup:g} is not a speed-up", "give a factor above 1, e.g. 4")
    components = list(current) if current is not None else [size for sizes in config.hidden_sizes for size in sizes]
    grid = fraction_grid(components)
    measured: dict[Fraction, float] = {}

    def fast_enough(fraction: Fraction) -> bool:
        if fraction not in measured:
            measured[fraction] = measure(sizes_at(fraction, components))
        return measured[fraction] >= speedup

    if not fast_enough(grid[0]):
        raise IsscliError(f"--target-speedup {speedup:g}: one unit per layer is only {measured[grid[0]]:.2f}× "
                          "faster than the dense model on this machine", "give a smaller target")
    index = _largest(grid[:-1], fast_enough) if len(grid) > 1 else 0
    index = max(index, 0)
    return sizes_at(grid[index], components), measured[grid[index]]


# -- the controller --------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerSettings:
    """What the controller is asked to do; ``cap`` is ``--lambda`` (the most λ any set may get)."""

    targets: dict[str, int]
    prune_epochs: int
    recover_epochs: int
    cap: float | None = None
    check_every: int | None = None
    growth: float = GROWTH
    backoff_factor: float = BACKOFF_FACTOR
    origin: dict[str, Any] = field(default_factory=dict)  # the flag the targets came from, for reports

    def validate(self) -> ControllerSettings:
        if self.prune_epochs < 1:
            raise IsscliError(f"--prune-epochs must be ≥ 1 (got {self.prune_epochs})", "give e.g. --prune-epochs 4")
        if self.recover_epochs < 1:
            raise IsscliError(f"--recover-epochs must be ≥ 1 (got {self.recover_epochs})",
                              "the survivors need at least one epoch with λ = 0")
        if self.cap is not None and self.cap <= 0:
            raise IsscliError("with a target, --lambda is the largest λ the controller may use, so it must be > 0",
                              "drop --lambda or give e.g. --lambda 0.005")
        if self.check_every is not None and self.check_every < 1:
            raise IsscliError("the controller's check interval must be ≥ 1 batch", "fix the setting")
        if self.growth <= 1 or self.backoff_factor <= 1:
            raise IsscliError("the controller's growth and back-off factors must be > 1", "fix the setting")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _receiver_spec(spec: GroupSpec) -> GroupSpec:
    """Each set's receivers only, all counted: a component is a unit while this group is nonzero."""
    return GroupSpec([IssSet(iss.name, iss.components, [replace(p, penalize=True) for p in iss.receivers],
                             iss.multiplier) for iss in spec.sets])


def _whole_spec(spec: GroupSpec) -> GroupSpec:
    """Each set's group vector and its receivers: what is zeroed when a unit is removed."""
    sets = []
    for iss in spec.sets:
        pieces = list(iss.penalized) + [replace(p, penalize=True) for p in iss.receivers if not p.penalize]
        sets.append(IssSet(iss.name, iss.components, pieces, iss.multiplier))
    return GroupSpec(sets)


class IssController(TrainingHook):
    """The λ controller (module docstring); add it to ``TrainingRun.hooks``."""

    name = "controller"

    def __init__(self, settings: ControllerSettings, announce: Callable[[str], None] | None = None) -> None:
        self.settings = settings.validate()
        self.announce = announce or (lambda message: None)
        self.trainer: Trainer | None = None
        self.phase = "prune"
        self.lambdas: list[float] = []
        self.starts: list[float] = []
        self.caps: list[float] = []
        self.initial: list[int] = []
        self.frozen: dict[str, dict[str, Any]] = {}
        self.dead = torch.zeros(0, dtype=torch.bool)
        self.grad_sum: torch.Tensor | None = None
        self.grad_batches = 0
        self.loss_total, self.loss_count, self.window_batches = 0.0, 0, 0
        self.best_window: float | None = None
        self.best_valid: float | None = None
        self.cooldown = 0
        self.trajectory: dict[str, Any] = {}
        self.history: dict[str, Any] = {"epoch": [], "lambda": {}, "units": {}}
        self.events: list[dict[str, Any]] = []
        self.final_cut: dict[str, int] = {}
        self.lowest_units: dict[str, int] = {}
        self.restored: dict[str, Any] | None = None
        self.overridden = False  # a protection once kept weights of held-dead lines: only the exact path is exact
        self.restored_dead: torch.Tensor | None = None

    # -- set-up -------------------------------------------------------------------------

    def bind(self, trainer: Trainer) -> None:
        """Build the index structures on the trainer's live parameters (first call only)."""
        if self.trainer is trainer:
            return
        self.trainer = trainer
        spec = trainer.run.spec
        self.spec = spec
        self.names = [iss.name for iss in spec.sets]
        missing = sorted(set(self.settings.targets) ^ set(self.names))
        if missing:
            raise IsscliError(f"the controller's targets do not match the spec's sets ({', '.join(missing)})",
                              "give one target per ISS set")
        self.parameters = trainer.parameters
        self.main = trainer.regularizer
        epsilon = trainer.settings.epsilon
        self.reach = GroupLasso(_receiver_spec(spec), self.parameters, epsilon)
        self.whole = GroupLasso(_whole_spec(spec), self.parameters, epsilon)
        self.thresholded = set(self.main.tensor_names)
        self.entries = self.reach.entries()
        self.targets = [self.settings.targets[name] for name in self.names]
        self.multipliers = [iss.multiplier for iss in spec.sets]
        starts = [0]
        for size in self.main.sizes:
            starts.append(starts[-1] + size)
        self.slices = [slice(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        lengths = {name: tuple(parameter.shape) for name, parameter in self.parameters.items()}
        self.group_lengths = [iss.group_length(lengths) for iss in spec.sets]
        self.batches_per_epoch = trainer.run.task.num_batches(trainer.settings.max_batches)
        self.check_every = self.settings.check_every or max(1, min(MAX_CHECK_EVERY, self.batches_per_epoch // 10))
        self.log = JsonLog(trainer.run.paths.log, append=True)
        if self.restored is not None:
            self._restore(self.restored)
            return
        units = self.units()
        self.initial = [units[name] for name in self.names]
        for name, target, now in zip(self.names, self.targets, self.initial, strict=True):
            if target > now:
                raise IsscliError(f"set {name} has {now} units in use, fewer than its target {target}",
                                  f"give a target ≤ {now}")
        self.lambdas = [0.0] * len(self.names)
        self.starts = [0.0] * len(self.names)
        self.caps = [self.settings.cap or math.inf] * len(self.names)
        self.dead = torch.zeros(self.main.total, dtype=torch.bool, device=self.main.multipliers.device)
        self.lowest_units = dict(units)
        self.record("start", targets=dict(self.settings.targets), units=units, check_every=self.check_every,
                    settings=self.settings.to_dict())
        for index, name in enumerate(self.names):
            if units[name] <= self.targets[index]:
                self.freeze(index, 0, 0, "already at its target")

    # -- counting -------------------------------------------------------------------------

    @torch.no_grad()
    def unit_mask(self) -> torch.Tensor:
        """``[Σ K]``: components whose receivers are not all zero (units ``compact`` keeps)."""
        return self.reach.component_sums(self.parameters, "abs") > 0

    def units(self, mask: torch.Tensor | None = None) -> dict[str, int]:
        mask = self.unit_mask() if mask is None else mask
        return {name: int(mask[part].sum()) for name, part in zip(self.names, self.slices, strict=True)}

    # -- the hook -------------------------------------------------------------------------

    def add_group_lasso_(self, trainer: Trainer) -> bool:
        self.bind(trainer)
        if self.phase != "prune":
            return True
        if any(value == 0 for value, name in zip(self.lambdas, self.names, strict=True) if name not in self.frozen):
            self.measure_gradients()
        if any(self.lambdas):
            self.main.add_gradient_(1.0, self.lambdas)
        return True

    @torch.no_grad()
    def measure_gradients(self) -> None:
        """Average length of each component's data gradient, for the starting λ of each set."""
        grads = {name: (p.grad if p.grad is not None else torch.zeros_like(p)) for name, p in self.parameters.items()
                 if name in self.main.tensor_names}
        lengths = self.main.component_sums(grads, "square").sqrt()
        self.grad_sum = lengths if self.grad_sum is None else self.grad_sum + lengths
        self.grad_batches += 1

    @torch.no_grad()
    def after_backward(self, trainer: Trainer) -> None:
        """Dead units of frozen sets get no gradient (they stay zero and do not weigh in the clipping)."""
        if self.dead.any():
            grads = {name: p.grad for name, p in self.parameters.items() if p.grad is not None}
            self.whole.fill_lines_(grads, self.dead, 0.0)

    def threshold_(self, trainer: Trainer, tau: float) -> bool:
        self.bind(trainer)
        self.enforce(tau)
        return True

    def after_step(self, trainer: Trainer, epoch: int, index: int) -> None:
        step = trainer.last_step
        if step is not None and step.count:
            self.loss_total += step.total
            self.loss_count += step.count
            self.window_batches += 1
        if self.phase == "prune" and index % self.check_every == 0:
            self.check(epoch, index)

    def after_epoch(self, trainer: Trainer, report: Any) -> None:
        self.bind(trainer)
        if self.phase == "prune":
            valid = report.valid.perplexity
            if self.best_valid is not None and not (valid <= self.settings.backoff_factor * self.best_valid):
                self.back_off(report.epoch, 0, f"validation perplexity {valid:.4g} is over "
                                                f"{self.settings.backoff_factor:g}× its best ({self.best_valid:.4g})")
                self.best_valid = valid if math.isfinite(valid) else self.best_valid
            elif math.isfinite(valid):
                self.best_valid = valid if self.best_valid is None else min(self.best_valid, valid)
        units = self.units()
        self.history["epoch"].append(report.epoch)
        for index, name in enumerate(self.names):
            self.history["lambda"].setdefault(name, []).append(self.lambdas[index])
            self.history["units"].setdefault(name, []).append(units[name])
        self.record("epoch", epoch=report.epoch, phase=self.phase, units=units, targets=dict(self.settings.targets),
                    **{"lambda": dict(zip(self.names, self.lambdas, strict=True))},
                    frozen=sorted(self.frozen), trajectory=self.trajectory)
        self.trajectory = {}
        self.announce("controller: " + "  ".join(self.describe(index, units) for index in range(len(self.names))))
        if self.phase == "prune" and report.epoch >= self.settings.prune_epochs:
            self.finish_pruning(report.epoch)

    def keeps(self, epoch: int) -> bool:
        """OUT holds a recovery epoch only: a model at exactly the target sizes."""
        return epoch > self.settings.prune_epochs

    def describe(self, index: int, units: dict[str, int]) -> str:
        name = self.names[index]
        state = "frozen" if name in self.frozen else f"λ {self.lambdas[index]:.3g}"
        return f"{name} {units[name]}→{self.targets[index]} ({state})"

    # -- enforcing: thresholding, zeroing and the never-below-target guarantee --------------

    @torch.no_grad()
    def enforce(self, tau: float, extra: torch.Tensor | None = None) -> None:
        """Zero weights below τ, the held-dead units and ``extra`` components, but never a set below its target.

        Every set whose unit count would fall under its target keeps, for this step, the
        receiver weights of its strongest (largest ‖w_k‖) units that would otherwise die.
        After most batches a cheap bound shows that no set can fall below its target, and
        plain thresholding follows (:meth:`enforce_fast`); otherwise the exact path runs.
        """
        if extra is None and not self.overridden and self.enforce_fast(tau):
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
        if self.dead.any():
            self.whole.fill_lines_(self.parameters, self.dead, 0.0)
        sums = self.reach.component_sums(self.parameters, "abs")
        safe = sums >= tau * self.entries if tau > 0 else sums > 0
        safe &= sums > 0
        counts = [int(safe[part].sum()) for part in self.slices]
        if any(count < target for count, target in zip(counts, self.targets, strict=True)):
            return False
        if tau > 0:
            self.main.threshold_(tau)
        for name, count in zip(self.names, counts, strict=True):  # a lower bound of the units left
            self.lowest_units[name] = min(self.lowest_units.get(name, count), count)
        return True

    @torch.no_grad()
    def enforce_exact(self, tau: float, extra: torch.Tensor | None = None) -> None:
        """Threshold and zero with 0/1 masks, counting each set's units before anything is written."""
        keep = {}
        for name in self.whole.tensor_names:
            weight = self.parameters[name]
            keep[name] = weight.abs() >= tau if tau > 0 and name in self.thresholded else weight != 0
        kill = self.dead if extra is None else self.dead | extra
        if kill.any():
            self.whole.fill_lines_(keep, kill, False)
        after = self.reach.component_sums(keep) > 0
        protect = self.protection(after)
        if protect is not None:
            self.reach.fill_lines_(keep, protect, True)
            after = after | protect
            self.overridden = self.overridden or bool(kill.any())
        for name, mask in keep.items():
            self.parameters[name].mul_(mask)
        for name, part in zip(self.names, self.slices, strict=True):  # the guarantee, measured at every step
            count = int(after[part].sum())
            if count < self.lowest_units.get(name, count + 1):
                self.lowest_units[name] = count

    @torch.no_grad()
    def protection(self, after: torch.Tensor) -> torch.Tensor | None:
        """Components to keep alive so that no set ends below its target (None when none are needed)."""
        protect, before, norms = None, None, None
        for index, part in enumerate(self.slices):
            need = self.targets[index] - int(after[part].sum())
            if need <= 0:
                continue
            if before is None:
                before, norms = self.unit_mask(), self.main.norms()
                protect = torch.zeros_like(after)
            candidates = before[part] & ~after[part]
            scores = torch.where(candidates, norms[part], torch.full_like(norms[part], -1.0))
            chosen = scores.topk(min(need, int(candidates.sum()))).indices
            protect[part][chosen] = True
        return protect

    # -- the schedule ---------------------------------------------------------------------

    def desired(self, index: int, batch: int) -> float:
        """Units the schedule wants after ``batch`` pruning batches: linear from the start to the target."""
        goal = SCHEDULE_FRACTION * self.settings.prune_epochs * self.batches_per_epoch
        progress = min(1.0, batch / max(goal, 1.0))
        return self.initial[index] - (self.initial[index] - self.targets[index]) * progress

    @torch.no_grad()
    def check(self, epoch: int, index: int) -> None:
        """Count, zero what sits within a step of zero, freeze what reached its target, steer λ."""
        assert self.trainer is not None
        batch = (epoch - 1) * self.batches_per_epoch + index
        lr = float(self.trainer.optimizer.param_groups[0]["lr"])
        adam = self.trainer.settings.optimizer == "adam"
        mask = self.unit_mask()
        lengths = self.main.squared_norms().sqrt()
        extra = torch.zeros_like(mask)
        for i, part in enumerate(self.slices):
            name = self.names[i]
            surplus = int(mask[part].sum()) - self.targets[i]
            if name in self.frozen or surplus <= 0 or self.lambdas[i] == 0:
                continue
            step = lr * math.sqrt(self.group_lengths[i]) if adam else lr * self.lambdas[i] * self.multipliers[i]
            near_zero = mask[part] & (lengths[part] <= step)
            count = min(surplus, int(near_zero.sum()))
            if count:
                scores = torch.where(near_zero, -lengths[part], torch.full_like(lengths[part], -math.inf))
                extra[part][scores.topk(count).indices] = True
        if extra.any():
            self.enforce(0.0, extra)
            mask = self.unit_mask()
        units = self.units(mask)
        for name, count in units.items():
            self.lowest_units[name] = min(self.lowest_units.get(name, count), count)
        for i, name in enumerate(self.names):
            if name not in self.frozen and units[name] <= self.targets[i]:
                self.freeze(i, epoch, index, "reached its target")
        self.steer(epoch, index, batch, units)
        self.watch_loss(epoch, index)
        trajectory = self.trajectory
        trajectory.setdefault("batch", []).append(index)
        for i, name in enumerate(self.names):
            trajectory.setdefault("lambda", {}).setdefault(name, []).append(self.lambdas[i])
            trajectory.setdefault("units", {}).setdefault(name, []).append(units[name])

    def steer(self, epoch: int, index: int, batch: int, units: dict[str, int]) -> None:
        """Raise λ of a set behind schedule (×growth, up to its cap), lower it when ahead, else hold."""
        growth = self.settings.growth
        for i, name in enumerate(self.names):
            if name in self.frozen:
                continue
            if self.lambdas[i] == 0:
                self.lambdas[i] = self.starts[i] = self.starting_lambda(i)
                continue
            desired = self.desired(i, batch)
            tolerance = max(1.0, 0.02 * (self.initial[i] - self.targets[i]))
            if units[name] > desired + tolerance and self.cooldown == 0:
                self.lambdas[i] = min(self.caps[i], self.lambdas[i] * growth)
            elif units[name] < desired - tolerance:
                self.lambdas[i] = max(self.starts[i] * FLOOR_FRACTION, self.lambdas[i] / growth)
        self.cooldown = max(0, self.cooldown - 1)

    def starting_lambda(self, index: int) -> float:
        """A tenth of the data-gradient length of the unit at the target's rank: where group Lasso starts to bite.

        A group is zero at the optimum when λ·multiplier ≥ ‖∂E/∂w_k‖ (the subgradient
        condition), so the (K − target)-th smallest gradient length is the scale of λ that
        removes the surplus; the controller starts well below it and grows.
        """
        part = self.slices[index]
        fallback = 1e-6
        if self.grad_sum is None or self.grad_batches == 0:
            value = fallback
        else:
            lengths = (self.grad_sum[part] / self.grad_batches).float()
            share = (self.initial[index] - self.targets[index]) / max(self.initial[index], 1)
            value = START_FRACTION * float(torch.quantile(lengths, min(max(share, 0.0), 1.0)))
            value = value / self.multipliers[index] if self.multipliers[index] > 0 else value
        value = value if value > 0 and math.isfinite(value) else fallback
        return min(value, self.caps[index])

    def watch_loss(self, epoch: int, index: int) -> None:
        """Back off when the training perplexity of the last window exceeds back-off × its best."""
        if self.window_batches < max(LOSS_WINDOW, self.check_every) or not self.loss_count:
            return
        window = self.loss_total / self.loss_count
        self.loss_total, self.loss_count, self.window_batches = 0.0, 0, 0
        if self.best_window is None or window < self.best_window:
            self.best_window = window
        elif not window <= self.best_window + math.log(self.settings.backoff_factor):
            ratio = math.exp(min(window - self.best_window, 700))
            self.back_off(epoch, index, f"training perplexity is {ratio:.2f}× its best")
            self.best_window = window if math.isfinite(window) else self.best_window

    def back_off(self, epoch: int, index: int, reason: str) -> None:
        """Halve λ of every set still pruning and cap it there; no raise for a few checks."""
        changed = {}
        for i, name in enumerate(self.names):
            if name in self.frozen or self.lambdas[i] == 0:
                continue
            self.lambdas[i] /= 2
            self.caps[i] = self.lambdas[i]
            changed[name] = self.lambdas[i]
        self.cooldown = COOLDOWN_CHECKS
        self.record("backoff", epoch=epoch, batch=index, reason=reason, **{"lambda": changed})
        halved = ", ".join(f"{name} {value:.3g}" for name, value in changed.items())
        self.announce(f"[yellow]controller: {reason}; λ halved ({halved})[/]")

    @torch.no_grad()
    def freeze(self, index: int, epoch: int, batch: int, why: str, cut: int = 0) -> None:
        """λ = 0 for this set, its dead units held at zero from now on, its survivors protected."""
        name, part = self.names[index], self.slices[index]
        mask = self.unit_mask()
        self.dead[part] = ~mask[part]
        self.frozen[name] = {"epoch": epoch, "batch": batch, "lambda": self.lambdas[index], "why": why}
        self.lambdas[index] = 0.0
        self.enforce_exact(0.0)  # newly held-dead lines: only the exact path may protect what they would kill
        self.record("freeze", set=name, epoch=epoch, batch=batch, units=int(mask[part].sum()), why=why,
                    cut=cut, **{"lambda": self.frozen[name]["lambda"]})

    @torch.no_grad()
    def finish_pruning(self, epoch: int) -> None:
        """Cut every set still above its target to exactly the target (weakest groups first); then λ = 0.

        Sets are cut from the last to the first: removing a unit of layer l + 1 also removes
        the receivers that layer-l units have in its row, so layer l is counted after it.
        """
        norms = self.main.norms()
        for index in reversed(range(len(self.names))):
            name, part = self.names[index], self.slices[index]
            if name in self.frozen:
                continue
            mask = self.unit_mask()[part]
            surplus = int(mask.sum()) - self.targets[index]
            if surplus > 0:
                scores = torch.where(mask, norms[part], torch.full_like(norms[part], -1.0))
                weakest = torch.zeros_like(mask)
                weakest[scores.topk(int(mask.sum())).indices[self.targets[index]:]] = True
                extra = torch.zeros_like(self.dead)
                extra[part] = weakest
                self.enforce(0.0, extra)
            self.final_cut[name] = max(surplus, 0)
            self.freeze(index, epoch, self.batches_per_epoch, "end of the pruning phase", cut=max(surplus, 0))
        self.phase = "recover"
        self.lambdas = [0.0] * len(self.names)
        units = self.units()
        self.record("recover", epoch=epoch, units=units, final_cut=dict(self.final_cut))
        cut = ", ".join(f"{name} {count}" for name, count in self.final_cut.items() if count)
        left = ", ".join(f"{name} {count}" for name, count in units.items())
        self.announce(f"controller: pruning done at epoch {epoch}; units {left}"
                      + (f" (weakest groups zeroed: {cut})" if cut else "") + "; recovering with λ = 0")

    # -- records, state -------------------------------------------------------------------

    def record(self, kind: str, **fields: Any) -> None:
        event = {"event": "controller", "kind": kind, **fields}
        if kind not in ("epoch", "start"):
            self.events.append(event)
        self.log.write(event)

    def summary(self) -> dict[str, Any]:
        """For the final report: targets, units now, λ per set per epoch, when each set froze, back-offs."""
        units = self.units() if self.trainer is not None else {}
        return {
            "targets": dict(self.settings.targets),
            "origin": self.settings.origin,
            "prune_epochs": self.settings.prune_epochs,
            "recover_epochs": self.settings.recover_epochs,
            "cap": self.settings.cap,
            "phase": self.phase,
            "units": units,
            "lowest_units": dict(self.lowest_units),
            "frozen": self.frozen,
            "final_cut": self.final_cut,
            "lambda_per_epoch": self.history["lambda"],
            "units_per_epoch": self.history["units"],
            "epochs": self.history["epoch"],
            "backoffs": [e for e in self.events if e["kind"] == "backoff"],
        }

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        info = {
            "settings": json_round_trip(self.settings.to_dict()),
            "phase": self.phase, "lambdas": self.lambdas, "starts": self.starts,
            "caps": [c if math.isfinite(c) else None for c in self.caps], "initial": self.initial,
            "frozen": self.frozen, "grad_sum": None if self.grad_sum is None else self.grad_sum.tolist(),
            "grad_batches": self.grad_batches, "best_window": self.best_window, "best_valid": self.best_valid,
            "cooldown": self.cooldown, "loss_window": [self.loss_total, self.loss_count, self.window_batches],
            "history": self.history, "events": self.events,
            "final_cut": self.final_cut, "lowest_units": self.lowest_units, "overridden": self.overridden,
        }
        return {"dead": self.dead.cpu()}, info

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        if info.get("settings") != json_round_trip(self.settings.to_dict()):
            raise IsscliError("--resume needs the target and controller flags the run started with",
                              "repeat the original --target-*, --prune-epochs, --recover-epochs and --lambda")
        self.restored, self.restored_dead = info, tensors.get("dead")

    def _restore(self, info: dict[str, Any]) -> None:
        self.phase = info["phase"]
        self.lambdas, self.starts, self.initial = list(info["lambdas"]), list(info["starts"]), list(info["initial"])
        self.caps = [math.inf if c is None else c for c in info["caps"]]
        self.frozen = info["frozen"]
        device = self.main.multipliers.device
        self.grad_sum = None if info["grad_sum"] is None else torch.tensor(info["grad_sum"], device=device)
        self.grad_batches = info["grad_batches"]
        self.best_window, self.best_valid, self.cooldown = info["best_window"], info["best_valid"], info["cooldown"]
        self.loss_total, self.loss_count, self.window_batches = info["loss_window"]
        self.history, self.events = info["history"], info["events"]
        self.final_cut, self.lowest_units = info["final_cut"], info["lowest_units"]
        self.overridden = info["overridden"]
        dead = self.restored_dead
        self.dead = (dead if dead is not None else torch.zeros(self.main.total, dtype=torch.bool)).to(device)
        self.restored = None


def json_round_trip(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def units_of(model: nn.Module, spec: GroupSpec) -> dict[str, int]:
    """Units per set of a live model (components whose receivers are not all zero)."""
    from isscli.models import model_tensors

    return receiver_units(spec, model_tensors(model))
