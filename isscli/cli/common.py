"""What commands share: the outputs a command claims before any work, and the library's name for an output the
command line leaves out."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TypeVar, Union

from isscli import api
from isscli.io.atomic import Output, check_outputs, output_lock  # the checks and locks of what a command writes

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Request = TypeVar("Request", bound="DataclassInstance")
_claims: list[ExitStack] = []  # one per running command: the outputs it holds


def with_default_output(request: Request) -> Request:
    """``request`` writing where the library names its output when the command line gives none
    (``CKPT.pruned.safetensors``: :func:`isscli.api.default_output`)."""
    return replace(request, output=api.default_output(request))


def writes(path: Union[str, os.PathLike[str], None], name: str = "output") -> Optional[Output]:
    """The file a command writes, named by its parameter ``name`` (none for None, nor for ``-``: stdout)."""
    return None if path is None or str(path) == "-" else Output(Path(path), name)


def claim(*outputs: Optional[Output], reads: Iterable[Path], force: bool, lock: bool = True) -> None:
    """Check every output of a command against what it reads (the request's inputs, :func:`isscli.api.request_inputs`)
    and each other, before any work (:func:`isscli.io.atomic.check_outputs`), then hold them until the command ends, so
    that a second run writing the same output is refused meanwhile."""
    claimed = [output for output in outputs if output is not None]
    check_outputs(claimed, reads, force)
    if lock and _claims:
        for output in claimed:
            _claims[-1].enter_context(output_lock(output.path))


def claim_run(request: api.TrainRequest | api.FinetuneRequest, json_path: Optional[Path],
              rename_file: Optional[Path]) -> None:
    """``train``/``finetune``: the ``--json`` report, and OUT, its log and its resume file (which the run may
    replace: ``resume``, ``force``), checked before any work; the run itself holds OUT (:func:`isscli.api.train`)."""
    run = api.RunPaths(Path(request.output)) if request.output is not None else None
    files = (run.output, run.log, run.resume) if run is not None else ()
    claim(writes(json_path, "json_path"), *(Output(path, "output", replace=True) for path in files),
          reads=reads_of(request, rename_file), force=request.force, lock=False)


def reads_of(request: object, rename_file: Optional[Path] = None) -> tuple[Path, ...]:
    """What a command reads: its request's inputs, and the ``--rename-file`` it read the request's renames from."""
    return (*api.request_inputs(request), *api.input_files(rename_file=rename_file))


@contextmanager
def held_outputs() -> Iterator[None]:
    """The scope of one command (:func:`isscli.cli.main.main`): what :func:`claim` holds is let go after."""
    with ExitStack() as stack:
        _claims.append(stack)
        try:
            yield
        finally:
            _claims.pop()

