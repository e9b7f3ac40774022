"""Read the group specs of the paper's authors (their TensorFlow code) as they are.

Their file is ``{"comments": …, "groups": [[entry, …], …]}``, one inner list per ISS set,
each entry ``{"var_name", "multi", "axis", "start", "end"}``. ``axis`` is the dimension the
group vector runs *along*; component k is index ``start + k`` of the *other* dimension, so on
a TensorFlow kernel ``[in + H, 4H]`` ``axis: 0`` takes column ``start + k`` and ``axis: 1``
row ``start + k``. In the native format that is ``dim = 1 - axis``. Every entry of a set must
span the same ``end - start``, which becomes the set's component count.

Their files do not say which entries consume h_k, so every converted slice is a
*receiver*: compaction then removes a component only when its whole group is zero, which
is always exact. Nor do they list biases (not part of the group vector); given the
checkpoint, :func:`attach_companion_biases` adds each kernel's bias so that compaction keeps
the shapes consistent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeGuard

import torch

from isscli.io.errors import SpecError
from isscli.io.jsonfile import JSONObject, read_json_object
from isscli.iss.spec.schema import MAX_INDEX, GroupSpec, IssSet, TensorSlice, check_multiplier

ENTRY_FIELDS = ("var_name", "axis", "start", "end")
KERNEL_TO_BIAS = {"kernel": "bias", "Matrix": "Bias", "weights": "biases", "W": "b"}


def is_authors_format(raw: object) -> TypeGuard[JSONObject]:
    return isinstance(raw, dict) and "groups" in raw and "format" not in raw


def parse_renames(pairs: list[str]) -> dict[str, str]:
    """``["OLD=NEW", …]`` → mapping; malformed pairs are errors."""
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise SpecError(f"--rename {pair!r} is not OLD=NEW", "write e.g. --rename Model/RNN/kernel=rnn.kernel_l0")
        mapping[old] = new
    return mapping


def load_rename_file(path: Path) -> dict[str, str]:
    """A JSON object mapping the authors' variable names to checkpoint tensor names."""
    raw = read_json_object(path, "mapping file", '{"old/name": "new.name"}', SpecError)
    if not all(isinstance(value, str) for value in raw.values()):
        raise SpecError(f"mapping file {path} maps a name to a non-string", 'write {"old/name": "new.name"}')
    return raw


def _tensor_name(var_name: str, renames: dict[str, str]) -> str:
    if var_name in renames:
        return renames[var_name]
    stripped = var_name[:-2] if var_name.endswith(":0") else var_name
    return renames.get(stripped, stripped)


def parse_authors(raw: JSONObject, renames: dict[str, str] | None = None) -> GroupSpec:
    """Convert the authors' structure to a :class:`GroupSpec`."""
    renames = renames or {}
    groups = raw.get("groups")
    if not isinstance(groups, list) or not groups:
        raise SpecError("authors' spec: 'groups' must be a non-empty list of sets", "check the file")
    sets = []
    for i, entries in enumerate(groups):
        where = f"authors' spec groups[{i}]"
        if not isinstance(entries, list) or not entries:
            raise SpecError(f"{where} must be a non-empty list of entries", "check the file")
        spans, multipliers, slices = set(), set(), []
        for j, entry in enumerate(entries):
            if not isinstance(entry, dict) or any(f not in entry for f in ENTRY_FIELDS):
                raise SpecError(f"{where}[{j}] needs the fields {', '.join(ENTRY_FIELDS)}", "check the file")
            axis, start, end, name = entry["axis"], entry["start"], entry["end"], entry["var_name"]
            if not isinstance(name, str) or not name:
                raise SpecError(f"{where}[{j}]: var_name must be a tensor name (a string)", "check the file")
            integers = all(type(v) is int for v in (axis, start, end))  # not bool, not float
            if not integers or axis not in (0, 1):
                raise SpecError(f"{where}[{j}]: axis must be 0 or 1 and start/end integers", "check the file")
            if end <= start or start < 0 or end > MAX_INDEX:
                raise SpecError(f"{where}[{j}]: end ({end}) must be greater than start ({start}) ≥ 0, and at most "
                                f"{MAX_INDEX:,}", "check the file")
            spans.add(end - start)
            multipliers.add(check_multiplier(entry.get("multi", 1.0), f"{where}[{j}].multi"))
            slices.append(TensorSlice(tensor=_tensor_name(name, renames), dim=1 - axis, offset=start))
        if len(spans) > 1:
            raise SpecError(
                f"{where}: entries span unequal lengths {sorted(spans)} (end - start)",
                "every entry of a set must cover the same number of components",
            )
        if len(multipliers) > 1:
            raise SpecError(
                f"{where}: entries have different 'multi' values {sorted(multipliers)}",
                "give every entry of a set the same multi",
            )
        sets.append(IssSet(f"group{i}", spans.pop(), slices, multipliers.pop()))
    comment = raw.get("comments", "")
    return GroupSpec(sets, comment if isinstance(comment, str) else str(comment), origin="authors")


def _bias_of(kernel: str) -> str | None:
    head, sep, last = kernel.rpartition("/")
    return f"{head}{sep}{KERNEL_TO_BIAS[last]}" if last in KERNEL_TO_BIAS else None


def attach_companion_biases(spec: GroupSpec, tensors: dict[str, torch.Tensor]) -> GroupSpec:
    """Add the bias of every TensorFlow kernel whose output columns a set owns.

    A TF kernel ``…/kernel`` (``…/Linear/Matrix`` in older code) is ``[in, out]`` with its bias
    ``…/bias`` (``…/Linear/Bias``) of length ``out``. When a slice takes output columns of the
    kernel (its last dimension), the same entries of the bias belong to the component too:
    as producers outside the group vector.
    """
    for iss in spec.sets:
        present = {(p.tensor, p.offset) for p in iss.slices}
        extra = []
        for piece in iss.slices:
            kernel = tensors.get(piece.tensor)
            bias = _bias_of(piece.tensor)
            if kernel is None or bias not in tensors or piece.dim != kernel.dim() - 1 or kernel.dim() < 2:
                continue
            if (
                tensors[bias].dim() != 1
                or tensors[bias].shape[0] != kernel.shape[-1]
                or (bias, piece.offset) in present
            ):
                continue
            extra.append(
                TensorSlice(
                    bias,
                    dim=0,
                    offset=piece.offset,
                    blocks=piece.blocks,
                    block_stride=piece.block_stride,
                    role="producer",
                    penalize=False,
                )
            )
            present.add((bias, piece.offset))
        iss.slices = iss.slices + extra
    return spec
