"""Generic tensor data: any recurrent model trained and scored on arrays from a ``.safetensors`` or ``.npz`` file.

A file holds either ``x``, ``y`` (and optionally ``lengths``) for the whole data set, cut into
train/valid/test by ``split_rule`` in file order, or its own splits as ``train.x``, ``train.y``,
``train.lengths``, ``valid.x``, … (``.``, ``_`` or ``/`` between split and name; ``test``
optional). Samples are on dim 0: ``x`` is ``[N, T, F]`` floats or ``[N, T]`` integer token ids,
``lengths`` ``[N]`` integers in 1…T. What ``y`` holds depends on the objective, which is never
guessed (a float ``y`` may be a regression target or a mistake):

* ``regression``: floating ``y`` of any shape ``[N, …]``; mean squared error.
* ``classification``: integer ``y`` ``[N]``, classes 0…C-1; cross-entropy per sequence.
* ``tagging``: integer ``y`` ``[N, T]``, a class per step; -100 (PyTorch's ``ignore_index``) and the
  steps at or beyond ``lengths`` are not scored.

Every problem is one :class:`~isscli.io.errors.IsscliError` line naming the file and the array.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isscli.data.arrays import NAMES, SPLIT_KEY, TENSOR_SUFFIXES, arrange, read_arrays
from isscli.io.errors import IsscliError
from isscli.io.hashing import file_sha256
from isscli.io.jsonfile import JSONObject

OBJECTIVES: tuple[str, ...] = ("regression", "classification", "tagging")
#: The split rule of a file holding ``x`` and ``y``: train, valid, test fractions, in file order.
DEFAULT_SPLIT_RULE = "0.8,0.1,0.1"
#: A tagging label that is not scored (PyTorch's ``ignore_index``).
IGNORE = -100
SPLITS = ("train", "valid", "test")


def is_tensor_file(path: Any) -> bool:
    """Whether ``path`` names tensor data by its suffix (the file need not exist yet)."""
    try:
        return Path(os.fspath(path)).suffix.lower() in TENSOR_SUFFIXES
    except TypeError:
        return False


@dataclass
class TensorSplit:
    """One split's samples (dim 0). In a tagging split, the steps beyond ``lengths`` already read -100 in ``y``."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None

    def __len__(self) -> int:
        return self.x.shape[0]

    def model_input(self, rows: torch.Tensor | slice, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """What the model is called with: ``(x,)``, or ``(x, lengths)`` where the data has lengths."""
        if self.lengths is None:
            return (self.x[rows].to(device),)
        return self.x[rows].to(device), self.lengths[rows].to(device)


@dataclass
class TensorData:
    """A tensor data file, validated and split, with how it was split in words (printed, so it is never silent)."""

    path: Path
    sha256: str
    objective: str
    splits: dict[str, TensorSplit]
    split_rule: str
    num_classes: int | None

    def split(self, name: str) -> TensorSplit:
        """A split by name; a missing one (a file without ``test``) is a one-line error naming the file."""
        if name not in self.splits:
            if name == "test" and "x, y split" in self.split_rule:
                hint = "give `split_rule` three fractions (train, valid, test), e.g. 0.8,0.1,0.1"
            elif name == "test":
                hint = "store test.x and test.y in the file, or evaluate `split` valid"
            else:
                hint = f"choose `split` {' or '.join(self.splits)}"
            raise IsscliError(f"{self.path} has no {name} split ({self.split_rule})", hint)
        return self.splits[name]

    def example_input(self, batch: int, device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, ...]:
        """The first ``batch`` training rows (fewer if train is smaller), as the model is called with them."""
        return self.splits["train"].model_input(slice(0, batch), device)

    @property
    def call(self) -> str:
        """How the model is called on this data: with ``lengths`` where the data has them."""
        return "model(x, lengths)" if self.splits["train"].lengths is not None else "model(x)"

    @property
    def reading(self) -> str:
        """How a command reads the data, as it says before any work: the split, the call and the objective."""
        return f"{self.split_rule}; {self.call}, objective {self.objective}"

    def describe(self) -> JSONObject:
        """A JSON-able summary: the file, its hash, the objective, how it was split and what each split holds."""
        return {
            "path": str(self.path), "sha256": self.sha256, "objective": self.objective,
            "split_rule": self.split_rule, "num_classes": self.num_classes,
            "splits": {name: {"count": len(split), "x_shape": list(split.x.shape),
                              "x_dtype": dtype_name(split.x.dtype), "y_shape": list(split.y.shape),
                              "has_lengths": split.lengths is not None}
                       for name, split in self.splits.items()},
            "call": self.call,
        }


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def is_integer(tensor: torch.Tensor) -> bool:
    """Integer, not bool: labels and token ids are counts, a bool array is more likely a mask stored by mistake."""
    return not tensor.dtype.is_floating_point and not tensor.dtype.is_complex and tensor.dtype != torch.bool


def check_objective(objective: str | None) -> str:
    """The objective is required: a float ``y`` may be a regression target or classes stored as floats by mistake."""
    if objective not in OBJECTIVES:
        what = "no `objective` given" if objective is None else f"unknown `objective` {objective!r}"
        raise IsscliError(f"{what} for tensor data", f"give `objective` {', '.join(OBJECTIVES[:-1])} or "
                                                     f"{OBJECTIVES[-1]} (it says what y holds)")
    return objective


def check_group(path: Path, objective: str, group: dict[str, torch.Tensor], keys: dict[str, str], split: str) -> None:
    """Shapes, dtypes and values of one split's x, y and lengths (or the whole data's, before it is split)."""
    y = group["y"]
    name = {n: keys.get(f"{split}.{n}", n) for n in NAMES}
    if y.dim() == 0:
        raise IsscliError(f"{path}: {name['y']} is a single number", "store one target per sample, on dim 0")
    check_inputs(path, group, name, split)
    check_targets(path, objective, name["y"], y, group["x"].shape[1])


def check_inputs(path: Path, group: dict[str, torch.Tensor], name: dict[str, str], split: str) -> None:
    """What the model reads: x ([N, T, F] floats or [N, T] ids) and lengths, with as many samples as y (if given)."""
    x, lengths = group["x"], group.get("lengths")
    where = f"{path}: {name['x']}"
    if x.dtype.is_floating_point and x.dim() == 2:
        raise IsscliError(f"{where} is {dtype_name(x.dtype)} of shape {list(x.shape)}; float x needs [N, T, F]",
                          "add a feature axis (x[:, :, None]) for one feature per step")
    if not ((x.dtype.is_floating_point and x.dim() == 3) or (is_integer(x) and x.dim() == 2)):
        raise IsscliError(f"{where} is {dtype_name(x.dtype)} of shape {list(x.shape)}; x must be [N, T, F] floats "
                          "or [N, T] integer token ids", "store x as float32 [samples, steps, features] or "
                                                         "int64 [samples, steps]")
    counts = {name[n]: group[n].shape[0] if group[n].dim() else 1 for n in NAMES if n in group}
    if len(set(counts.values())) > 1:
        raise IsscliError(f"{path}: sample counts differ on dim 0 ({', '.join(f'{k} {v}' for k, v in counts.items())})",
                          "store one row per sample in every array")
    if x.shape[0] == 0:
        label = "the data" if split == "all" else f"the {split} split"
        raise IsscliError(f"{path}: {label} holds no samples", "give at least one sample in every split")
    if x.shape[1] == 0:
        raise IsscliError(f"{where} has no steps (shape {list(x.shape)})", "give sequences of at least one step")
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise IsscliError(f"{where} holds NaN or infinite values", "clean or impute them before saving")
    if is_integer(x) and int(x.min()) < 0:
        raise IsscliError(f"{where} holds token id {int(x.min())}; ids must be ≥ 0", "renumber the tokens from 0")
    if lengths is not None:
        check_lengths(path, name["lengths"], lengths, x.shape[1])


def check_lengths(path: Path, key: str, lengths: torch.Tensor, steps: int) -> None:
    """``lengths`` counts each sample's real steps: 1…T (a sequence of 0 steps has nothing to read)."""
    if not is_integer(lengths) or lengths.dim() != 1:
        raise IsscliError(f"{path}: {key} is {dtype_name(lengths.dtype)} of shape {list(lengths.shape)}; "
                          "lengths must be [N] integers", "store one integer step count per sample")
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > steps:
        raise IsscliError(f"{path}: {key} range {low}…{high}, outside 1…{steps} (the steps of x)",
                          "give each sample's number of real steps, at least 1 and at most x.shape[1]")


def check_targets(path: Path, objective: str, key: str, y: torch.Tensor, steps: int) -> None:
    """``y`` as the objective reads it: floating for regression, integer classes otherwise."""
    if objective == "regression":
        if not y.dtype.is_floating_point:
            raise IsscliError(f"{path}: {key} is {dtype_name(y.dtype)}; regression needs floating targets",
                              "store y as float32, or give `objective` classification or tagging for class ids")
        if not bool(torch.isfinite(y).all()):
            raise IsscliError(f"{path}: {key} holds NaN or infinite values", "clean or drop those samples")
        return
    if not is_integer(y):
        raise IsscliError(f"{path}: {key} is {dtype_name(y.dtype)}; {objective} needs integer class ids",
                          "store y as int64 classes 0…C-1, or give `objective` regression for real-valued targets")
    shape = "[N]" if objective == "classification" else f"[N, {steps}]"
    if (objective == "classification" and y.dim() != 1) or (objective == "tagging" and
                                                           (y.dim() != 2 or y.shape[1] != steps)):
        other = "tagging" if objective == "classification" else "classification"
        what = "a class per sample" if objective == "classification" else "a class per step of x"
        raise IsscliError(f"{path}: {key} has shape {list(y.shape)}; {objective} needs {shape} ({what})",
                          f"store y as {shape}, or give `objective` {other}")


def check_labels(path: Path, objective: str, key: str, y: torch.Tensor) -> None:
    """Classes are ≥ 0; in tagging -100 marks a step not scored (``y`` here has the steps beyond lengths at -100)."""
    scored = y[y != IGNORE] if objective == "tagging" else y
    if scored.numel() == 0:
        raise IsscliError(f"{path}: every step of {key} is ignored (-100 or beyond lengths)",
                          "give every split at least one labelled step")
    if int(scored.min()) < 0:
        allowed = " (or -100 to skip a step)" if objective == "tagging" else ""
        raise IsscliError(f"{path}: {key} holds label {int(scored.min())}; classes must be ≥ 0{allowed}",
                          "renumber the classes from 0")


def parse_split_rule(rule: Any) -> list[float]:
    """Two or three positive fractions summing to 1: train, valid (and test), taken in file order."""
    hint = f"give train, valid, test fractions summing to 1, e.g. `split_rule` {DEFAULT_SPLIT_RULE}"
    if not isinstance(rule, str):
        raise IsscliError(f"`split_rule` {rule!r} is not text", hint)
    try:
        fractions = [float(part) for part in rule.split(",")]
    except ValueError:
        raise IsscliError(f"`split_rule` {rule!r} is not comma-separated numbers", hint) from None
    if len(fractions) not in (2, 3) or not all(math.isfinite(f) and f > 0 for f in fractions):
        raise IsscliError(f"`split_rule` {rule!r} needs 2 or 3 positive fractions (train, valid[, test])", hint)
    if abs(sum(fractions) - 1) > 1e-6:
        raise IsscliError(f"`split_rule` {rule!r} sums to {sum(fractions):g}, not 1", hint)
    return fractions


def split_in_order(path: Path, group: dict[str, torch.Tensor], rule: str) -> tuple[dict[str, TensorSplit], str]:
    """Cut the x, y form by ``rule`` in file order: no shuffle, since for time series a shuffle leaks the future."""
    fractions = parse_split_rule(rule)
    count = group["x"].shape[0]
    bounds = [0, *(round(sum(fractions[: i + 1]) * count) for i in range(len(fractions) - 1)), count]
    names = SPLITS[: len(fractions)]
    sizes = dict(zip(names, (b - a for a, b in zip(bounds, bounds[1:]))))
    text = ",".join(f"{f:g}" for f in fractions)
    for name, size in sizes.items():
        if size < 1:
            raise IsscliError(f"`split_rule` {text} leaves the {name} split of {path} ({count} samples) empty",
                              "give more samples or a larger fraction to that split")
    splits = {}
    for name, start, stop in zip(names, bounds, bounds[1:]):
        lengths = group.get("lengths")
        splits[name] = TensorSplit(group["x"][start:stop], group["y"][start:stop],
                                   None if lengths is None else lengths[start:stop])
    counts = ", ".join(f"{size} {name}" for name, size in sizes.items())
    no_test = "" if "test" in sizes else ", no test"
    return splits, f"x, y split in file order: {counts}{no_test} (`split_rule` {text})"


def normalized(objective: str, split: TensorSplit) -> TensorSplit:
    """Dtypes the model and losses take (float32 x and regression y, int64 ids, classes and lengths); in tagging,
    the steps beyond ``lengths`` set to -100 once here, so the loss needs only ``ignore_index``."""
    x = split.x.float() if split.x.dtype.is_floating_point else split.x.long()
    lengths = None if split.lengths is None else split.lengths.long()
    y = split.y.float() if objective == "regression" else split.y.long()
    if objective == "tagging" and lengths is not None:
        beyond = torch.arange(y.shape[1]) >= lengths[:, None]
        y = y.masked_fill(beyond, IGNORE)
    return TensorSplit(x, y, lengths)


def check_alike(path: Path, objective: str, splits: dict[str, TensorSplit]) -> None:
    """Every split is read by the same model: the same kind of x, the same features, the same regression target."""
    def kind(split: TensorSplit) -> str:
        features = "token ids" if split.x.dim() == 2 else f"{split.x.shape[2]} features per step"
        target = f", y per sample {list(split.y.shape[1:])}" if objective == "regression" else ""
        return features + target

    kinds = {name: kind(split) for name, split in splits.items()}
    if len(set(kinds.values())) > 1:
        raise IsscliError(f"{path}: the splits differ ({'; '.join(f'{k}: {v}' for k, v in kinds.items())})",
                          "store every split's x (and y) with the same trailing shape and kind")


def class_count(path: Path, objective: str, splits: dict[str, TensorSplit], num_classes: int | None) -> int | None:
    """C: one more than the largest label over all splits, unless given (then it must cover every label)."""
    if objective == "regression":
        if num_classes is not None:
            raise IsscliError("`num_classes` is for classification and tagging, not regression",
                              "leave `num_classes` out")
        return None
    largest = max(int(split.y[split.y != IGNORE].max()) for split in splits.values())
    if num_classes is None:
        return largest + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= largest:
        raise IsscliError(f"`num_classes` {num_classes!r} does not cover the labels of {path} (up to {largest})",
                          f"give `num_classes` at least {largest + 1}, or leave it out")
    return num_classes


def own_splits(path: Path, groups: dict[str, dict[str, torch.Tensor]],
               split_rule: str | None) -> tuple[dict[str, TensorSplit], str]:
    """The per-split form as the file has it; lengths for all splits or none, as the model is called one way."""
    if split_rule is not None:
        raise IsscliError(f"`split_rule` applies to a file holding x and y; {path} has its own splits",
                          "leave `split_rule` out")
    with_lengths = {name for name, group in groups.items() if "lengths" in group}
    if with_lengths and with_lengths != set(groups):
        raise IsscliError(f"{path} has lengths for {', '.join(sorted(with_lengths))} only",
                          "store lengths for every split or for none (the model is called the same way on all)")
    splits = {name: TensorSplit(groups[name]["x"], groups[name]["y"], groups[name].get("lengths"))
              for name in SPLITS if name in groups}
    counts = ", ".join(f"{len(split)} {name}" for name, split in splits.items())
    return splits, f"the file's {'/'.join(splits)} splits: {counts}" + ("" if "test" in splits else ", no test")


def load_tensor_data(path: str | os.PathLike[str], objective: str | None, split_rule: str | None = None,
                     num_classes: int | None = None) -> TensorData:
    """Read, validate and split a tensor data file; see the module docstring for its two forms and the objectives."""
    objective = check_objective(objective)
    path = Path(path)
    groups, keys = arrange(path, read_arrays(path))
    for name, group in groups.items():
        check_group(path, objective, group, keys, name)
    if "all" in groups:
        rule = DEFAULT_SPLIT_RULE if split_rule is None else split_rule
        splits, rule_text = split_in_order(path, groups["all"], rule)
    else:
        splits, rule_text = own_splits(path, groups, split_rule)
    splits = {name: normalized(objective, split) for name, split in splits.items()}
    check_alike(path, objective, splits)
    if objective != "regression":
        for name, split in splits.items():
            check_labels(path, objective, keys.get(f"{name}.y", f"y ({name} split)"), split.y)
    count = class_count(path, objective, splits, num_classes)
    return TensorData(path, file_sha256(path), objective, splits, rule_text, count)


def load_tensor_inputs(path: str | os.PathLike[str]) -> TensorSplit:
    """The model's inputs only: ``x`` (or ``train.x``) and its ``lengths``, checked, from the file's first rows on,
    e.g. to trace or time a model, where no objective is needed and ``y`` may be absent (``y`` here is [N, 0])."""
    path = Path(path)
    arrays = read_arrays(path)
    found = ", ".join(sorted(arrays)) or "none"
    keys: dict[str, str] = {}
    for key in arrays:
        match = SPLIT_KEY.match(key)
        if key in ("x", "lengths") or (match and match.group(1) == "train" and match.group(2) != "y"):
            keys.setdefault("lengths" if key.endswith("lengths") else "x", key)
    if "x" not in keys:
        raise IsscliError(f"{path} has no x (found {found})", "store the model's input as x or train.x")
    group = {name: arrays[key] for name, key in keys.items()}
    check_inputs(path, group, {**dict(zip(NAMES, NAMES)), **keys}, "all")
    x, lengths = group["x"], group.get("lengths")
    return TensorSplit(x.float() if x.dtype.is_floating_point else x.long(), torch.empty(x.shape[0], 0),
                       None if lengths is None else lengths.long())
