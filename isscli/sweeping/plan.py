"""A sweep's plan: the base request every point starts from, its points, saved as ``SWEEPDIR/sweep.json``.

The plan also says what each point is made from, by content (:meth:`Plan.inputs`): a point folder —
left by an earlier run, or copied from another sweep — is reused only when its recorded inputs are
the same (:mod:`isscli.sweeping.run`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from isscli.api.assembly import planned_epochs
from isscli.api.common import CheckpointSource
from isscli.api.pipeline import RESULT_FILES
from isscli.api.run_requests import FinetuneRequest, RunRequest, TrainRequest
from isscli.api.validation import Checked
from isscli.data.fingerprint import data_fingerprint
from isscli.data.resolve import resolve_data
from isscli.io import manifest
from isscli.io.atomic import atomic_write_text
from isscli.io.errors import IsscliError, OutputError
from isscli.io.hashing import file_sha256
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import plain
from isscli.models.checkpoint import Checkpoint
from isscli.observer import Observer
from isscli.sweeping.points import KINDS, Point

SCHEMA = "isscli.sweep/2"
PLAN = "sweep.json"
POINTS = "points"
#: The files a sweep keeps at the top of its folder (rerunning the sweep rewrites them).
SWEEP_FILES = (PLAN, "points.jsonl", "baseline.json", "tradeoff.png")
#: A point folder's files: its inputs' fingerprints, the training run's outputs, its report, the shrink steps'
#: results, its record (it is finished once that exists) and its log.
INPUTS, RECORD, LOG = "inputs.json", "point.json", "log.txt"
TRAINING_FILES = ("model.safetensors", "model.log.jsonl", "model.resume.safetensors")
POINT_FILES = (INPUTS, *TRAINING_FILES, "train.json", *RESULT_FILES, RECORD, LOG)
#: Request fields that say where and how a point runs, not what it computes (or that the sweep sets per point,
#: or fingerprints by content): not part of a point's inputs.
NOT_INPUTS = ("checkpoint", "data", "device", "output", "force", "resume", "stop_after")
#: Request fields that may name a file: fingerprinted by content, so that copies under other paths agree.
FILE_FIELDS = ("vocab", "settings_file", "spec", "config")
PLAN_HINT = "choose a new sweep folder"

# -- the plan -----------------------------------------------------------------------------


@dataclass
class SweepRequest(Checked):
    """A sweep: the base request every point starts from, the points, and how to run them."""

    folder: Path
    base: FinetuneRequest | TrainRequest  # output, force, resume, stop_after and targets are set per point
    points: list[Point]
    jobs: int = 1  # trainings at once, as worker processes
    group_threshold: float | None = None  # of each point's prune step; None: the training τ (λ points), 0 (others)
    bench_repeats: int = 7
    force: bool = False  # discard the points the folder holds


@dataclass(frozen=True)
class SweepSettings:
    """What must not change between runs of the same sweep: the operation, the base request every point starts
    from, the prune steps' τ and the bench repeats."""

    operation: Literal["train", "finetune"]
    request: FinetuneRequest | TrainRequest
    group_threshold: float | None
    bench_repeats: int

    def to_json(self) -> JSONObject:
        """As ``sweep.json`` keeps it: the request's checkpoint and data as absolute paths."""
        request = plain(self.request)
        for name in ("checkpoint", "data"):
            if request.get(name):
                request[name] = str(Path(request[name]).resolve())
        return {"operation": self.operation, "request": request, "group_threshold": self.group_threshold,
                "bench_repeats": self.bench_repeats}


@dataclass
class Plan:
    """What every point shares; saved as ``SWEEPDIR/sweep.json`` so that a rerun resumes the same sweep."""

    folder: Path
    base: FinetuneRequest | TrainRequest
    group_threshold: float | None
    bench_repeats: int
    points: list[Point]

    @property
    def operation(self) -> Literal["train", "finetune"]:
        return "train" if isinstance(self.base, TrainRequest) else "finetune"

    @property
    def checkpoint(self) -> Path | None:
        """The dense model every point fine-tunes (None: the points train from scratch)."""
        return checkpoint_path(self.base.checkpoint) if isinstance(self.base, FinetuneRequest) else None

    def settings(self) -> SweepSettings:
        return SweepSettings(self.operation, self.base, self.group_threshold, self.bench_repeats)

    def to_json(self) -> JSONObject:
        return {"schema": SCHEMA, "settings": self.settings().to_json(), "points": [p.to_json() for p in self.points]}

    def point_folder(self, point: Point) -> Path:
        return self.folder / POINTS / point.label

    def point(self, label: str) -> Point:
        for point in self.points:
            if point.label == label:
                return point
        raise IsscliError(f"the sweep in {self.folder} has no point {label!r}", "list the points in sweep.json")

    def threshold(self, point: Point) -> float | None:
        """The prune step's group threshold: given, else the training τ for λ points and 0 (exact) otherwise."""
        if self.group_threshold is not None:
            return self.group_threshold
        return None if point.kind == "lambda" else 0.0

    def shared_inputs(self) -> JSONObject:
        """What every point is made from, by content: the base request without the fields that only say where or
        how it runs (:data:`NOT_INPUTS`; ``device``: a point trained on a GPU may join those of a CPU), its files
        by their sha256, the parent checkpoint's sha256 and the corpus's fingerprint."""
        request = {key: value for key, value in plain(self.base).items() if key not in NOT_INPUTS}
        for name in FILE_FIELDS:
            if isinstance(request.get(name), str) and Path(request[name]).is_file():
                request[name] = {"sha256": file_sha256(request[name])}
        model = request.get("model")
        if isinstance(model, str) and ":" in model and Path(model.rsplit(":", 1)[0]).is_file():
            code, name = model.rsplit(":", 1)
            request["model"] = {"sha256": file_sha256(Path(code)), "class": name}
        data = self.base.data if self.base.data is not None else resolve_data(None, download=False).path
        checkpoint = self.checkpoint
        return {"operation": self.operation, "request": request,
                "checkpoint": manifest.file_fingerprint(checkpoint, "checkpoint") if checkpoint else None,
                "data": data_fingerprint(data)}

    def inputs(self, point: Point, shared: JSONObject) -> JSONObject:
        """What ``point`` is made from: ``shared`` (:meth:`shared_inputs`), its λ or target, its prune step's τ."""
        return {**shared, "point": {"kind": point.kind, "value": point.value},
                "group_threshold": self.threshold(point)}


def base_request(base: RunRequest) -> FinetuneRequest | TrainRequest:
    """The base request as a sweep keeps it: paths only (workers rebuild it from sweep.json), no target."""
    if isinstance(base, FinetuneRequest):
        source = checkpoint_path(base.checkpoint)
        if not source.is_file():
            raise IsscliError(f"checkpoint {source} not found", "check the path")
        base = dataclasses.replace(base, checkpoint=source)
    elif not isinstance(base, TrainRequest):
        raise IsscliError("a sweep's base request is a FinetuneRequest or a TrainRequest", "give one of them")
    if base.spec is not None and not isinstance(base.spec, (str, Path)):
        raise IsscliError("a sweep needs its spec as a file", "save it with `isscli groups` and give its path")
    return dataclasses.replace(base, target_hidden=None, target_params=None, target_speedup=None, stop_after=None)


def checkpoint_path(source: CheckpointSource) -> Path:
    """The file of a checkpoint (one in memory is refused: every point's worker reads it)."""
    if isinstance(source, Checkpoint):
        if source.path is None:
            raise IsscliError("a sweep needs its checkpoint as a file", "save it and give its path")
        return source.path
    return Path(source)


def request_from_json(operation: str, raw: JSONObject) -> FinetuneRequest | TrainRequest:
    cls = TrainRequest if operation == "train" else FinetuneRequest
    return cls(**raw)


def prepare(request: SweepRequest, observer: Observer) -> Plan:
    """Create the folder or check that it holds the same sweep; add the dense point; merge earlier points."""
    folder = Path(request.folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file", "give a folder for the sweep")
    if not request.points:
        raise IsscliError("no sweep points", "give λ values or size targets")
    if request.jobs < 1 or request.bench_repeats < 1:
        raise IsscliError("`jobs` and `bench_repeats` must be ≥ 1", "fix the option")
    plan = Plan(folder, base_request(request.base), request.group_threshold, request.bench_repeats,
                list(request.points))
    saved_path = folder / PLAN
    manifest.check(folder, SWEEP_FILES)  # rewritten by every run: isscli's own, or the sweep is refused
    if request.force and folder.is_dir():
        discard(folder)
    earlier: list[Point] = []
    if saved_path.is_file():
        saved = read_plan(saved_path)
        changed = sorted(k for k, v in plan.settings().to_json().items() if saved["settings"].get(k) != v)
        if changed:
            raise IsscliError(
                f"{folder} holds a sweep with other settings (changed: {', '.join(changed)})",
                "rerun with the same checkpoint, data and training options, choose another folder, or pass --force",
            )
        earlier = [Point(p["kind"], p["value"]) for p in saved["points"]]
    new = [p for p in plan.points if p not in earlier]
    dense = [p for p in earlier if p.kind == "dense"]
    if not dense:
        budget = max(planned_epochs(p.request(plan.base, folder / "x.safetensors"), observer) for p in new)
        dense = [Point("dense", str(budget))]
    plan.points = [p for p in earlier if p.kind != "dense"] + new + dense
    folder.mkdir(parents=True, exist_ok=True)
    with manifest.writing(folder, PLAN):
        atomic_write_text(saved_path, json.dumps(plan.to_json(), indent=2) + "\n")
    return plan


def discard(folder: Path) -> None:
    """``force``: remove what the sweep wrote — its files at the top and in every point folder — all checked to be
    isscli's before any is removed; files of anyone else stay, and so do the folders that hold them."""
    points = sorted(path for path in (folder / POINTS).iterdir() if path.is_dir()) \
        if (folder / POINTS).is_dir() else []
    for point in points:
        manifest.check(point, POINT_FILES)
    for point in points:
        manifest.remove(point, POINT_FILES)
        if all(manifest.is_manifest_file(path.name) for path in point.iterdir()):
            shutil.rmtree(point)
    manifest.remove(folder, SWEEP_FILES)


def read_plan(path: Path) -> JSONObject:
    """``sweep.json``, checked before it is used: one line naming the file and the field."""
    raw = manifest.read_record(path, "sweep plan", {"schema": "string", "settings": "object", "points": "list"},
                               PLAN_HINT)
    for index, point in enumerate(raw["points"]):
        manifest.validated(point, {"kind": "string", "value": "string"}, f"sweep plan {path}", PLAN_HINT,
                           f"points.{index}")
        if point["kind"] not in KINDS:
            raise IsscliError(f'sweep plan {path}: field "points.{index}.kind" is not one of {", ".join(KINDS)}',
                              PLAN_HINT)
    return raw


def load_plan(folder: Path) -> Plan:
    path = folder / PLAN
    if not path.is_file():
        raise IsscliError(f"no sweep in {folder}", "start it with isscli sweep")
    raw = read_plan(path)
    where = f"sweep plan {path}"
    settings = manifest.validated(raw["settings"], {"operation": "string", "request": "object",
                                                    "group_threshold": "number?", "bench_repeats": "integer"},
                                  where, PLAN_HINT, "settings")
    try:
        base = request_from_json(settings["operation"], settings["request"])
    except TypeError as error:
        raise IsscliError(f'{where}: field "settings.request" is not a request ({error})', PLAN_HINT) from None
    return Plan(folder, base, settings["group_threshold"], settings["bench_repeats"],
                [Point(p["kind"], p["value"]) for p in raw["points"]])
