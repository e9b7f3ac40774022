"""A tensor data file's arrays, read and sorted by split and name, before any of them is checked.

:mod:`isscli.data.tensors` validates what this module reads; here only the file itself can be wrong (missing,
unreadable, not numbers) or its array names (unknown, twice, the two forms mixed, x or y missing).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from isscli.io.errors import IsscliError

TENSOR_SUFFIXES = (".safetensors", ".npz")
NAMES = ("x", "y", "lengths")
SPLIT_KEY = re.compile(r"^(train|valid|test)[._/](x|y|lengths)$")
FORMS_HINT = "name the arrays x, y, lengths, or train.x, train.y, valid.x, valid.y (test.x, test.y optional)"


def read_arrays(path: Path) -> dict[str, torch.Tensor]:
    """Every array of the file as a tensor; a missing, unreadable or corrupt file is one line, not a traceback."""
    if path.suffix.lower() not in TENSOR_SUFFIXES:
        raise IsscliError(f"tensor data {path} is neither .safetensors nor .npz",
                          "save the arrays with safetensors.torch.save_file or numpy.savez")
    if not path.is_file():
        raise IsscliError(f"tensor data {path} not found" if not path.exists() else f"tensor data {path} is a folder",
                          "give the path of a .safetensors or .npz file")
    try:
        if path.suffix.lower() == ".safetensors":
            return load_file(path)
        return read_npz(path)
    except (SafetensorError, OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise IsscliError(f"cannot read tensor data {path} ({reason})",
                          f"check that it is an intact {path.suffix} file of numeric arrays") from None


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """An ``.npz`` archive's arrays (no pickles: a data file must not run code), in native byte order for torch."""
    archive = np.load(path, allow_pickle=False)
    if not hasattr(archive, "files"):
        raise IsscliError(f"{path} holds a single .npy array, not named arrays",
                          "save it with numpy.savez(path, x=…, y=…)")
    with archive:
        arrays = {key: archive[key] for key in archive.files}
    tensors = {}
    for key, array in arrays.items():
        try:
            tensors[key] = torch.from_numpy(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="))))
        except TypeError:
            raise IsscliError(f"{path}: array {key} has numpy dtype {array.dtype}, not numbers",
                              "store x, y and lengths as float or integer arrays") from None
    return tensors


def arrange(path: Path, arrays: dict[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """The arrays by split (``"all"`` for the x, y form) and name, with each one's key in the file (for messages)."""
    found = ", ".join(sorted(arrays)) or "none"
    groups: dict[str, dict[str, torch.Tensor]] = {}
    keys: dict[str, str] = {}
    unknown = []
    for key, tensor in arrays.items():
        match = SPLIT_KEY.match(key)
        split, name = match.groups() if match else ("all", key)
        if name not in NAMES:
            unknown.append(key)
            continue
        if name in groups.get(split, {}):
            raise IsscliError(f"{path} holds {split} {name} twice ({keys[f'{split}.{name}']} and {key})",
                              "keep one of them")
        groups.setdefault(split, {})[name] = tensor
        keys[f"{split}.{name}"] = key
    if unknown:
        raise IsscliError(f"{path} holds array(s) isscli does not read: {', '.join(sorted(unknown))} (found {found})",
                          f"{FORMS_HINT}; remove the others")
    if "all" in groups and len(groups) > 1:
        raise IsscliError(f"{path} mixes whole-data arrays (x, y) with per-split ones (found {found})",
                          "keep one form: x, y[, lengths] or train.x, train.y, valid.x, …")
    required = ["all"] if "all" in groups else ["train", "valid", *(["test"] if "test" in groups else [])]
    for split in required:
        missing = [name for name in ("x", "y") if name not in groups.get(split, {})]
        if missing:
            names = [name if split == "all" else f"{split}.{name}" for name in missing]
            raise IsscliError(f"{path} has no {', '.join(names)} (found {found})", FORMS_HINT)
    return groups, keys
