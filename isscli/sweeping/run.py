"""Running a sweep: each point's training, shrink and benchmark through the API, in process or in workers.

Which points run is decided first, from what their folders hold (:mod:`isscli.sweeping.folders`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch

from isscli.api.pipeline import RESULT_FILE, ShrinkRequest, ShrinkResult, shrink
from isscli.api.run_requests import FinetuneRequest, TrainRequest
from isscli.api.runs import TrainingInterrupted, finetune, train
from isscli.api.scoring import EvaluateRequest, evaluate
from isscli.api.user_models import check_tensor_data
from isscli.api.validation import checked_arguments
from isscli.io import manifest
from isscli.io.atomic import atomic_write_text, output_lock
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import invoked_by, plain
from isscli.learn.evaluation import Metric
from isscli.learn.run import TrainingDiverged
from isscli.models.checkpoint import load_checkpoint
from isscli.observer import Observer, SilentObserver
from isscli.sweeping.folders import RERUN_HINT, read_point, to_run, write_point
from isscli.sweeping.plan import (
    RECORD,
    SCHEMA,
    TRAINING_FILES,
    Plan,
    SweepRequest,
    SweepSettings,
    load_plan,
    prepare,
)
from isscli.sweeping.points import Point, pareto_front
from isscli.sweeping.records import Baseline, Measured, PointRecord, Status

if TYPE_CHECKING:
    from isscli.learn.run import EpochReport

# -- running a point ----------------------------------------------------------------------


@dataclass
class PointOutcome:
    """How a point's training (or benchmark) ended: ``ok``, ``diverged`` (its guard stopped it: a
    finished point) or ``failed`` (with the one-line reason)."""

    label: str
    status: Status
    message: str | None = None


class PointLog(SilentObserver):
    """Notes of a point's API calls, appended to its ``log.txt``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, message: str, warning: bool = False) -> None:
        stamp = time.strftime("%H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(f"{stamp} {'warning: ' if warning else ''}{message}\n")

    def epoch_done(self, report: EpochReport) -> None:
        self.note(f"epoch {report.epoch}: valid {report.valid.to_dict()}, ISS {report.alive}")


# -- which points are finished ------------------------------------------------------------


def _shrink_request(plan: Plan, point: Point, bench: bool) -> ShrinkRequest:
    folder = plan.point_folder(point)
    return ShrinkRequest(checkpoint=folder / "model.safetensors", folder=folder,
                         baseline=plan.checkpoint, data=plan.base.data,  # no checkpoint: the pruned model
                         group_threshold=plan.threshold(point), evaluate=("compact",), bench=bench,
                         bench_repeats=plan.bench_repeats, device=plan.base.device, resume=True, force=True,
                         **user_model(plan))


class UserModel(TypedDict):
    """The user's own class and how its tensor data is read: the same for every step of a point."""

    model: str | None
    model_args: str | Mapping[str, Any] | Sequence[Any] | None
    objective: str | None
    split_rule: str | None


def user_model(plan: Plan) -> UserModel:
    """The user's own class and its tensor data's reading, for every step of a point (none for isscli's models)."""
    base = plan.base
    if isinstance(base, FinetuneRequest):
        return UserModel(model=base.model, model_args=base.model_args, objective=base.objective,
                         split_rule=base.split_rule)
    return UserModel(model=None, model_args=None, objective=None, split_rule=None)


def _guarded(plan: Plan, point: Point, log: PointLog, step: Callable[[], None]) -> PointOutcome:
    """Run ``step()`` for a point: a diverged training is a finished point, an error a failed one."""
    with invoked_by("sweep", sweep=str(plan.folder), point=point.label):
        try:
            step()
        except (TrainingInterrupted, KeyboardInterrupt):
            raise
        except TrainingDiverged as error:
            log.note(f"diverged: {error}", True)
            write_point(plan, point, PointRecord.of(point, "diverged", str(error)))
            return PointOutcome(point.label, "diverged", str(error))
        except IsscliError as error:
            log.note(f"error: {error}", True)
            return PointOutcome(point.label, "failed", str(error))
        except Exception as error:  # noqa: BLE001 - one point's bug must not stop the others
            message = f"internal error: {type(error).__name__}: {error}"
            log.note(message, True)
            return PointOutcome(point.label, "failed", message)
    return PointOutcome(point.label, "ok")


def train_point(plan: Plan, point: Point) -> PointOutcome:
    """Train (unless done), prune, compact and evaluate one point."""
    folder = plan.point_folder(point)
    folder.mkdir(parents=True, exist_ok=True)
    log = PointLog(folder / "log.txt")

    def step() -> None:
        if not (folder / "train.json").is_file():
            manifest.remove(folder, [RESULT_FILE])  # a new training: earlier steps are stale
            request = point.request(plan.base, folder / "model.safetensors")
            operation = train if isinstance(request, TrainRequest) else finetune
            log.note(f"{operation.__name__} ({point.describe()}): {json.dumps(plain(request))}")
            with manifest.writing(folder, *TRAINING_FILES):
                result = operation(request, log)
            with manifest.writing(folder, "train.json"):
                atomic_write_text(folder / "train.json", json.dumps(plain(result.to_json()), indent=2) + "\n")
        shrink(_shrink_request(plan, point, bench=False), log)

    return _guarded(plan, point, log, step)


def bench_point(plan: Plan, point: Point) -> PointOutcome:
    """Time the compacted model against the dense one (for from-scratch sweeps, the dense-shaped pruned
    model), then write the point's record."""
    log = PointLog(plan.point_folder(point) / "log.txt")

    def step() -> None:
        result = shrink(_shrink_request(plan, point, bench=True), log)
        write_point(plan, point, point_record(plan, point, result))

    return _guarded(plan, point, log, step)


def point_record(plan: Plan, point: Point, result: ShrinkResult) -> PointRecord:
    """A finished point: what its compacted model measured, and its training's best validation and targets."""
    path = plan.point_folder(point) / "train.json"
    train_report = manifest.read_record(path, "training report", {"best_valid": "object?", "controller": "object?"},
                                        RERUN_HINT)
    score, bench = result.evaluations["compact"], result.bench
    assert bench is not None and bench.comparison is not None and result.parameters_after is not None
    record = PointRecord.of(point, "ok")
    record.measured = Measured(result.hidden_sizes_after, result.parameters_after, score.perplexity, score.accuracy,
                               score.loss, bench.comparison.speedup)
    record.multiply_add_reduction = bench.comparison.multiply_add_reduction
    record.valid = train_report.get("best_valid")
    if train_report.get("controller") is not None:
        record.targets = manifest.validated(train_report["controller"], {"targets": "object"},
                                            f"training report {path}", RERUN_HINT, "controller")["targets"]
    return record


def baseline_record(plan: Plan, shared: JSONObject) -> Baseline | None:
    """The dense parent, evaluated once on the test split (fine-tuning sweeps only) and again only when what it
    was scored from changed (``shared``: :meth:`Plan.shared_inputs`)."""
    if plan.checkpoint is None:
        return None
    path = plan.folder / "baseline.json"
    inputs = {**{key: shared[key] for key in ("checkpoint", "data")}, **plain(user_model(plan))}
    if path.is_file():
        try:
            saved = manifest.read_record(path, "baseline record", {"inputs": "object", **Measured.KINDS}, RERUN_HINT)
        except IsscliError:
            saved = {}
        if saved.get("inputs") == inputs and manifest.owns(plan.folder, path.name):
            return Baseline.from_json(saved)
    score = evaluate(EvaluateRequest(checkpoint=plan.checkpoint, data=plan.base.data, device=plan.base.device,
                                     **user_model(plan)))
    dense = load_checkpoint(plan.checkpoint)
    baseline = Baseline(dense.config.hidden_sizes if dense.config else None, dense.num_parameters(), score.perplexity,
                        score.accuracy, score.loss, 1.0)
    with manifest.writing(plan.folder, path.name):
        atomic_write_text(path, json.dumps(plain({**baseline.to_json(), "inputs": inputs}), indent=2) + "\n")
    return Baseline.from_json(plain(baseline.to_json()))  # as a rerun reads it back: inf as None


# -- running the sweep --------------------------------------------------------------------


def _worker(folder: str, label: str, threads: int, connection: Connection) -> None:
    """A worker process: train one point through the API and send back its outcome."""
    torch.set_num_threads(threads)
    plan = load_plan(Path(folder))
    try:
        outcome = train_point(plan, plan.point(label))
    except BaseException as error:  # noqa: BLE001 - interrupted: say so, the parent decides
        outcome = PointOutcome(label, "failed", f"worker stopped: {type(error).__name__}")
    connection.send(outcome)
    connection.close()


def train_in_parallel(plan: Plan, points: list[Point], jobs: int, observer: Observer) -> dict[str, PointOutcome]:
    """Train the points as worker processes, ``jobs`` at a time, the CPU threads split between them."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, torch.get_num_threads() // jobs)
    waiting = list(points)
    running: dict[Point, tuple[SpawnProcess, Connection]] = {}
    outcomes: dict[str, PointOutcome] = {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                point = waiting.pop(0)
                plan.point_folder(point).mkdir(parents=True, exist_ok=True)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_worker, args=(str(plan.folder), point.label, threads, sender))
                process.start()
                sender.close()
                running[point] = (process, receiver)
                observer.note(f"{point.label}: training (process {process.pid}, {threads} thread(s))")
            time.sleep(0.2)
            for point, (process, receiver) in list(running.items()):
                if process.is_alive() and not receiver.poll():
                    continue
                outcome = receiver.recv() if receiver.poll() else None
                process.join()
                del running[point]
                outcomes[point.label] = outcome or PointOutcome(
                    point.label, "failed", f"worker process ended with exit code {process.exitcode}")
                observer.note(f"{point.label}: {outcomes[point.label].status}")
    except BaseException:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()
        raise
    return outcomes


@dataclass
class SweepResult:
    """Every point's record, the dense baseline, the metric and both Pareto fronts."""

    folder: Path
    metric: Metric  # perplexity | accuracy | loss (a regression on tensor data)
    settings: SweepSettings
    baseline: Baseline | None  # fine-tuning sweeps: the dense parent
    points: list[PointRecord]
    pareto: dict[str, list[str]]  # axis (parameters | speedup) → labels on the front
    plot: Path | None = None

    @property
    def failed(self) -> list[str]:
        return [point.label for point in self.points if point.status == "failed"]

    def to_json(self) -> JSONObject:
        report: JSONObject = plain({
            "schema": SCHEMA, "folder": self.folder, "metric": self.metric.name, "settings": self.settings.to_json(),
            "baseline": self.baseline.to_json() if self.baseline else None,
            "points": [point.to_json() for point in self.points], "pareto": self.pareto, "plot": self.plot})
        return report


@checked_arguments
def sweep(request: SweepRequest, observer: Observer | None = None, plot: bool = True) -> SweepResult:
    """Run what is missing of a sweep, then summarise every point (see the module docstring).

    Args:
        request: the folder, the base request (finetune or train), the points, ``jobs``.
        observer: told each point's progress; each point's own notes go to its ``log.txt``.
        plot: draw ``SWEEPDIR/tradeoff.png`` (needs matplotlib).

    Returns:
        A :class:`SweepResult`; points that failed have ``status`` ``failed`` and their reason.

    Example::

        base = isscli.FinetuneRequest(checkpoint="dense.safetensors", data="ptb/", settings={"epochs": 2})
        points = isscli.make_points([0.001, 0.002], ["100,100"], [], [])
        isscli.sweep(isscli.SweepRequest(folder=Path("sweep"), base=base, points=points)).pareto
    """
    with output_lock(request.folder):  # one sweep at a time in a folder
        return _sweep(request, observer or SilentObserver(), plot)


def _sweep(request: SweepRequest, observer: Observer, plot: bool) -> SweepResult:
    check_tensor_data(request.base)  # a bad reading of the data fails here, not in every point's training
    plan = prepare(request, observer)
    shared = plan.shared_inputs()
    todo = to_run(plan, shared, observer)
    if request.jobs > 1 and len(todo) > 1:
        if any(point.kind == "speedup" for point in todo):
            observer.note("speed-up targets are measured while other points train: the derived sizes are rough "
                          "(use one job for them)", True)
        outcomes = train_in_parallel(plan, todo, request.jobs, observer)
    else:
        outcomes = {}
        for point in todo:
            observer.note(f"{point.label}: training ({point.describe()})")
            outcomes[point.label] = train_point(plan, point)
    for point in todo:
        if outcomes[point.label].status == "ok":
            observer.note(f"{point.label}: benchmarking")
            outcomes[point.label] = bench_point(plan, point)
    result = summarise(plan, baseline_record(plan, shared), outcomes)
    if plot and any(point.status == "ok" for point in result.points):
        result.plot = plan.folder / "tradeoff.png"
        with manifest.writing(plan.folder, result.plot.name):
            draw(result, result.plot)
    return result


def summarise(plan: Plan, baseline: Baseline | None, outcomes: dict[str, PointOutcome]) -> SweepResult:
    """The report: every point, the metric, both Pareto fronts; ``points.jsonl`` rewritten."""
    rows = [row(plan, point, outcomes) for point in plan.points]
    candidates = scored(rows, baseline)
    objective = plan.base.objective if isinstance(plan.base, FinetuneRequest) else None
    metric = Metric.of(any(measured.accuracy is not None for _, measured in candidates), objective)
    ys = values(metric, candidates, -math.inf if metric.higher_is_better else math.inf)  # None: the worst
    xs: dict[str, list[float]] = {"parameters": [measured.parameters for _, measured in candidates],
                                  "speedup": [measured.speedup for _, measured in candidates]}
    fronts: dict[str, list[str]] = {}
    for axis, lower_x in (("parameters", True), ("speedup", False)):
        indices = pareto_front(xs[axis], ys, lower_x=lower_x, lower_y=not metric.higher_is_better)
        fronts[axis] = [candidates[i][0] for i in indices]
    for record in rows:
        record.pareto = [axis for axis, labels in fronts.items() if record.label in labels]
    with manifest.writing(plan.folder, "points.jsonl"):
        atomic_write_text(plan.folder / "points.jsonl",
                          "".join(json.dumps(plain(record.to_json())) + "\n" for record in rows))
    return SweepResult(plan.folder, metric, plan.settings(), baseline, rows, fronts)


def row(plan: Plan, point: Point, outcomes: dict[str, PointOutcome]) -> PointRecord:
    """A point's row: its record once finished, else how this run left it."""
    path = plan.point_folder(point) / RECORD
    if path.is_file():
        return read_point(path, point)
    outcome = outcomes.get(point.label, PointOutcome(point.label, "failed", "not run"))
    return PointRecord.of(point, outcome.status, outcome.message)


def scored(points: list[PointRecord], baseline: Baseline | None) -> list[tuple[str, Measured]]:
    """The models on the trade-off, by label: the finished points, then the dense baseline."""
    finished = [(point.label, point.measured) for point in points if point.measured is not None]
    return finished + ([(baseline.label, baseline)] if baseline else [])


def values(metric: Metric, candidates: list[tuple[str, Measured]], missing: float) -> list[float]:
    """The candidates' scores by ``metric``; ``missing`` where a score was not recorded (a perplexity too large)."""
    scores = (metric.value(measured) for _, measured in candidates)
    return [missing if score is None else score for score in scores]


def draw(result: SweepResult, output: Path) -> None:
    """``tradeoff.png``: the metric against parameters and against speed-up, Pareto fronts joined."""
    from isscli.runtime.pictures import TradeoffPoint, tradeoff_plot

    candidates = scored(result.points, result.baseline)
    entries = [TradeoffPoint(label, measured.parameters, measured.speedup, value)
               for (label, measured), value in zip(candidates, values(result.metric, candidates, math.nan))]
    base = entries.pop() if result.baseline else None
    labels = [label for label, _ in candidates]
    fronts = {axis: [labels.index(label) for label in front] for axis, front in result.pareto.items()}
    tradeoff_plot(entries, base, f"test {result.metric.name}", fronts, output)
