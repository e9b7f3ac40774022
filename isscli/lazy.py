"""Public names imported on first use (PEP 562), so that ``import isscli`` does not load torch.

The command line sets up Ctrl-C and SIGTERM before anything heavy is imported
(``cli/entry.py``); a package whose ``__init__`` imported the whole API eagerly would
load torch first. ``__all__``, ``from isscli import *``, ``dir()`` and ``isscli.finetune(…)``
work as with eager imports.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from importlib import import_module
from typing import Any

#: When the old names a package still answers (its ``hidden`` names, :func:`lazy_exports`) stop working.
RENAMED_UNTIL = "0.4"


def lazy_exports(
    package: str, homes: Mapping[str, str], hidden: Collection[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose public names live in the modules ``homes`` says
    (name → module path); ``hidden`` names (old names kept for a while, which warn when used) are reachable but not
    listed by ``dir()``."""
    namespace = import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in homes:
            value = getattr(import_module(homes[name]), name)
        else:  # a submodule not imported yet (``isscli.iss.surgery``), as an eager package would have it
            try:
                value = import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        namespace[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes} - set(hidden))

    return __getattr__, __dir__
