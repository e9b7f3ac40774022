"""Checkpoints: ``load``, ``save``, a fresh model (``init``) and a ``torch.save`` import (``import_pt``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from isscli.api.common import (
    ConfigSource,
    PathLike,
    as_checkpoint,
    input_paths,
    model_overrides,
    write_checkpoint,
)
from isscli.api.validation import checked_arguments
from isscli.io.errors import CheckpointError, IsscliError
from isscli.io.hashing import file_sha256
from isscli.io.jsonfile import parse_json
from isscli.io.parsing import MAX_SEED, check_bounds
from isscli.io.provenance import operation_record
from isscli.models import build_model, model_tensors
from isscli.models.checkpoint import STORED_DTYPES, Checkpoint


@checked_arguments
def load(path: PathLike) -> Checkpoint:
    """Read a safetensors checkpoint: tensors, config, provenance and weight masks.

    Example::

        checkpoint = isscli.load("dense.safetensors")
        checkpoint.config.hidden_sizes, checkpoint.num_parameters()
    """
    return as_checkpoint(path)


@checked_arguments
def save(checkpoint: Checkpoint, path: PathLike, force: bool = False) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; an existing file only with ``force``, the file it was read
    from never.

    Example::

        isscli.save(isscli.Checkpoint(model_tensors, config), "mine.safetensors")
    """
    output = Path(path)
    write_checkpoint(checkpoint, output, input_paths(checkpoint), force)
    return output


@checked_arguments
def init(config: ConfigSource, seed: int = 0, changes: Mapping[str, Any] | Sequence[str] | None = None) -> Checkpoint:
    """A freshly initialised model (a preset name, a config file or mapping, then ``changes``: a mapping, or
    ``KEY=JSON`` strings as ``isscli init --set`` gives them), in memory. This is ``isscli init`` (+ :func:`save`).

    Example::

        isscli.save(isscli.init("large"), "large.safetensors")
    """
    check_bounds(seed, "seed", 0, MAX_SEED)
    changes = config_changes(changes) if changes is not None and not isinstance(changes, Mapping) else changes
    raw = {**(model_overrides(config) or {}), **(changes or {})}
    torch.manual_seed(seed)
    model = build_model(raw)
    parameters = {"config": config if isinstance(config, (str, Mapping)) else str(config), "changes": changes,
                  "seed": seed}
    return Checkpoint(model_tensors(model), model.config, operation_record("init", parameters))


def config_changes(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=JSON`` strings as config fields (a value that is not JSON is the text itself)."""
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise IsscliError(f"`changes` {item!r} is not KEY=VALUE", "write e.g. `changes` dropout=0.5")
        try:
            changes[key] = parse_json(value)
        except ValueError:  # not JSON (or nested absurdly deep): the text itself
            changes[key] = value
    return changes


@checked_arguments
def import_pt(path: PathLike) -> Checkpoint:
    """A ``torch.save``\\ d ``state_dict`` (read with ``weights_only``: nothing is unpickled) as a checkpoint. This is
    ``isscli import-pt`` (+ :func:`save`).

    Tensors that are the same tensor (tied weights: same storage, offset, shape and strides) are
    kept once; everything else — a transpose or another view of shared storage included — is kept.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source} not found", "check the path")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad pickles
        raise CheckpointError(
            f"{source} cannot be read by torch.load ({type(error).__name__})",
            "give a file written by torch.save(model.state_dict())",
        ) from None
    unique: dict[str, torch.Tensor] = {}
    seen: set[tuple[Any, ...]] = set()
    for name, tensor in _state_dict_of(loaded).items():
        check_storable(name, tensor, source)
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
               tensor.dtype)
        if key not in seen:
            seen.add(key)
            unique[name] = tensor.contiguous()
    provenance = operation_record("import-pt", {"source": str(source)})
    return Checkpoint(unique, None, provenance, source, file_sha256(source))


def check_storable(name: str, tensor: torch.Tensor, source: Path) -> None:
    """A tensor isscli can store and read back: dense, with data (not on the meta device), of a plain dtype."""
    what = None
    if tensor.layout != torch.strided:
        what = f"is sparse ({str(tensor.layout).removeprefix('torch.')})"
    elif tensor.is_meta:
        what = "has no data (a meta tensor)"
    elif tensor.dtype not in STORED_DTYPES:
        what = f"has dtype {str(tensor.dtype).removeprefix('torch.')}"
    if what is not None:
        raise CheckpointError(f"{source}: tensor {name!r} {what}, which isscli does not store",
                              "save dense tensors with data: state_dict() of a model on the CPU, e.g. "
                              "{k: v.to_dense().float() for k, v in state.items()}")


def _state_dict_of(loaded: Any) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                return _state_dict_of(loaded[key])
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        odd = next((key for key in loaded if not isinstance(key, str)), None)
        if odd is None:
            return loaded
        raise CheckpointError(f"the state_dict's keys must be tensor names (strings), not {type(odd).__name__} "
                              f"({str(odd)[:40]})", "save the model's state_dict() with torch.save")
    raise CheckpointError("the file holds no state_dict of tensors", "save the model's state_dict() with torch.save")
