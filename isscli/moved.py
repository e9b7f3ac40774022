"""Old import paths of the modules that moved into layer packages in 0.3 (``isscli.surgery`` →
``isscli.iss.surgery``): they keep working, with a DeprecationWarning, until 0.4.

One table and an import hook instead of a stub file per old module, so the package root shows the layers only.
Three old paths are now the names of API functions (``isscli.export``, ``isscli.sweep``, ``isscli.demo``): importing
the old module path still works, and :class:`FunctionsKeepTheirNames` keeps the import system from replacing the
function on the package with that module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

from isscli.lazy import RENAMED_UNTIL

#: Old module or package path → where it lives now.
MOVED = {
    "isscli.surgery": "isscli.iss.surgery",
    "isscli.regularizer": "isscli.iss.regularizer",
    "isscli.equivalence": "isscli.iss.equivalence",
    "isscli.accounting": "isscli.iss.accounting",
    "isscli.spec": "isscli.iss.spec",
    "isscli.training_run": "isscli.learn.run",
    "isscli.training": "isscli.learn.loop",
    "isscli.runstate": "isscli.learn.state",
    "isscli.recipes": "isscli.learn.recipes",
    "isscli.tasks": "isscli.learn.tasks",
    "isscli.distributed": "isscli.learn.distributed",
    "isscli.controller": "isscli.learn.controller",
    "isscli.mask_hooks": "isscli.learn.mask_hooks",
    "isscli.masks": "isscli.learn.masks",
    "isscli.benchmark": "isscli.runtime.benchmark",
    "isscli.timing": "isscli.runtime.timing",
    "isscli.unstructured": "isscli.runtime.unstructured",
    "isscli.pictures": "isscli.runtime.pictures",
    "isscli.quantize": "isscli.runtime.quantize",
    "isscli.export": "isscli.runtime.export",
    "isscli.checkpoint": "isscli.models.checkpoint",
    "isscli.atomic": "isscli.io.atomic",
    "isscli.provenance": "isscli.io.provenance",
    "isscli.jsonfile": "isscli.io.jsonfile",
    "isscli.parsing": "isscli.io.parsing",
    "isscli.errors": "isscli.io.errors",
    "isscli.manifest": "isscli.io.manifest",
    "isscli.fingerprint": "isscli.data.fingerprint",
    "isscli.sweep": "isscli.sweeping",
    "isscli.demo": "isscli.api.demonstration",
    **{f"isscli.live.{name}": f"isscli.learn.your_loop.{name}"
       for name in ("loop", "adapter", "arguments", "budget", "losses", "summary", "resume")},
}


def new_path(old: str) -> str | None:
    """Where module ``old`` lives now (a submodule of a moved package included), or None if it did not move."""
    if not old.startswith("isscli."):  # every import of the process asks the hook first: the others at once
        return None
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with the module at its new one, which is then the same object under both names."""

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if new_path(fullname) else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        now = new_path(spec.name)
        assert now is not None  # find_spec answered only moved names
        warnings.warn(f"{spec.name} is now {now}; the old path goes in isscli {RENAMED_UNTIL}", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module(now)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run, the module was imported under its new name; give it back its own spec, which the import
        system replaced with the old path's."""
        module.__spec__ = importlib.util.find_spec(module.__name__)


class FunctionsKeepTheirNames(ModuleType):
    """The class of the ``isscli`` package: an old module path imported (``import isscli.sweep.plan``) binds the module
    to its parent's attribute, which must stay the API function of that name."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, ModuleType) and value.__name__ != f"{self.__name__}.{name}" and name in self.__all__:
            return  # an old path's module; ``sys.modules`` has it, the name stays the function's
        super().__setattr__(name, value)


def install(package: ModuleType) -> None:
    """Put the finder on ``sys.meta_path`` once and guard ``package``'s function names."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())  # first: the path finder would load a second copy of a submodule
    package.__class__ = FunctionsKeepTheirNames
