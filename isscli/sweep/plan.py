"""A sweep's plan: the base request every point starts from, its points, saved as ``SWEEPDIR/sweep.json``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isscli.api.assembly import planned_epochs
from isscli.api.runs import FinetuneRequest, RunRequest, TrainRequest
from isscli.atomic import atomic_write_text
from isscli.checkpoint import Checkpoint
from isscli.errors import IsscliError, OutputError
from isscli.observer import Observer
from isscli.provenance import plain
from isscli.sweep.points import Point

SCHEMA = "isscli.sweep/2"
PLAN = "sweep.json"
POINTS = "points"
#: The files a sweep keeps at the top of its folder (rerunning the sweep rewrites them).
SWEEP_FILES = (PLAN, "points.jsonl", "baseline.json", "tradeoff.png")

# -- the plan -----------------------------------------------------------------------------


@dataclass
class SweepRequest:
    """A sweep: the base request every point starts from, the points, and how to run them."""

    folder: Path
    base: FinetuneRequest | TrainRequest  # output, force, resume, stop_after and targets are set per point
    points: list[Point]
    jobs: int = 1  # trainings at once, as worker processes
    group_threshold: float | None = None  # of each point's prune step; None: the training τ (λ points), 0 (others)
    bench_repeats: int = 7
    force: bool = False  # discard the points the folder holds


@dataclass
class Plan:
    """What every point shares; saved as ``SWEEPDIR/sweep.json`` so that a rerun resumes the same sweep."""

    folder: Path
    base: FinetuneRequest | TrainRequest
    group_threshold: float | None
    bench_repeats: int
    points: list[Point]

    @property
    def from_scratch(self) -> bool:
        return isinstance(self.base, TrainRequest)

    @property
    def checkpoint(self) -> Path | None:
        return None if self.from_scratch else Path(self.base.checkpoint)  # type: ignore[union-attr, arg-type]

    def settings(self) -> dict[str, Any]:
        """The part that must not change between runs of the same sweep."""
        request = plain(self.base)
        for name in ("checkpoint", "data"):
            if request.get(name):
                request[name] = str(Path(request[name]).resolve())
        return {"operation": "train" if self.from_scratch else "finetune", "request": request,
                "group_threshold": self.group_threshold, "bench_repeats": self.bench_repeats}

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "settings": self.settings(), "points": [p.to_json() for p in self.points]}

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


def base_request(base: RunRequest) -> FinetuneRequest | TrainRequest:
    """The base request as a sweep keeps it: paths only (workers rebuild it from sweep.json)."""
    changes: dict[str, Any] = {name: None for name in ("target_hidden", "target_params", "target_speedup",
                                                      "stop_after")}
    if isinstance(base, FinetuneRequest):
        source = base.checkpoint
        if isinstance(source, Checkpoint):
            if source.path is None:
                raise IsscliError("a sweep needs its checkpoint as a file", "save it and give its path")
            source = source.path
        if not Path(source).is_file():
            raise IsscliError(f"checkpoint {source} not found", "check the path")
        changes["checkpoint"] = Path(source)
    if base.spec is not None and not isinstance(base.spec, (str, Path)):
        raise IsscliError("a sweep needs its spec as a file", "save it with `isscli groups` and give its path")
    return dataclasses.replace(base, **changes)  # type: ignore[return-value]


def request_from_json(operation: str, raw: dict[str, Any]) -> FinetuneRequest | TrainRequest:
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
    if request.force and folder.is_dir():
        shutil.rmtree(folder / POINTS, ignore_errors=True)
        for name in SWEEP_FILES:
            (folder / name).unlink(missing_ok=True)
    earlier: list[Point] = []
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        changed = sorted(k for k, v in plan.settings().items() if saved.get("settings", {}).get(k) != v)
        if changed:
            raise IsscliError(
                f"{folder} holds a sweep with other settings (changed: {', '.join(changed)})",
                "rerun with the same checkpoint, data and training options, choose another folder, or pass --force",
            )
        earlier = [Point(p["kind"], p["value"]) for p in saved.get("points", [])]
    new = [p for p in plan.points if p not in earlier]
    dense = [p for p in earlier if p.kind == "dense"]
    if not dense:
        budget = max(planned_epochs(p.request(plan.base, folder / "x.safetensors"), observer) for p in new)
        dense = [Point("dense", str(budget))]
    plan.points = [p for p in earlier if p.kind != "dense"] + new + dense
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved_path, json.dumps(plan.to_json(), indent=2) + "\n")
    return plan


def load_plan(folder: Path) -> Plan:
    path = folder / PLAN
    if not path.is_file():
        raise IsscliError(f"no sweep in {folder}", "start it with isscli sweep")
    raw = json.loads(path.read_text(encoding="utf-8"))
    settings = raw["settings"]
    return Plan(folder, request_from_json(settings["operation"], settings["request"]), settings["group_threshold"],
                settings["bench_repeats"], [Point(p["kind"], p["value"]) for p in raw["points"]])


