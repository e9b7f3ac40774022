"""What every API call shares: where a checkpoint, a spec or a model config comes from, and the outputs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

from isscli.api.validation import Checked
from isscli.io.atomic import check_output_path, output_lock
from isscli.io.errors import IsscliError
from isscli.io.hashing import file_sha256
from isscli.io.jsonfile import read_json_object
from isscli.iss.spec import GroupSpec, check_spec, derive_spec, load_spec
from isscli.iss.spec.authors import attach_companion_biases, load_rename_file, parse_renames
from isscli.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from isscli.models.presets import PRESETS, preset_config

PathLike = Union[str, os.PathLike[str]]
#: A checkpoint: a path to a safetensors file, or one already loaded.
CheckpointSource = Union[PathLike, Checkpoint]
#: A spec: a path to a spec file (native or authors' JSON), a parsed spec, or None to derive one.
SpecSource = Union[PathLike, GroupSpec, None]
#: Model config fields: a mapping, a preset name or a JSON file (None: the checkpoint's own config).
ConfigSource = Union[Mapping[str, Any], PathLike, None]


@dataclass(kw_only=True)
class OutputRequest(Checked):
    """A request that reads one checkpoint and may write one."""

    #: The command line writes ``CKPT.<output_tag>.safetensors`` beside CKPT when no ``output`` is given
    #: (:func:`default_output`); "" for a request whose output has no default.
    output_tag: ClassVar[str] = ""

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
INPUT_FIELDS = ("checkpoint", "source", "spec", "config", "against", "baseline", "data", "vocab", "settings_file")


def request_inputs(request: Any) -> tuple[Path, ...]:
    """Every file (or folder) a request reads: its checkpoints, spec, config file, corpus, vocabulary, settings."""
    return input_files(**{name: getattr(request, name, None) for name in INPUT_FIELDS})


def input_files(**sources: object) -> tuple[Path, ...]:
    """The files (or folders) behind a call's inputs, by field name (:data:`INPUT_FIELDS`): paths and loaded
    checkpoints; a ``config`` that names a preset reads no file (unless a file of that name exists)."""
    found: list[CheckpointSource] = []
    for name, value in sources.items():
        if name == "config" and isinstance(value, (str, os.PathLike)) and str(value) in PRESETS \
                and not Path(value).exists():
            continue
        if isinstance(value, (str, os.PathLike, Checkpoint)):
            found.append(value)
    return input_paths(*found)


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


def read_renames(pairs: Sequence[str] | None = None, rename_file: PathLike | None = None) -> dict[str, str]:
    """Spec tensor renames: ``OLD=NEW`` pairs (the command line's ``--rename``) over a JSON file's mapping
    (``--rename-file``)."""
    mapping = load_rename_file(Path(rename_file)) if rename_file is not None else {}
    mapping.update(parse_renames(list(pairs or ())))
    return mapping


def default_output(request: Any) -> Path | None:
    """Where a request writes when the command line runs it: its ``output``, else ``CKPT.<tag>.safetensors`` beside
    its checkpoint (the request class's ``output_tag``: ``pruned``, ``compact``, ``sparse``, ``iss``), else None."""
    tag = getattr(type(request), "output_tag", "")
    if request.output is not None or not tag:
        return None if request.output is None else Path(request.output)
    return output_path(None, request.checkpoint, tag)


def output_path(output: PathLike | None, source: CheckpointSource, tag: str) -> Path:
    """``output`` as given, else ``model.<tag>.safetensors`` beside the input file."""
    if output is not None:
        return Path(output)
    inputs = input_paths(source)
    if not inputs:
        raise IsscliError("an in-memory checkpoint has no file to name the output after", "give `output`")
    return inputs[0].with_name(f"{inputs[0].stem}.{tag}.safetensors")


def path_text(path: PathLike | None) -> str | None:
    """A path as a report writes it (None stays None)."""
    return None if path is None else str(path)


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
    output = default_output(request)
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
