"""A sweep's point folders: what each holds, whether its results can be reused, and its record.

Before anything runs, every point folder is inspected (:func:`inspect`): one whose recorded inputs
(``inputs.json``, :meth:`isscli.sweeping.plan.Plan.inputs`) match the plan's and whose ``point.json`` is a
valid record isscli wrote is finished; one made from other inputs is discarded and run again, or refused
when it holds files isscli did not write (:mod:`isscli.io.manifest`); the sweep says which.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from isscli.io import manifest
from isscli.io.atomic import atomic_write_text
from isscli.io.errors import IsscliError, OutputError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import plain
from isscli.observer import Observer
from isscli.sweeping.plan import INPUTS, LOG, POINT_FILES, RECORD, Plan
from isscli.sweeping.points import Point
from isscli.sweeping.records import Measured, PointRecord

POINT_SCHEMA, INPUTS_SCHEMA = "isscli.point/1", "isscli.point-inputs/1"
#: The fields of ``point.json`` (:func:`isscli.io.manifest.validated`): every record, then a finished point's.
RECORD_FIELDS = {"schema": "string", "kind": "string", "value": "string", "label": "string", "status": "string",
                 "error": "string?", "finished": "number?"}
OK_FIELDS = {**Measured.KINDS, "multiply_add_reduction": "number?", "valid": "object?", "targets": "object?"}
RERUN_HINT = "move the point's folder away and the sweep runs it again, or choose a new sweep folder"


def to_run(plan: Plan, shared: JSONObject, observer: Observer) -> list[Point]:
    """The points to run. Every point folder is inspected first (see the module docstring), so that a refusal
    comes before any folder changes; then the finished ones are said, and the others made ready to run.
    ``shared``: :meth:`Plan.shared_inputs`."""
    inspected = [(point, plan.inputs(point, shared)) for point in plan.points]
    states = [inspect(plan, point, inputs) for point, inputs in inspected]
    todo = []
    for (point, inputs), (state, detail) in zip(inspected, states):
        if state == "finished":
            observer.note(f"{point.label}: finished earlier, not rerun")
            continue
        folder = plan.point_folder(point)
        if state == "other inputs":
            manifest.remove(folder, POINT_FILES)
            observer.note(f"{point.label}: made from other inputs (changed: {detail}): its results are discarded "
                          "and the point is run again")
        elif state == "bad record":
            manifest.remove(folder, [RECORD])
            observer.note(f"{point.label}: {detail}: the point is run again")
        if state in ("new", "other inputs"):
            with manifest.writing(folder, INPUTS):
                atomic_write_text(folder / INPUTS, json.dumps({"schema": INPUTS_SCHEMA, "inputs": inputs}, indent=2)
                                  + "\n")
        manifest.claim(folder, LOG)  # appended to by every step: isscli's, whatever it holds
        todo.append(point)
    return todo


def inspect(plan: Plan, point: Point, inputs: JSONObject) -> tuple[str, str | None]:
    """What ``point``'s folder holds: ``new`` (nothing of a point), ``finished`` (a valid record isscli wrote, made
    from ``inputs``), ``unfinished``, ``bad record`` (a record isscli wrote that is not valid: the point is run
    again), or ``other inputs`` (what changed); a folder whose files a run would have to replace but isscli did
    not write is refused. Nothing is changed here."""
    folder = plan.point_folder(point)
    present = [name for name in POINT_FILES if (folder / name).exists()]
    if not present:
        return "new", None
    if manifest.read_manifest(folder) is None:  # an older isscli's point, or not isscli's: nothing is trusted
        manifest.check(folder, present)
    changed = ", ".join(point_changes(folder, inputs))
    if changed:
        try:
            manifest.check(folder, POINT_FILES)
        except OutputError as error:
            raise IsscliError(f"point {point.label} in {folder} was made from other inputs (changed: {changed}) "
                              f"and cannot be run again: {error.message}", RERUN_HINT) from None
        return "other inputs", changed
    problem = None
    if (folder / RECORD).is_file():
        try:
            read_point(folder / RECORD, point)
        except IsscliError as error:
            if not manifest.owns(folder, RECORD):
                raise IsscliError(f"{error.message}, and it was changed since isscli wrote it",
                                  manifest.NOT_OURS_HINT) from None
            problem = error.message
        else:
            if manifest.owns(folder, RECORD):
                return "finished", None
    manifest.check(folder, POINT_FILES)  # a run (re)writes them: isscli's own, or the sweep is refused
    return ("bad record", problem) if problem else ("unfinished", None)


def point_changes(folder: Path, inputs: JSONObject) -> list[str]:
    """What the point folder's recorded inputs say otherwise than ``inputs`` (the base request's fields by name:
    ``settings``, ``preset`` …); every name when there is no trustworthy record."""
    path = folder / INPUTS
    try:
        saved = manifest.read_record(path, "point inputs", {"schema": "string", "inputs": "object"}, RERUN_HINT)
    except IsscliError:
        return ["all (no readable inputs.json)"]
    if saved["schema"] != INPUTS_SCHEMA or not manifest.owns(folder, INPUTS):
        return ["all (inputs.json is not the one isscli wrote)"]
    changed = manifest.changes(saved["inputs"], inputs)
    if "request" in changed and isinstance(saved["inputs"].get("request"), dict):
        changed = sorted({*changed, *manifest.changes(saved["inputs"]["request"], inputs["request"])} - {"request"})
    return changed


def read_point(path: Path, point: Point) -> PointRecord:
    """``point.json``, checked before it is used (:data:`RECORD_FIELDS`): one line naming the file and the field."""
    where = f"point record {path}"
    raw = manifest.read_record(path, "point record", RECORD_FIELDS, RERUN_HINT)
    if raw["schema"] != POINT_SCHEMA:
        raise IsscliError(f'{where}: field "schema" is {raw["schema"][:40]!r}, not {POINT_SCHEMA!r}', RERUN_HINT)
    if (raw["kind"], raw["value"]) != (point.kind, point.value):
        raise IsscliError(f'{where}: fields "kind" and "value" are another point\'s', RERUN_HINT)
    if raw["status"] not in ("ok", "diverged"):
        raise IsscliError(f'{where}: field "status" is not "ok" or "diverged"', RERUN_HINT)
    if raw["status"] == "ok":
        manifest.validated(raw, OK_FIELDS, where, RERUN_HINT)
        if not all(isinstance(layer, list) and all(isinstance(units, int) for units in layer)
                   for layer in raw["hidden_sizes"] or []):
            raise IsscliError(f'{where}: field "hidden_sizes" is not a list of lists of integers', RERUN_HINT)
    return PointRecord.from_json(raw)


def write_point(plan: Plan, point: Point, record: PointRecord) -> None:
    """``point.json``: the point is finished (``record``'s status ``ok`` or ``diverged``)."""
    saved = {"schema": POINT_SCHEMA, **record.to_json(), "finished": round(time.time(), 3)}
    folder = plan.point_folder(point)
    with manifest.writing(folder, RECORD):
        atomic_write_text(folder / RECORD, json.dumps(plain(saved), indent=2) + "\n")
