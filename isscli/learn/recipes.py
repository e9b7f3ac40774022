"""Training settings and the published recipes they start from.

The LM recipes are Zaremba et al. (2014)'s, as in the TensorFlow PTB example the ISS authors
built on: plain SGD from lr 1, the lr multiplied by ``lr_decay`` every epoch after
``decay_after``, gradients clipped to a global norm of ``max_grad_norm``. Model-side knobs
(sizes, dropout, init range) live in :mod:`isscli.models.presets`; this module holds the rest.

Loss convention (see docs/training.md): the data loss is the cross-entropy summed over the
``bptt`` unrolled steps and averaged over the batch, so λ, the lr and the clipping norm mean
what they mean in the paper and the authors' code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject, read_json_object
from isscli.io.parsing import MAX_BATCH, MAX_BATCHES, MAX_EPOCHS, MAX_FLOAT32, MAX_SEED, MAX_STEPS, check_bounds
from isscli.models.presets import PRESETS

if TYPE_CHECKING:
    from isscli.models.config import ModelConfig
    from isscli.observer import Observer

OPTIMIZERS = ("sgd", "adam")
#: Precision of the forward and backward passes; weights, the regularizer and every ISS decision stay in fp32.
PRECISIONS = ("fp32", "bf16")
KEEP = ("best", "last")
#: τ used when a regularizer (or a size target) is on and no weight threshold is given (paper Sec. 4, PTB LSTMs).
PAPER_THRESHOLD = 1e-4
#: Settings-file keys that read better than the field names (``threshold`` is the name before 0.2).
ALIASES = {"lambda": "group_lasso", "tau": "weight_threshold", "threshold": "weight_threshold"}


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of a training run; all can be set by flag (named like the field; ``group_lasso`` is
    ``--lambda``) or in a ``--settings`` JSON file."""

    epochs: int
    batch_size: int
    bptt: int
    lr: float
    lr_decay: float
    decay_after: int
    max_grad_norm: float
    decay_every: int = 1
    optimizer: str = "sgd"
    group_lasso: float = 0.0
    weight_threshold: float | None = None  # τ: zero regularized weights with |w| < τ after every batch
    l1: float = 0.0
    epsilon: float = 1e-8
    eval_batch_size: int = 10
    divergence_factor: float = 4.0
    max_batches: int | None = None
    max_eval_batches: int | None = None  # cut validation passes short (quick checks); the final test pass is whole
    save_every: int | None = None  # also save the resumable state every this many batches (not only every epoch)
    seed: int = 0
    keep: str = "best"  # which epoch OUT holds: the best-valid one, or the last (ISS fine-tuning)
    precision: str = "fp32"  # or bf16: forward and backward under autocast (weights and ISS decisions in fp32)

    def validate(self) -> TrainSettings:
        for name, (low, high, low_allowed) in RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not finite(value) or value < low or (value == low and not low_allowed):
                relation = "≥" if low_allowed else ">"
                raise IsscliError(f"`{name}` must be {relation} {low} (got {shown(value)})", "fix the setting")
            if value > high:
                raise IsscliError(f"`{name}` must be at most {shown(high)} (got {shown(value)})",
                                  f"give a smaller `{name}` (the bound keeps a mistyped number from reaching torch)")
        if not 0 < self.lr_decay <= 1:
            raise IsscliError(f"`lr_decay` {self.lr_decay} is outside (0, 1]", "give e.g. 0.5")
        if self.optimizer not in OPTIMIZERS:
            raise IsscliError(f"unknown `optimizer` {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
        if self.keep not in KEEP:
            raise IsscliError(f"unknown `keep` {self.keep!r}", f"use one of {', '.join(KEEP)}")
        check_bounds(self.seed, "seed", 0, MAX_SEED)
        if self.precision not in PRECISIONS:
            raise IsscliError(f"unknown `precision` {self.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        return self

    @property
    def tau(self) -> float:
        """τ in force: the weight threshold, else the paper's 1e-4 when a regularizer is on, else 0."""
        if self.weight_threshold is not None:
            return self.weight_threshold
        return PAPER_THRESHOLD if self.group_lasso > 0 or self.l1 > 0 else 0.0

    def resolved(self) -> TrainSettings:
        """These settings with τ written out, as provenance records them (one number, one name)."""
        return replace(self, weight_threshold=self.tau)

    def lr_at(self, epoch: int) -> float:
        """The lr of 1-based ``epoch``: ``lr · lr_decay^⌊max(epoch − decay_after, 0) / decay_every⌋``.

        ``decay_every = 1`` is Zaremba's schedule; the authors' ISS run of the large LM
        ("sparselarge") is ``lr_decay 0.1, decay_after 1, decay_every 18``.
        """
        return self.lr * self.lr_decay ** (max(epoch - self.decay_after, 0) // self.decay_every)

    def to_dict(self) -> JSONObject:
        return asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> TrainSettings:
        """These settings with ``changes`` applied; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known - set(ALIASES))
        if unknown:
            raise IsscliError(f"unknown setting(s) {', '.join(unknown)}", f"known settings: {', '.join(sorted(known))}")
        changes = {ALIASES.get(key, key): value for key, value in changes.items()}
        checked = {name: _checked(name, value) for name, value in changes.items()}
        return replace(self, **checked).validate()


def finite(value: float) -> bool:
    """Python's whole numbers are always finite (``math.isfinite`` overflows on those beyond a float)."""
    return isinstance(value, int) or math.isfinite(value)


def shown(number: float) -> str:
    """A bound or a value in a message: whole numbers with thousands separators (huge ones by their order of
    magnitude: they may not even convert to a float), others in 6 digits."""
    if isinstance(number, int):
        return f"{number:,}" if abs(number) < 10**15 else f"about 10^{int(abs(number).bit_length() * math.log10(2))}"
    return f"{number:.6g}"


def _checked(name: str, value: Any) -> Any:
    """A setting keeps its kind: numbers stay numbers (whole where the recipe's are), text stays text."""
    if value is None and name in OPTIONAL_SETTINGS:
        return None
    if name in NUMERIC_SETTINGS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise IsscliError(f"setting `{name}` must be a number (got {value!r})", "fix the setting")
        if name in WHOLE_SETTINGS:
            if isinstance(value, int):
                return value
            if not value.is_integer():
                raise IsscliError(f"setting `{name}` must be a whole number (got {value!r})", "fix the setting")
            return int(value)
        return float(value)
    if not isinstance(value, str):
        raise IsscliError(f"setting `{name}` must be text (got {value!r})", "fix the setting")
    return value


WHOLE_SETTINGS = ("epochs", "batch_size", "bptt", "decay_after", "decay_every", "eval_batch_size", "max_batches",
                  "max_eval_batches", "save_every", "seed")
NUMERIC_SETTINGS = (*WHOLE_SETTINGS, "lr", "lr_decay", "max_grad_norm", "group_lasso", "weight_threshold", "l1",
                    "epsilon", "divergence_factor")
OPTIONAL_SETTINGS = ("weight_threshold", "max_batches", "max_eval_batches", "save_every")
#: Each numeric setting's range: (lowest, highest, whether the lowest itself is allowed). The highest keep a
#: mistyped number from reaching torch: sizes are allocations, counts are loops, and a number above float32's
#: largest is inf in the weights' precision. ``lr_decay`` has a range of its own, (0, 1].
RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (0, MAX_EPOCHS, False),
    "batch_size": (0, MAX_BATCH, False),
    "eval_batch_size": (0, MAX_BATCH, False),
    "bptt": (0, MAX_STEPS, False),
    "decay_every": (0, MAX_EPOCHS, False),
    "decay_after": (0, MAX_EPOCHS, True),
    "max_batches": (1, MAX_BATCHES, True),
    "max_eval_batches": (1, MAX_BATCHES, True),
    "save_every": (1, MAX_BATCHES, True),
    "lr": (0, MAX_FLOAT32, False),
    "max_grad_norm": (0, MAX_FLOAT32, False),
    "group_lasso": (0, MAX_FLOAT32, True),
    "l1": (0, MAX_FLOAT32, True),
    "epsilon": (0, MAX_FLOAT32, True),
    "weight_threshold": (0, MAX_FLOAT32, True),
    "divergence_factor": (1, MAX_FLOAT32, False),
}

RECIPES: dict[str, TrainSettings] = {
    # Zaremba et al. (2014), Table 1 and the TensorFlow PTB example.
    "small": TrainSettings(epochs=13, batch_size=20, bptt=20, lr=1.0, lr_decay=0.5, decay_after=4, max_grad_norm=5),
    "medium": TrainSettings(epochs=39, batch_size=20, bptt=35, lr=1.0, lr_decay=0.8, decay_after=6, max_grad_norm=5),
    "large": TrainSettings(epochs=55, batch_size=20, bptt=35, lr=1.0, lr_decay=1 / 1.15, decay_after=14,
                           max_grad_norm=10),
    # For demos and tests on two CPU cores: the small recipe, shortened.
    "tiny": TrainSettings(epochs=4, batch_size=20, bptt=20, lr=1.0, lr_decay=0.5, decay_after=2, max_grad_norm=5),
    "bilstm-classifier": TrainSettings(epochs=10, batch_size=50, bptt=1, lr=1e-3, lr_decay=1.0, decay_after=0,
                                       max_grad_norm=5, optimizer="adam"),
    # The user's own model (``model``) on tensor data: Adam's default step, batches of 32 samples.
    "tensor-data": TrainSettings(epochs=10, batch_size=32, bptt=1, lr=1e-3, lr_decay=1.0, decay_after=0,
                                 max_grad_norm=5, optimizer="adam", eval_batch_size=64),
}
#: The recipe of ``finetune`` with ``model`` unless ``preset`` names another.
TENSOR_RECIPE = "tensor-data"
#: The published test perplexities of Zaremba et al. (2014), for comparison in reports.
PUBLISHED_TEST_PERPLEXITY = {"small": 114.5, "medium": 82.7, "large": 78.4}


def recipe(name: str) -> TrainSettings:
    if name not in RECIPES:
        raise IsscliError(f"no training recipe `preset` {name!r}", f"choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def target_run(settings: TrainSettings, prune_epochs: int | None, recover_epochs: int | None
               ) -> tuple[TrainSettings, int, int]:
    """A size-target run's settings, τ resolved, and its two phases: it lasts ``prune_epochs + recover_epochs``
    (default: the recipe's epochs, then a quarter of them, at least one) and thresholds at the paper's τ even
    without λ."""
    prune = prune_epochs if prune_epochs is not None else settings.epochs
    recover = recover_epochs if recover_epochs is not None else max(1, prune // 4)
    if prune < 1 or recover < 1:
        raise IsscliError("`prune_epochs` and `recover_epochs` must be ≥ 1",
                          "the survivors need at least one epoch with λ = 0 after pruning")
    changes: JSONObject = {"epochs": prune + recover}
    if settings.weight_threshold is None:
        changes["weight_threshold"] = PAPER_THRESHOLD
    return settings.updated(changes).resolved(), prune, recover


def recipe_for(config: ModelConfig, name: str | None, observer: Observer) -> tuple[str, TrainSettings]:
    """``preset``, else the recipe whose model has the checkpoint's sizes, else the family's default."""
    if name is not None:
        return name, recipe(name)
    for preset, raw in PRESETS.items():
        if preset in RECIPES and raw["family"] == config.family and raw["hidden_sizes"] == config.hidden_sizes:
            observer.note(f"recipe: {preset!r}, whose model has the checkpoint's sizes (choose with `preset`)")
            return preset, RECIPES[preset]
    fallback = "bilstm-classifier" if config.family == "classifier" else "small"
    observer.note(f"no recipe matches hidden sizes {config.hidden_sizes}: using the {fallback!r} one "
                  "(choose with `preset`)")
    return fallback, RECIPES[fallback]


def read_settings_file(path: Path) -> JSONObject:
    """A JSON object of settings (``{"epochs": 20, "lr_decay": 0.9}``)."""
    return read_json_object(path, "settings file", '{"epochs": 20}')
