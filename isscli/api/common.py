"""What every API call shares: where a checkpoint, a spec or a model config comes from, and the outputs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from isscli.api.validation import Checked
from isscli.io.atomic import check_output_path, output_lock
from isscli.io.checkpoint import Checkpoint, file_sha256, load_checkpoint, save_checkpoint
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import read_json_object
from isscli.iss.spec import GroupSpec, check_spec, derive_spec, load_spec
from isscli.iss.spec.authors import attach_companion_biases
from isscli.models.presets import PRESETS, preset_config

PathLike = Union[str, os.PathLike]
#: A checkpoint: a path to a safetensors file, or one already loaded.
CheckpointSource = Union[PathLike, Checkpoint]
#: A spec: a path to a spec file (native or authors' JSON), a parsed spec, or None to derive one.
SpecSource = Union[PathLike, GroupSpec, None]
#: Model config fields: a mapping, a preset name or a JSON file (None: the checkpoint's own config).
ConfigSource = Union[Mapping[str, Any], PathLike, None]


@dataclass(kw_only=True)
class OutputRequest(Checked):
    """A request that reads one checkpoint and may write one."""

    checkpoint: CheckpointSource
    output: PathLike | None = None  # None: nothing is written, the result holds the checkpoint
    force: bool = False  # replace an existing output (never an input)


def as_checkpoint(source: CheckpointSource) -> Checkpoint:
    return source if isinstance(source, Checkpoint) else load_checkpoint(Path(source))


def input_paths(*sources: CheckpointSource | None) -> tuple[Path, ...]:
    """The files behind some inputs, which no output may overwrite."""
    paths = []
    for source in sources:
        if isinstance(source, Checkpoint):
            if source.path is not None:
                paths.append(source.path)
        elif source is not None:
            paths.append(Path(source))
    return tuple(paths)


#: Request fields that name what a call reads: no output may be one of them.
INPUT_FIELDS = ("checkpoint", "spec", "config", "against", "baseline", "data", "vocab", "settings_file")


def request_inputs(request: Any) -> tuple[Path, ...]:
    """Every file (or folder) a request reads: its checkpoints, spec, config file, corpus, vocabulary, settings."""
    sources = []
    for name in INPUT_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, (str, os.PathLike)) and name == "config" and not Path(value).exists():
            continue  # a preset name
        if isinstance(value, (str, os.PathLike, Checkpoint)):
            sources.append(value)
    return input_paths(*sources)


def resolve_spec(checkpoint: Checkpoint, spec: SpecSource, renames: Mapping[str, str] | None = None) -> GroupSpec:
    """The spec given (renamed, companion biases attached, then checked), or the one derived from the checkpoint."""
    if spec is None:
        resolved = derive_spec(checkpoint.tensors)
    elif isinstance(spec, GroupSpec):
        resolved = spec
    else:
        resolved = load_spec(Path(spec), dict(renames or {}))
        if resolved.origin == "authors":
            attach_companion_biases(resolved, checkpoint.tensors)
    check_spec(resolved, checkpoint.tensors)
    return resolved


def model_overrides(config: ConfigSource) -> dict[str, Any] | None:
    """Config fields from a mapping, a preset name or a JSON file (the ``config`` parameter of every call)."""
    if config is None:
        return None
    if isinstance(config, Mapping):
        return dict(config)
    if str(config) in PRESETS:
        return preset_config(str(config))
    path = Path(config)
    if not path.is_file():
        raise IsscliError(f"`config` {config} is neither a preset nor a file", f"presets: {', '.join(PRESETS)}")
    return read_json_object(path, "config", '{"family": "lm", "dropout": 0.5}')


def output_path(output: PathLike | None, source: CheckpointSource, tag: str) -> Path:
    """``output`` as given, else ``model.<tag>.safetensors`` beside the input file."""
    if output is not None:
        return Path(output)
    inputs = input_paths(source)
    if not inputs:
        raise IsscliError("an in-memory checkpoint has no file to name the output after", "give `output`")
    return inputs[0].with_name(f"{inputs[0].stem}.{tag}.safetensors")


def checked_output(output: PathLike | None, inputs: tuple[Path, ...], force: bool) -> Path | None:
    """Refuse, before any work, an output that would overwrite an input or (without ``force``) a file."""
    if output is None:
        return None
    check_output_path(Path(output), inputs, overwrite=force)
    return Path(output)


@contextmanager
def run_lock(request: Any, main: bool = True) -> Iterator[None]:
    """Hold a training run's OUT (and so its log and resume file) while it runs: a second run of the same OUT is
    refused meanwhile. ``main``: whether this process writes the files (rank 0 of a distributed run)."""
    output = request.output
    if output is None and getattr(request, "checkpoint", None) is not None:
        output = output_path(None, request.checkpoint, "iss")
    if output is None or not main:
        yield
        return
    with output_lock(output):
        yield


def write_checkpoint(checkpoint: Checkpoint, output: Path, inputs: tuple[Path, ...], force: bool) -> None:
    """Write a result checkpoint atomically (never over an input); its path and sha256 are then the file's."""
    save_checkpoint(output, checkpoint.tensors, checkpoint.config, checkpoint.provenance, inputs=inputs,
                    overwrite=force, masks=checkpoint.masks, mask_info=checkpoint.mask_info,
                    vocabulary=checkpoint.vocabulary)
    checkpoint.path, checkpoint.sha256 = output, file_sha256(output)
