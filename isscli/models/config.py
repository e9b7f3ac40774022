"""Model configs: the plain dicts from which every model family is built.

A config is what goes into a checkpoint's header, so it stays a flat JSON object.
``hidden_sizes`` lists, per layer, the size of each direction: ``[[1500], [1500]]`` for the
paper's LM, ``[[64, 60], [50, 58]]`` for a compacted bidirectional classifier. Plain ints are
accepted on input (``[1500, 1500]``) and widened to one direction per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.words import MAX_VOCABULARY

#: Gate blocks per cell: the rows of a layer's weights are ``gates × hidden``.
GATES_PER_CELL = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
FAMILIES = ("lm", "classifier", "rhn")
POOLINGS = ("max", "mean", "last")
#: The fewest words a classifier runs with: id 0 is <pad>, which it masks out, so one word more (LMs and RHNs run
#: with one word: every id below vocab_size is a word).
MIN_CLASSIFIER_VOCABULARY = 2


@dataclass
class ModelConfig:
    """Architecture of one model; see the module docstring for ``hidden_sizes``."""

    family: str
    vocab_size: int
    embedding_size: int
    hidden_sizes: list[list[int]]
    cell: str = "lstm"
    tie_weights: bool = False
    dropout: float = 0.0
    num_classes: int | None = None
    pooling: str = "max"
    init_range: float | None = None
    depth: int | None = None  # RHN recurrence depth (micro-layers per step)

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def output_size(self) -> int:
        return sum(self.hidden_sizes[-1])

    def to_dict(self) -> JSONObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelConfig:
        """Validate a config dict; errors name the field and the accepted values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise IsscliError(
                f"unknown config field(s) {', '.join(unknown)}", f"known fields: {', '.join(sorted(known))}"
            )
        missing = [name for name in ("family", "vocab_size", "embedding_size", "hidden_sizes") if name not in raw]
        if missing:
            raise IsscliError(f"config lacks {', '.join(missing)}", "add them to the config file")
        values = dict(raw)
        values["hidden_sizes"] = normalise_hidden_sizes(values["hidden_sizes"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        _check_types(self)
        if self.family not in FAMILIES:
            raise IsscliError(f"unknown model family {self.family!r}", f"use one of {', '.join(FAMILIES)}")
        if self.cell not in GATES_PER_CELL:
            raise IsscliError(f"unknown cell {self.cell!r}", f"use one of {', '.join(GATES_PER_CELL)}")
        if self.pooling not in POOLINGS:
            raise IsscliError(f"unknown pooling {self.pooling!r}", f"use one of {', '.join(POOLINGS)}")
        if self.family == "classifier" and self.vocab_size < MIN_CLASSIFIER_VOCABULARY:
            raise IsscliError(f"config field vocab_size is {self.vocab_size}, but a classifier needs at least "
                              f"{MIN_CLASSIFIER_VOCABULARY} (id 0 is <pad>, which it masks out, plus one word)",
                              "fix the config: a classifier's vocab_size counts <pad> and its words")
        directions = {len(sizes) for sizes in self.hidden_sizes}
        if directions - {1, 2} or len(directions) != 1:
            raise IsscliError("every layer needs one size (unidirectional) or two (bidirectional)", "fix hidden_sizes")
        if any(size < 1 for sizes in self.hidden_sizes for size in sizes):
            raise IsscliError("hidden sizes must be positive", "fix hidden_sizes")
        if self.family == "classifier" and not self.num_classes:
            raise IsscliError("a classifier config needs num_classes", "add num_classes to the config")
        if self.tie_weights and self.family == "lm" and self.embedding_size != self.output_size:
            raise IsscliError(
                f"tied weights need embedding_size ({self.embedding_size}) = last layer's output ({self.output_size})",
                "set tie_weights to false or make the sizes equal",
            )
        if self.family == "rhn":
            if self.num_layers != 1 or len(self.hidden_sizes[0]) != 1 or not self.depth or self.depth < 1:
                raise IsscliError("an RHN config needs one width (hidden_sizes [[W]]) and depth ≥ 1", "fix the config")
            if self.embedding_size != self.hidden_sizes[0][0]:
                raise IsscliError("an RHN's embedding size must equal its width", "set embedding_size = width")
        if not 0.0 <= self.dropout < 1.0:
            raise IsscliError(f"dropout {self.dropout} is outside [0, 1)", "give a drop probability such as 0.5")


#: Each numeric field's type and bounds (far above any real model: a typo must not allocate terabytes).
NUMBERS: dict[str, tuple[type[int] | tuple[type[int], type[float]], float, float]] = {
    "vocab_size": (int, 1, MAX_VOCABULARY), "embedding_size": (int, 1, 65_536), "num_classes": (int, 1, 10_000),
    "depth": (int, 1, 64), "dropout": ((int, float), 0.0, 1.0), "init_range": ((int, float), 0.0, 1e6),
}


def _check_types(config: ModelConfig) -> None:
    for name in ("family", "cell", "pooling"):
        if not isinstance(getattr(config, name), str):
            raise IsscliError(f"config field {name} is {getattr(config, name)!r}, not a name", "fix the config")
    if not isinstance(config.tie_weights, bool):
        raise IsscliError(f"config field tie_weights is {config.tie_weights!r}, not true or false", "fix the config")
    for name, (kind, low, high) in NUMBERS.items():
        value = getattr(config, name)
        if value is None and name in ("num_classes", "init_range", "depth"):
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            bounds = " to ".join(f"{bound:,}" if isinstance(bound, int) else f"{bound:g}" for bound in (low, high))
            raise IsscliError(f"config field {name} is {str(value)[:40]!r}, not a number from {bounds}",
                              "fix the config")
    if len(config.hidden_sizes) > 64 or any(size > 65_536 for sizes in config.hidden_sizes for size in sizes):
        raise IsscliError("hidden_sizes: at most 64 layers of at most 65,536 units", "fix hidden_sizes")


def normalise_hidden_sizes(raw: Any) -> list[list[int]]:
    if not isinstance(raw, list) or not raw:
        raise IsscliError("hidden_sizes must be a non-empty list", "write e.g. [1500, 1500] or [[64, 60]]")
    sizes = []
    for entry in raw:
        layer = [entry] if isinstance(entry, int) else entry
        if not isinstance(layer, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in layer):
            raise IsscliError(f"hidden_sizes entry {entry!r} is not a size or list of sizes", "write e.g. [1500, 1500]")
        sizes.append(list(layer))
    return sizes
