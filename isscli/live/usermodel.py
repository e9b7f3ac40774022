"""The user's own model class, named explicitly (``--model path/to/file.py:Class`` or ``package.module:Class``).

isscli imports that code because the user asked for it by name, as ``uvicorn module:app`` does; it never
imports code named inside a checkpoint (docs/security.md). The class is built with ``model_args`` (a JSON
object of keyword arguments, or a list of positional ones) and a checkpoint is loaded into it with
:func:`~isscli.live.compact.load_compacted`, so a compacted checkpoint comes back at its own sizes.

Inputs the model runs on, when no data file gives them, are described by a shape (:func:`example_from_shape`):
``10x30x8`` is a float batch ``[10, 30, 8]``, ``10x30:int<5000`` token ids below 5000.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.models.checkpoint import Checkpoint

REFERENCE_HINT = "write `model` as path/to/file.py:ClassName or package.module:ClassName"
SHAPE = re.compile(r"^(?P<dims>\d+(?:x\d+)*)(?::int<(?P<high>\d+))?$")


@dataclass(frozen=True)
class ModelSource:
    """What the user named: the class (or factory) and its constructor arguments."""

    reference: str
    args: JSONObject | list[Any] = field(default_factory=dict)  # keyword or positional arguments, from JSON

    def describe(self) -> JSONObject:
        """For reports and provenance: what was run (never imported again from there)."""
        return {"model": self.reference, "model_args": self.args}


def model_source(reference: str | None, args: str | Mapping[str, Any] | Sequence[Any] | None) -> ModelSource | None:
    """The request's ``model`` and ``model_args`` (a JSON string, a mapping or a list), checked; None without a
    ``model``."""
    if reference is None:
        if args is not None:
            raise IsscliError("`model_args` needs `model`", "name the class with `model`=file.py:ClassName")
        return None
    if not isinstance(reference, str) or ":" not in reference:
        raise IsscliError(f"`model` {reference!r} does not name a class", REFERENCE_HINT)
    parsed: Any = args if args is not None else {}
    if isinstance(parsed, str):
        try:
            parsed = json.loads(parsed)
        except ValueError as error:
            raise IsscliError(f"`model_args` is not valid JSON ({getattr(error, 'msg', error)})",
                              "give a JSON object of constructor arguments, e.g. '{\"hidden\": 64}'") from None
    if isinstance(parsed, Mapping):
        parsed = dict(parsed)
    elif isinstance(parsed, Sequence) and not isinstance(parsed, (str, bytes)):
        parsed = list(parsed)
    else:
        raise IsscliError(f"`model_args` must be a JSON object or list (got {type(parsed).__name__})",
                          "give e.g. '{\"hidden\": 64}' (keyword arguments) or '[64, 2]' (positional)")
    return ModelSource(reference, parsed)


def _import_file(path: Path) -> Any:
    """Import a .py file under a private module name; its folder goes on ``sys.path`` so its own imports work."""
    if not path.is_file():
        raise IsscliError(f"`model` file {path} not found", "check the path before the ':'")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"isscli_user_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise IsscliError(f"`model` file {path} cannot be imported", "give a Python source file (.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import(location: str) -> Any:
    if location.endswith(".py") or "/" in location or "\\" in location:
        return _import_file(Path(location))
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # package.module:Class from the working folder, as `python -m` finds it
    return importlib.import_module(location)


def import_model_class(reference: str) -> Any:
    """The class (or factory function) ``reference`` names; every failure is a one-line error."""
    location, _, attribute = reference.rpartition(":")
    if not location or not attribute:
        raise IsscliError(f"`model` {reference!r} does not name a class", REFERENCE_HINT)
    try:
        module = _import(location)
    except IsscliError:
        raise
    except ModuleNotFoundError as error:
        raise IsscliError(f"`model`: cannot import {location} ({error})",
                          "run isscli from the folder that holds the package, or give the .py file's path") from None
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything while it is imported
        where = f" at line {error.lineno}" if isinstance(error, SyntaxError) and error.lineno else ""
        first = (str(error).splitlines() or [""])[0]
        raise IsscliError(f"`model`: importing {location} failed ({type(error).__name__}{where}: {first})",
                          "fix that file; isscli imports it only because `model` names it") from None
    found = getattr(module, attribute, None)
    if found is None:
        classes = sorted(name for name, value in vars(module).items()
                         if isinstance(value, type) and issubclass(value, nn.Module) and not name.startswith("_")
                         and getattr(value, "__module__", None) == module.__name__)
        listed = f" (its nn.Module classes: {', '.join(classes)})" if classes else ""
        raise IsscliError(f"`model`: {location} has no {attribute!r}{listed}", REFERENCE_HINT)
    if not callable(found):
        raise IsscliError(f"`model`: {reference} is a {type(found).__name__}, not a class", REFERENCE_HINT)
    return found


def build_model(source: ModelSource) -> nn.Module:
    """A fresh instance of the user's class with ``model_args``."""
    factory = import_model_class(source.reference)
    try:
        model = factory(*source.args) if isinstance(source.args, list) else factory(**source.args)
    except Exception as error:  # noqa: BLE001 - the user's constructor
        first = (str(error).splitlines() or [""])[0]
        raise IsscliError(f"`model`: {source.reference}({_arguments(source)}) failed ({type(error).__name__}: "
                          f"{first})", "give the constructor's arguments with `model_args`, e.g. "
                          "'{\"hidden\": 64}'") from None
    if not isinstance(model, nn.Module):
        raise IsscliError(f"`model`: {source.reference} made a {type(model).__name__}, not an nn.Module",
                          "name an nn.Module subclass (or a function returning one)")
    return model


def _arguments(source: ModelSource) -> str:
    if isinstance(source.args, list):
        return ", ".join(map(repr, source.args))
    return ", ".join(f"{key}={value!r}" for key, value in source.args.items())


def load_user_model(source: ModelSource, checkpoint: Checkpoint) -> nn.Module:
    """The user's class holding the checkpoint's weights, at the checkpoint's sizes (compacted or not), eval mode."""
    from isscli.live.compact import load_compacted

    model = build_model(source)
    name = str(checkpoint.path) if checkpoint.path else "the checkpoint"
    try:
        load_compacted(model, dict(checkpoint.tensors))
    except IsscliError as error:
        raise IsscliError(f"{name} does not fit {source.reference}: {error.message}",
                          "check `model_args` (the sizes) and that the checkpoint is this model's") from None
    except RuntimeError as error:
        first = (str(error).splitlines() or [""])[0]
        extra = "; ".join(line.strip() for line in str(error).splitlines()[1:3])
        raise IsscliError(f"{name} does not fit {source.reference} ({first} {extra})".strip(),
                          "check `model_args` (the sizes) and that the checkpoint is this model's") from None
    return model.eval()


def example_from_shape(shape: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``10x30x8`` → a float batch ``[10, 30, 8]`` (standard normal); ``10x30:int<5000`` → token ids in [0, 5000)."""
    match = SHAPE.match(shape.replace(" ", "").lower()) if isinstance(shape, str) else None
    if match is None:
        raise IsscliError(f"`input_shape` {shape!r} is not a shape",
                          "write e.g. 10x30x8 (floats, samples first) or 10x30:int<5000 (token ids below 5000)")
    dims = [int(part) for part in match["dims"].split("x")]
    if any(size < 1 for size in dims) or len(dims) > 6:
        raise IsscliError(f"`input_shape` {shape!r} has an empty or too many dimensions", "give 1 to 6 sizes ≥ 1")
    generator = torch.Generator().manual_seed(seed)
    if match["high"] is not None:
        high = int(match["high"])
        if high < 1:
            raise IsscliError(f"`input_shape` {shape!r}: int<{high} holds no value", "give int<N with N ≥ 1")
        return (torch.randint(0, high, dims, generator=generator),)
    return (torch.randn(dims, generator=generator),)
