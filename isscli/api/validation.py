"""Requests check their own fields when they are made: a wrong type is one line naming the field, the value and
the type expected, before any work — never a raw ``TypeError`` from deep inside, never a silent coercion.

Each request dataclass has :class:`Checked` among its bases; its ``__post_init__`` reads the field annotations
(``int``, ``float | None``, ``str | Sequence[int] | None``, ``Mapping[str, Any]``, the path and source aliases
of :mod:`isscli.api.common` …) and checks every value against them. Bounds stay where the operations check
them; this layer makes sure they receive the types they were written for (a ``"10"`` batch, a ``32.5`` unit
count and an ``"epochs=1"`` settings string are refused here, by name).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, Union

from isscli.io.errors import IsscliError

Result = TypeVar("Result")


class Checked:
    """Base of every request: :func:`check_request` runs when the dataclass is constructed."""

    def __post_init__(self) -> None:
        check_request(self)


@cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of a request class (its module's names, and the API's aliases)."""
    import sys

    from isscli.iss.spec import GroupSpec
    from isscli.models.checkpoint import Checkpoint

    names: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = sys.modules.get(klass.__module__)
        if module is not None:
            names.update(vars(module))
    names.update({"Checkpoint": Checkpoint, "GroupSpec": GroupSpec})
    return typing.get_type_hints(cls, globalns=names)


def unparameterized(kind: Any) -> Any:
    """``os.PathLike[str]`` read as ``os.PathLike``: a path is a path, whatever its ``__fspath__`` returns."""
    return os.PathLike if typing.get_origin(kind) is os.PathLike else kind


def describe(kind: Any) -> str:
    """How a type reads in a message: ``an int``, ``a path``, ``a list of ints``."""
    kind = unparameterized(kind)
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        parts = [unparameterized(a) for a in arguments if a is not type(None)]
        if str in parts and os.PathLike in parts:  # a path, given as a string or a Path
            parts = [os.PathLike, *(a for a in parts if a not in (str, os.PathLike))]
        return " or ".join(describe(a) for a in parts) + (" or None" if type(None) in arguments else "")
    if kind is type(None):
        return "None"
    if kind is os.PathLike or kind is str:
        return "a string" if kind is str else "a path"
    if origin is not None and issubclass(origin, Mapping):
        return "a mapping (a dict)"
    if origin is not None and issubclass(origin, Sequence):
        return f"a list of {describe(arguments[0]).removeprefix('a ').removeprefix('an ')}s" if arguments else "a list"
    if kind is Any:
        return "anything"
    name = getattr(kind, "__name__", str(kind))
    return f"an {name}" if name[0].lower() in "aeiou" else f"a {name}"


def fits(value: Any, kind: Any) -> bool:
    """Whether ``value`` is of the annotated type (a bool is not an int; an int is a float; a str is no list)."""
    kind = unparameterized(kind)
    if kind is Any:
        return True
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        return any(fits(value, argument) for argument in arguments)
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None and issubclass(origin, Mapping):
        return isinstance(value, Mapping) and all(fits(k, arguments[0]) for k in value) if arguments else \
            isinstance(value, Mapping)
    if origin is not None and issubclass(origin, Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        return not arguments or all(fits(item, arguments[0]) for item in value)
    if isinstance(kind, type) and not getattr(kind, "_is_protocol", False):
        return isinstance(value, kind)
    return True  # an annotation this layer does not read (a Protocol, a Literal): the operation checks it


def checked_arguments(function: Callable[..., Result]) -> Callable[..., Result]:
    """An API function whose arguments are checked against its annotations first (``load(None)`` is one line)."""
    signature = inspect.signature(function)

    hints = functools.cache(lambda: typing.get_type_hints(function))  # resolved at the first call, then kept

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Result:
        for name, value in signature.bind(*args, **kwargs).arguments.items():
            refuse_unless_fits(name, value, hints().get(name, Any))
        return function(*args, **kwargs)

    return wrapper


def refuse_unless_fits(name: str, value: Any, kind: Any) -> None:
    if not fits(value, kind):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "…"
        raise IsscliError(f"`{name}` must be {describe(kind)} (got {shown}, {describe(type(value))})",
                          f"give `{name}` as {describe(kind)}")


def check_request(request: Any) -> None:
    """Refuse the first field whose value is not of its annotated type, naming the field, the value and the type."""
    kinds = field_types(request.__class__)
    for field in dataclasses.fields(request):
        refuse_unless_fits(field.name, getattr(request, field.name), kinds.get(field.name, Any))
