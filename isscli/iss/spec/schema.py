"""The native group-spec format: ISS sets made of tensor slices.

An ISS set owns ``components`` components (the hidden units of one layer-direction). A slice
says where component ``k`` lives in one tensor: along dimension ``dim``, at indices
``offset + b * block_stride + k`` for each block ``b < blocks``. The four gate blocks of an
LSTM's ``[4H, in]`` matrix are one slice with ``blocks: 4, block_stride: H``.

``role`` tells compaction what a slice is: a *producer* computes unit k (its gate rows and
biases), a *receiver* consumes h_k (a column of the recurrent matrix, of the next layer, of the
decoder). Removing component k is exact when every receiver slice of k is zero: then h_k
reaches nothing, and what produces it can go too. ``penalize: false`` keeps a slice out of the
group-Lasso vector (biases, as in the paper, Sec. 3.1).

The JSON Schema of this format ships as ``isscli/iss/spec/schema.json``.

Sizes: parsing and checking take time linear in the spec's size (a sort per tensor dimension for
the overlap check: n log n), never the product of sets and tensor sizes — a spec of 200,000 sets
parses and checks in seconds. Every integer is at most :data:`MAX_INDEX` (so no index arithmetic
can wrap), a multiplier is a finite number ≥ 0, and the slices of one tensor dimension may not
take more indices than it has.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from isscli.io.errors import SpecError
from isscli.io.jsonfile import JSONObject, read_json

FORMAT_NAME = "isscli.groups"
FORMAT_VERSION = 1
ROLES = ("producer", "receiver")
SPEC_FIELDS = frozenset({"format", "version", "comment", "sets"})
SET_FIELDS = frozenset({"name", "components", "multiplier", "slices"})
SLICE_FIELDS = frozenset({"tensor", "dim", "offset", "blocks", "block_stride", "role", "penalize"})
SCHEMA_PATH = Path(__file__).with_name("schema.json")
#: The largest integer a spec may hold (components, offsets, blocks, strides): 2**31 - 1, the int32 range.
MAX_INDEX = 2**31 - 1


@dataclass(frozen=True)
class TensorSlice:
    """Where every component of a set lives in one tensor."""

    tensor: str
    dim: int
    offset: int = 0
    blocks: int = 1
    block_stride: int | None = None
    role: str = "receiver"
    penalize: bool = True

    def stride(self, components: int) -> int:
        return self.block_stride if self.block_stride is not None else components

    def indices(self, components: int) -> torch.Tensor:
        """``[blocks, components]`` indices along ``dim``: entry ``[b, k]`` belongs to component k."""
        blocks = torch.arange(self.blocks).unsqueeze(1) * self.stride(components)
        return self.offset + blocks + torch.arange(components).unsqueeze(0)

    def to_json(self) -> JSONObject:
        data: JSONObject = {"tensor": self.tensor, "dim": self.dim, "offset": self.offset}
        if self.blocks != 1:
            data["blocks"] = self.blocks
            data["block_stride"] = self.block_stride
        data["role"] = self.role
        if not self.penalize:
            data["penalize"] = False
        return data


@dataclass
class IssSet:
    """One layer-direction's ISS: ``components`` groups spread over several tensor slices."""

    name: str
    components: int
    slices: list[TensorSlice]
    multiplier: float = 1.0

    @property
    def penalized(self) -> list[TensorSlice]:
        return [s for s in self.slices if s.penalize]

    @property
    def receivers(self) -> list[TensorSlice]:
        return [s for s in self.slices if s.role == "receiver"]

    def group_length(self, shapes: dict[str, tuple[int, ...]]) -> int:
        """Length of one component's group vector (penalized slices, concatenated)."""
        total = 0
        for piece in self.penalized:
            shape = shapes[piece.tensor]
            total += piece.blocks * int(torch.Size(shape).numel()) // shape[piece.dim]
        return total

    def to_json(self) -> JSONObject:
        return {
            "name": self.name,
            "components": self.components,
            "multiplier": self.multiplier,
            "slices": [piece.to_json() for piece in self.slices],
        }


@dataclass
class GroupSpec:
    """A list of ISS sets, the unit of work of ``prune``, ``compact`` and the regularizer."""

    sets: list[IssSet]
    comment: str = ""
    origin: str = field(default="native", compare=False)  # "native" or "authors"
    source: str | None = field(default=None, compare=False)

    def tensor_names(self) -> list[str]:
        return sorted({piece.tensor for iss in self.sets for piece in iss.slices})

    def to_json(self) -> JSONObject:
        data: JSONObject = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
        if self.comment:
            data["comment"] = self.comment
        data["sets"] = [iss.to_json() for iss in self.sets]
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise SpecError(f"spec {where}: {problem}", "fix the spec (its format is in the README and schema.json)")


def _known(raw: JSONObject, known: frozenset[str], where: str) -> None:
    unknown = raw.keys() - known
    _require(not unknown, where, "" if not unknown else f"unknown field(s) {sorted(unknown)}")


def _integer(value: Any, where: str, minimum: int) -> int:
    if type(value) is int and minimum <= value <= MAX_INDEX:  # the common case, without building messages
        return value
    _require(isinstance(value, int) and not isinstance(value, bool), where, f"{str(value)[:40]!r} is not an integer")
    _require(value >= minimum, where, f"{str(value)[:40]} is below {minimum}")
    _require(value <= MAX_INDEX, where, f"{str(value)[:40]} is above the largest supported, {MAX_INDEX:,}")
    return int(value)


def check_multiplier(value: Any, where: str) -> float:
    """A set's λ multiplier: a finite number ≥ 0."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(number and math.isfinite(value) and value >= 0, where, f"must be a finite number ≥ 0 (got {value!r})")
    return float(value)


def parse_native(raw: JSONObject) -> GroupSpec:
    """Validate the structure of a native spec (not yet against a checkpoint)."""
    _require(raw.get("format") == FORMAT_NAME, "format", f"expected {FORMAT_NAME!r}")
    version = raw.get("version")
    if version != FORMAT_VERSION:
        raise SpecError(f"spec version {version!r} is not supported", f"this isscli reads version {FORMAT_VERSION}")
    _known(raw, SPEC_FIELDS, "top level")
    sets_raw = raw.get("sets", [])
    _require(isinstance(sets_raw, list) and len(sets_raw) > 0, "sets", "must be a non-empty list")
    sets = []
    for i, entry in enumerate(sets_raw):
        where = f"sets[{i}]"
        _require(isinstance(entry, dict), where, "must be an object")
        _known(entry, SET_FIELDS, where)
        name = entry.get("name")
        _require(isinstance(name, str) and name != "", f"{where}.name", "must be a non-empty string")
        components = _integer(entry.get("components"), f"{where}.components", 1)
        multiplier = check_multiplier(entry.get("multiplier", 1.0), f"{where}.multiplier")
        slices_raw = entry.get("slices")
        _require(isinstance(slices_raw, list) and len(slices_raw) > 0, f"{where}.slices", "must be a non-empty list")
        slices = [_parse_slice(piece, f"{where}.slices[{j}]") for j, piece in enumerate(slices_raw)]
        sets.append(IssSet(name, components, slices, multiplier))
    duplicated = sorted(name for name, count in Counter(iss.name for iss in sets).items() if count > 1)
    _require(not duplicated, "sets", f"duplicate set name(s) {duplicated}")
    comment = raw.get("comment", "")
    _require(isinstance(comment, str), "comment", "must be a string")
    return GroupSpec(sets, comment)


def _parse_slice(raw: Any, where: str) -> TensorSlice:
    _require(isinstance(raw, dict), where, "must be an object")
    _known(raw, SLICE_FIELDS, where)
    tensor = raw.get("tensor")
    _require(isinstance(tensor, str) and tensor != "", f"{where}.tensor", "must be a tensor name")
    role = raw.get("role", "receiver")
    _require(role in ROLES, f"{where}.role", "must be producer or receiver")
    penalize = raw.get("penalize", True)
    _require(isinstance(penalize, bool), f"{where}.penalize", "must be true or false")
    blocks = _integer(raw.get("blocks", 1), f"{where}.blocks", 1)
    stride = raw.get("block_stride")
    if stride is not None:
        stride = _integer(stride, f"{where}.block_stride", 1)
    return TensorSlice(
        tensor=tensor,
        dim=_integer(raw.get("dim"), f"{where}.dim", 0),
        offset=_integer(raw.get("offset", 0), f"{where}.offset", 0),
        blocks=blocks,
        block_stride=stride,
        role=role,
        penalize=penalize,
    )


def check_spec(spec: GroupSpec, tensors: dict[str, torch.Tensor]) -> None:
    """Check that every slice fits the checkpoint and that no index belongs to two components.

    Linear in the spec's size: each slice is a few index ranges (one per gate block), and the ranges
    of each tensor dimension are sorted once to find an overlap.
    """
    ranges: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    used: Counter[tuple[str, int]] = Counter()  # indices taken per tensor dimension
    for iss in spec.sets:
        for piece in iss.slices:
            size = _fitting_size(iss, piece, tensors)
            key = (piece.tensor, piece.dim)
            taken = ranges.setdefault(key, [])
            used[key] += piece.blocks * iss.components
            if used[key] > size:
                _overlap(iss.name, piece, None)  # more indices taken than the dimension has: two share one
            stride = piece.stride(iss.components)
            if piece.blocks > 1 and stride < iss.components:
                _overlap(iss.name, piece, piece.offset + stride)  # gate blocks overlap each other
            if stride == iss.components:  # the blocks are contiguous: one range
                taken.append((piece.offset, piece.offset + piece.blocks * iss.components, iss.name))
            else:
                taken.extend((start, start + iss.components, iss.name)
                             for start in range(piece.offset, piece.offset + piece.blocks * stride, stride))
    for key, taken in ranges.items():
        taken.sort()
        for (_, end, _), (start, _, name) in zip(taken, taken[1:]):
            if start < end:
                _overlap(name, TensorSlice(key[0], key[1]), start)


def _fitting_size(iss: IssSet, piece: TensorSlice, tensors: dict[str, torch.Tensor]) -> int:
    """The size of the slice's tensor dimension, which every index of the slice must be below."""
    where = f"set {iss.name!r}"
    if piece.tensor not in tensors:
        raise SpecError(
            f"{where} names tensor {piece.tensor!r}, which is not in the checkpoint",
            "fix the name, or map it with --rename OLD=NEW (see `isscli groups CKPT` for the names)",
        )
    shape = tuple(tensors[piece.tensor].shape)
    if piece.dim >= len(shape):
        raise SpecError(f"{where}: tensor {piece.tensor!r} has no dim {piece.dim} (shape {shape})",
                        "use a dim the tensor has")
    if tensors[piece.tensor].numel() == 0 or not tensors[piece.tensor].is_floating_point():
        problem = "is empty" if tensors[piece.tensor].is_floating_point() else \
            f"is not floating-point ({str(tensors[piece.tensor].dtype).removeprefix('torch.')})"
        raise SpecError(f"{where}: tensor {piece.tensor!r} {problem} (shape {shape})", "a set groups weights")
    last = piece.offset + (piece.blocks - 1) * piece.stride(iss.components) + iss.components - 1
    if last >= shape[piece.dim]:
        raise SpecError(
            f"{where}: index {last} is out of range for {piece.tensor!r} dim {piece.dim} (size {shape[piece.dim]})",
            "check components, offset and block_stride against the tensor's shape",
        )
    return shape[piece.dim]


def _overlap(name: str, piece: TensorSlice, index: int | None) -> None:
    which = f"index {index}" if index is not None else "an index"
    raise SpecError(
        f"set {name!r}: slices overlap on {piece.tensor!r} dim {piece.dim} ({which} belongs to two components)",
        "each row/column may belong to one component of one set only",
    )


def load_spec_data(path: Path) -> Any:
    """Read a spec file; errors say whether it is missing or not JSON."""
    hint = "check the path, or derive one with `isscli groups CKPT -o spec.json`"
    return read_json(path, "spec", SpecError, missing_hint=hint)
