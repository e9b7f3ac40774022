"""Safetensors checkpoints with the architecture and provenance in the header.

Following safetensors' own convention, everything that is not a tensor goes into the
header's string-to-string ``__metadata__``: ``isscli.config`` holds the model config and
``isscli.provenance`` how the file was made (the operation and its parameters, the tool
version, the parent's sha256; :mod:`isscli.io.provenance`), both as JSON. Unstructured-sparse
checkpoints (SET, magnitude pruning) also hold one boolean mask per masked weight matrix, as
the tensor ``mask.<tensor name>``, with ``isscli.masks`` in the header saying how they were
made; :func:`load_checkpoint` keeps them apart from the model's tensors
(:attr:`Checkpoint.masks`), so every command sees the model alone. Files without that
metadata (a plain ``state_dict`` written by another script) load just as well; commands that
need a runnable model then ask for ``--arch``/``--config``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from isscli.io.atomic import atomic_write, check_output_path
from isscli.io.errors import CheckpointError, IsscliError
from isscli.io.hashing import file_sha256
from isscli.io.jsonfile import JSONObject, parse_json
from isscli.io.words import MAX_VOCABULARY, is_one_word
from isscli.models.config import ModelConfig

CONFIG_KEY = "isscli.config"
PROVENANCE_KEY = "isscli.provenance"
MASKS_KEY = "isscli.masks"
VOCABULARY_KEY = "isscli.vocabulary"
#: Tensor-name prefix of the weight masks; such tensors are masks only when the header has ``isscli.masks``.
MASK_PREFIX = "mask."
#: The tensor types a checkpoint may hold (others, e.g. float8 or complex, are refused when read).
STORED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool)


@dataclass
class Checkpoint:
    """Tensors by name, plus the optional config and provenance from the header. A ``config`` given as a mapping (as
    0.2 took it) is read into a :class:`~isscli.models.config.ModelConfig`, checked field by field."""

    tensors: dict[str, torch.Tensor]
    config: ModelConfig | None = None
    provenance: JSONObject | None = None  # the header's record, checked where read (:mod:`isscli.io.provenance`)
    path: Path | None = None
    sha256: str | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # boolean, by tensor name; True = kept
    mask_info: JSONObject | None = None  # how the masks were made (method, density, …)
    vocabulary: list[str] | None = None  # word of each embedding row, in id order (None: not recorded)

    def __post_init__(self) -> None:
        if isinstance(self.config, Mapping):
            self.config = ModelConfig.from_dict(self.config)

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


#: How the legacy (pre-zip) ``torch.save`` format starts: protocol 2, then its magic number as a pickled long.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


def is_torch_save(path: Path) -> bool:
    """Whether a file is ``torch.save`` output: a zip archive holding a ``data.pkl``, or the legacy format, which
    starts with its magic number (random bytes starting with 0x80 are neither)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return any(name.endswith("data.pkl") for name in archive.namelist())
        with open(path, "rb") as stream:
            return stream.read(len(TORCH_LEGACY_MAGIC)) == TORCH_LEGACY_MAGIC
    except (OSError, zipfile.BadZipFile):
        return False


def _describe_unreadable(path: Path, error: Exception) -> CheckpointError:
    if is_torch_save(path):
        return CheckpointError(
            f"{path} is a torch.save pickle, not a safetensors file",
            f"convert it with `isscli import-pt {path} -o model.safetensors`",
        )
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(
        f"{path} is not a readable safetensors file ({reason})",
        "the file is corrupt or truncated: re-create or re-download it",
    )


def _parse_json_metadata(path: Path, metadata: dict[str, str], key: str) -> JSONObject | None:
    if key not in metadata:
        return None
    try:
        value = parse_json(metadata[key])
    except ValueError as error:
        raise CheckpointError(
            f"{path}: header entry {key!r} is not valid JSON ({getattr(error, 'msg', error)})",
            "re-create the checkpoint, or pass --config to supply the architecture",
        ) from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: header entry {key!r} is not a JSON object", "re-create the checkpoint")
    return value


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read a safetensors checkpoint; every failure becomes a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found", "check the path")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder", "give the path of a .safetensors file")
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as reader:
            metadata = dict(reader.metadata() or {})
            for name in reader.keys():
                tensors[name] = reader.get_tensor(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _describe_unreadable(path, error) from None
    if not tensors:
        raise CheckpointError(f"checkpoint {path} holds no tensors", "check that it is a model checkpoint")
    odd = next((name for name, tensor in tensors.items() if tensor.dtype not in STORED_DTYPES), None)
    if odd is not None:
        raise CheckpointError(f"{path}: tensor {odd!r} has dtype {str(tensors[odd].dtype).removeprefix('torch.')}, "
                              "which isscli does not read", "convert it to float32 (or float16, bfloat16, float64)")
    config = _model_config(path, _parse_json_metadata(path, metadata, CONFIG_KEY))
    provenance = _parse_json_metadata(path, metadata, PROVENANCE_KEY)
    mask_info = _parse_json_metadata(path, metadata, MASKS_KEY)
    masks = _split_masks(path, tensors) if mask_info is not None else {}
    vocabulary = _parse_vocabulary(path, metadata)
    return Checkpoint(tensors, config, provenance, path, file_sha256(path), masks, mask_info, vocabulary)


def _model_config(path: Path, raw: JSONObject | None) -> ModelConfig | None:
    """The header's config, checked as every config is: a wrong one is refused where the file is read."""
    if raw is None:
        return None
    try:
        return ModelConfig.from_dict(raw)
    except IsscliError as error:
        raise CheckpointError(f"{path}: header entry {CONFIG_KEY!r}: {error.message}",
                              "re-create the checkpoint, or fix its config") from None


def _parse_vocabulary(path: Path, metadata: dict[str, str]) -> list[str] | None:
    if VOCABULARY_KEY not in metadata:
        return None
    try:
        words = parse_json(metadata[VOCABULARY_KEY])
    except ValueError as error:
        raise CheckpointError(f"{path}: header entry {VOCABULARY_KEY!r} is not valid JSON "
                              f"({getattr(error, 'msg', error)})",
                              "re-create the checkpoint") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or len(set(words)) != len(words):
        raise CheckpointError(f"{path}: header entry {VOCABULARY_KEY!r} is not a list of distinct words",
                              "re-create the checkpoint")
    bad = next((i for i, word in enumerate(words) if not is_one_word(word)), None)
    if bad is not None or len(words) > MAX_VOCABULARY:  # a word no corpus can hold, or more than any model has
        what = f"its word of id {bad}, {words[bad][:40]!r}, is not one word" if bad is not None else \
            f"it lists {len(words):,} words, more than {MAX_VOCABULARY:,}"
        raise CheckpointError(f"{path}: header entry {VOCABULARY_KEY!r}: {what}", "re-create the checkpoint")
    return words


def _split_masks(path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move the ``mask.<name>`` tensors out of ``tensors``; each must match a tensor's shape."""
    names = [name for name in tensors if name.startswith(MASK_PREFIX)]
    masks = {name.removeprefix(MASK_PREFIX): tensors.pop(name) for name in names}
    for name, mask in masks.items():
        if name not in tensors or mask.shape != tensors[name].shape or mask.dtype != torch.bool:
            raise CheckpointError(
                f"{path}: mask {MASK_PREFIX}{name} does not fit a tensor of the checkpoint",
                "re-create the checkpoint (masks are boolean tensors shaped like the weights they mask)",
            )
    return masks


def save_checkpoint(
    path: Path | str,
    tensors: dict[str, torch.Tensor],
    config: ModelConfig | Mapping[str, Any] | None = None,
    provenance: JSONObject | None = None,
    inputs: tuple[Path, ...] = (),
    overwrite: bool = False,
    masks: dict[str, torch.Tensor] | None = None,
    mask_info: JSONObject | None = None,
    vocabulary: list[str] | None = None,
) -> Path:
    """Write ``tensors`` (and boolean ``masks``, as ``mask.<name>``; the ``vocabulary`` in the header) atomically;
    ``inputs`` are never overwritten."""
    path = Path(path)
    check_output_path(path, inputs, overwrite)
    metadata = {"format": "pt"}
    if config is not None:
        raw = config.to_dict() if isinstance(config, ModelConfig) else dict(config)  # a mapping as it is given
        metadata[CONFIG_KEY] = json.dumps(raw, sort_keys=True)
    if provenance is not None:
        metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True)
    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    if masks:
        metadata[MASKS_KEY] = json.dumps(mask_info or {}, sort_keys=True)
        contiguous.update({MASK_PREFIX + name: mask.detach().to(torch.bool).contiguous().cpu()
                           for name, mask in masks.items()})
    if vocabulary is not None:
        metadata[VOCABULARY_KEY] = json.dumps(list(vocabulary), ensure_ascii=False)
    atomic_write(path, lambda temp: save_file(contiguous, str(temp), metadata=metadata))
    return path
