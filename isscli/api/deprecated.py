"""The API names of isscli 0.2 that 0.3 renamed, so that every command is the function of its name: each still works,
with a DeprecationWarning, until 0.4. Not listed in ``__all__`` or ``dir(isscli)``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isscli.lazy import RENAMED_UNTIL

if TYPE_CHECKING:
    from isscli.api.common import CheckpointSource, ConfigSource, PathLike, SpecSource
    from isscli.api.demonstration import DemoRequest, DemoResult
    from isscli.api.exporting import ExportRequest
    from isscli.iss.spec import GroupSpec
    from isscli.models.checkpoint import Checkpoint
    from isscli.observer import Observer
    from isscli.runtime.export.onnx import ExportResult
    from isscli.sweeping import SweepRequest, SweepResult

#: Old name → what replaces it.
RENAMED = {
    "new_model": "init", "import_state_dict": "import_pt", "export_model": "export", "run_sweep": "sweep",
    "run_demo": "demo", "derive_spec": "groups(GroupsRequest(checkpoint=…)).spec",
    "check_spec": "groups_check(GroupsRequest(checkpoint=…, spec=…)).spec", "convert_spec": "groups_convert",
    "download_ptb": "data_ptb",
}


def _warn(old: str) -> None:
    warnings.warn(f"isscli.{old} is now isscli.{RENAMED[old]}; the old name goes in isscli {RENAMED_UNTIL}",
                  DeprecationWarning, stacklevel=3)


def new_model(config: ConfigSource, seed: int = 0, changes: Mapping[str, Any] | None = None) -> Checkpoint:
    from isscli.api.checkpoints import init

    _warn("new_model")
    return init(config, seed, changes)


def import_state_dict(path: PathLike) -> Checkpoint:
    from isscli.api.checkpoints import import_pt

    _warn("import_state_dict")
    return import_pt(path)


def export_model(request: ExportRequest) -> ExportResult:
    from isscli.api.exporting import export

    _warn("export_model")
    return export(request)


def run_sweep(request: SweepRequest, observer: Observer | None = None, plot: bool = True) -> SweepResult:
    from isscli import api  # the sweep sits a layer above the API's own modules: reached through its names

    _warn("run_sweep")
    return api.sweep(request, observer, plot)


def run_demo(request: DemoRequest, observer: Observer | None = None) -> DemoResult:
    from isscli.api.demonstration import demo

    _warn("run_demo")
    return demo(request, observer)


def derive_spec(checkpoint: Any, example_input: Any = None) -> GroupSpec:
    from isscli.api.grouping import GroupsRequest, groups

    _warn("derive_spec")
    return groups(GroupsRequest(checkpoint=checkpoint, example_input=example_input)).spec


def check_spec(spec: SpecSource, checkpoint: CheckpointSource, renames: Mapping[str, str] | None = None) -> GroupSpec:
    from isscli.api.grouping import GroupsRequest, groups_check

    _warn("check_spec")
    return groups_check(GroupsRequest(checkpoint=checkpoint, spec=spec, renames=renames or {})).spec


def convert_spec(source: PathLike, output: PathLike | None = None, renames: Mapping[str, str] | None = None,
                 checkpoint: CheckpointSource | None = None, force: bool = False) -> GroupSpec:
    from isscli.api.grouping import GroupsConvertRequest, groups_convert

    _warn("convert_spec")
    return groups_convert(GroupsConvertRequest(source=source, output=output, renames=renames or {},
                                               checkpoint=checkpoint, force=force))


def download_ptb(dest: Path | str, *args: Any, **kwargs: Any) -> Any:
    from isscli.data.download import download_ptb as download

    _warn("download_ptb")
    return download(dest, *args, **kwargs)
