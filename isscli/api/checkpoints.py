"""Checkpoints: ``load``, ``save``, a fresh model, a ``torch.save`` import, and the ISS group specs of one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isscli.api.common import (
    CheckpointSource,
    ConfigSource,
    PathLike,
    SpecSource,
    as_checkpoint,
    input_paths,
    model_overrides,
    resolve_spec,
    write_checkpoint,
)
from isscli.api.validation import checked_arguments
from isscli.io.atomic import atomic_write_text, check_output_path
from isscli.io.checkpoint import STORED_DTYPES, Checkpoint, file_sha256
from isscli.io.errors import CheckpointError, IsscliError
from isscli.io.parsing import MAX_SEED, check_bounds
from isscli.io.provenance import operation_record
from isscli.iss.spec import GroupSpec, load_spec
from isscli.iss.spec import check_spec as check_spec_fits
from isscli.iss.spec.authors import attach_companion_biases
from isscli.models import build_model, model_tensors


@checked_arguments
def load(path: PathLike) -> Checkpoint:
    """Read a safetensors checkpoint: tensors, config, provenance and weight masks.

    Example:
        >>> checkpoint = isscli.load("dense.safetensors")
        >>> checkpoint.config["hidden_sizes"], checkpoint.num_parameters()
    """
    return as_checkpoint(path)


@checked_arguments
def save(checkpoint: Checkpoint, path: PathLike, force: bool = False) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; an existing file only with ``force``, the file it was read
    from never.

    Example:
        >>> isscli.save(isscli.Checkpoint(model_tensors, config), "mine.safetensors")
    """
    output = Path(path)
    write_checkpoint(checkpoint, output, input_paths(checkpoint), force)
    return output


@checked_arguments
def derive_spec(checkpoint: CheckpointSource | nn.Module | Mapping[str, torch.Tensor],
                example_input: Any = None) -> GroupSpec:
    """The ISS groups of a model's recurrent layers.

    Args:
        checkpoint: a checkpoint (path or :class:`Checkpoint`) or a ``state_dict``: the groups are read off its
            tensor names and shapes; or a live ``nn.Module``: the groups are found by running its forward on
            ``example_input`` (:func:`isscli.derive_module_spec`), which names alone cannot replace.
        example_input: what the module takes (a tensor, a tuple of arguments or a dict); only with a module.

    Returns:
        The :class:`~isscli.iss.spec.GroupSpec`, its tensors named as in the checkpoint or ``model.named_parameters()``.

    Example:
        >>> [(s.name, s.components) for s in isscli.derive_spec("dense.safetensors").sets]
        >>> isscli.derive_spec(model, torch.randn(4, 20, 8))
    """
    if isinstance(checkpoint, nn.Module):
        if example_input is None:
            raise IsscliError("deriving the groups of a live module needs `example_input`: its receivers are found by "
                              "running its forward", "pass example_input=(a small batch the model takes)")
        from isscli.live.trace import derive_module_spec

        return derive_module_spec(checkpoint, example_input)
    if example_input is not None:
        raise IsscliError("`example_input` is only for a live nn.Module", "drop it, or pass the module itself")
    if isinstance(checkpoint, Mapping):
        tensors = dict(checkpoint)
        if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
            raise IsscliError("a state_dict must map names to tensors", "pass model.state_dict()")
        return resolve_spec(Checkpoint({name: t.detach() for name, t in tensors.items()}, {}), None)
    return resolve_spec(as_checkpoint(checkpoint), None)


@checked_arguments
def check_spec(spec: SpecSource, checkpoint: CheckpointSource, renames: Mapping[str, str] | None = None) -> GroupSpec:
    """Read a spec file (native or the authors' format; ``renames`` maps its tensor names) and check that it fits
    the checkpoint: names, ranges, overlaps. Returns the spec; raises :class:`isscli.SpecError` on the first problem.

    Example:
        >>> isscli.check_spec("group_specs/ptb-small.json", "dense.safetensors")
    """
    return resolve_spec(as_checkpoint(checkpoint), spec, renames)


@checked_arguments
def convert_spec(source: PathLike, output: PathLike | None = None, renames: Mapping[str, str] | None = None,
                 checkpoint: CheckpointSource | None = None, force: bool = False) -> GroupSpec:
    """A spec in the native format from any spec file (the authors' TensorFlow-era JSON included; ``renames`` maps
    its tensor names), checked against ``checkpoint`` when one is given, written to ``output`` (atomically; an
    existing file only with ``force``) when one is given. This is ``isscli groups convert``.

    Example:
        >>> isscli.convert_spec("authors.json", "native.json", checkpoint="model.safetensors").sets[0].name
    """
    spec = load_spec(Path(source), dict(renames or {}))
    if checkpoint is not None:
        tensors = as_checkpoint(checkpoint).tensors
        if spec.origin == "authors":  # their biases are separate tensors: attached to the sets they belong to
            attach_companion_biases(spec, tensors)
        check_spec_fits(spec, tensors)
    if output is not None:
        check_output_path(Path(output), input_paths(Path(source), checkpoint), overwrite=force)
        atomic_write_text(Path(output), spec.dumps())
    return spec


@checked_arguments
def new_model(config: ConfigSource, seed: int = 0, changes: Mapping[str, Any] | None = None) -> Checkpoint:
    """A freshly initialised model (a preset name, a config file or mapping, then ``changes``), in memory.

    Example:
        >>> isscli.save(isscli.new_model("large"), "large.safetensors")
    """
    check_bounds(seed, "seed", 0, MAX_SEED)
    raw = {**(model_overrides(config) or {}), **(changes or {})}
    torch.manual_seed(seed)
    model = build_model(raw)
    parameters = {"config": config if isinstance(config, (str, Mapping)) else str(config), "changes": changes,
                  "seed": seed}
    return Checkpoint(model_tensors(model), model.config.to_dict(), operation_record("init", parameters))


@checked_arguments
def import_state_dict(path: PathLike) -> Checkpoint:
    """A ``torch.save``\\ d ``state_dict`` (read with ``weights_only``: nothing is unpickled) as a checkpoint.

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
