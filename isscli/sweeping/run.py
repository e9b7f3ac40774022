"""Running a sweep: each point's training, shrink and benchmark through the API, in process or in workers.

Which points run is decided first, from what their folders hold (:mod:`isscli.sweeping.folders`).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from isscli.api.pipeline import RESULT_FILE, ShrinkRequest, ShrinkResult, shrink
from isscli.api.runs import TrainingInterrupted, TrainRequest, finetune, train
from isscli.api.scoring import EvaluateRequest, evaluate
from isscli.api.user_models import check_tensor_data
from isscli.api.validation import checked_arguments
from isscli.io import manifest
from isscli.io.atomic import atomic_write_text, output_lock
from isscli.io.checkpoint import load_checkpoint
from isscli.io.errors import IsscliError
from isscli.io.provenance import invoked_by, plain
from isscli.learn.loop import TrainingDiverged
from isscli.observer import Observer, SilentObserver
from isscli.sweeping.folders import RERUN_HINT, read_point, to_run, write_point
from isscli.sweeping.plan import (
    RECORD,
    SCHEMA,
    TRAINING_FILES,
    Plan,
    SweepRequest,
    load_plan,
    prepare,
)
from isscli.sweeping.points import Point, pareto_front

Status = Literal["ok", "diverged", "failed"]

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

    def epoch_done(self, report: Any) -> None:
        self.note(f"epoch {report.epoch}: valid {report.valid.to_dict()}, ISS {report.alive}")


# -- which points are finished ------------------------------------------------------------


def _shrink_request(plan: Plan, point: Point, bench: bool) -> ShrinkRequest:
    folder = plan.point_folder(point)
    return ShrinkRequest(checkpoint=folder / "model.safetensors", folder=folder,
                         baseline=plan.checkpoint, data=plan.base.data,  # no checkpoint: the pruned model
                         group_threshold=plan.threshold(point), evaluate=("compact",), bench=bench,
                         bench_repeats=plan.bench_repeats, device=plan.base.device, resume=True, force=True,
                         **user_model(plan))


def user_model(plan: Plan) -> dict[str, Any]:
    """The user's own class and its tensor data's reading, for every step of a point (none for isscli's models)."""
    return {name: getattr(plan.base, name, None) for name in ("model", "model_args", "objective", "split_rule")}


def _guarded(plan: Plan, point: Point, log: PointLog, step: Any) -> PointOutcome:
    """Run ``step()`` for a point: a diverged training is a finished point, an error a failed one."""
    with invoked_by("sweep", sweep=str(plan.folder), point=point.label):
        try:
            step()
        except (TrainingInterrupted, KeyboardInterrupt):
            raise
        except TrainingDiverged as error:
            log.note(f"diverged: {error}", True)
            write_point(plan, point, {"status": "diverged", "error": str(error)})
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
                result = operation(request, log)  # type: ignore[arg-type]
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


def point_record(plan: Plan, point: Point, result: ShrinkResult) -> dict[str, Any]:
    path = plan.point_folder(point) / "train.json"
    train_report = manifest.read_record(path, "training report", {"best_valid": "object?", "controller": "object?"},
                                        RERUN_HINT)
    score, bench = result.evaluations["compact"], result.bench
    assert bench is not None and bench.comparison is not None
    record: dict[str, Any] = {
        "status": "ok",
        "hidden_sizes": result.hidden_sizes_after,
        "parameters": result.parameters_after,
        "perplexity": score.perplexity,
        "accuracy": score.accuracy,
        "loss": score.loss,
        "speedup": bench.speedup,
        "multiply_add_reduction": bench.comparison["multiply_add_reduction"],
        "valid": train_report.get("best_valid"),
    }
    if train_report.get("controller") is not None:
        record["targets"] = manifest.validated(train_report["controller"], {"targets": "object"},
                                               f"training report {path}", RERUN_HINT, "controller")["targets"]
    return record


def baseline_record(plan: Plan, shared: dict[str, Any]) -> dict[str, Any] | None:
    """The dense parent, evaluated once on the test split (fine-tuning sweeps only) and again only when what it
    was scored from changed (``shared``: :meth:`Plan.shared_inputs`)."""
    if plan.checkpoint is None:
        return None
    path = plan.folder / "baseline.json"
    inputs = {**{key: shared[key] for key in ("checkpoint", "data")}, **plain(user_model(plan))}
    if path.is_file():
        try:
            saved = manifest.read_record(path, "baseline record", {"inputs": "object"}, RERUN_HINT)
        except IsscliError:
            saved = {}
        if saved.get("inputs") == inputs and manifest.owns(plan.folder, path.name):
            return {key: value for key, value in saved.items() if key != "inputs"}
    score = evaluate(EvaluateRequest(checkpoint=plan.checkpoint, data=plan.base.data, device=plan.base.device,
                                     **user_model(plan)))
    dense = load_checkpoint(plan.checkpoint)
    record = {"label": "dense", "kind": "baseline", "value": None, "status": "ok",
              "hidden_sizes": (dense.config or {}).get("hidden_sizes"), "parameters": dense.num_parameters(),
              "perplexity": score.perplexity, "accuracy": score.accuracy, "loss": score.loss, "speedup": 1.0}
    with manifest.writing(plan.folder, path.name):
        atomic_write_text(path, json.dumps(plain({**record, "inputs": inputs}), indent=2) + "\n")
    return plain(record)


# -- running the sweep --------------------------------------------------------------------


def _worker(folder: str, label: str, threads: int, connection: Any) -> None:
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
    waiting, running, outcomes = list(points), {}, {}
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
    metric: str  # perplexity | accuracy | loss (a regression on tensor data)
    settings: dict[str, Any]
    baseline: dict[str, Any] | None
    points: list[dict[str, Any]]
    pareto: dict[str, list[str]]  # axis (parameters | speedup) → labels on the front
    plot: Path | None = None

    @property
    def failed(self) -> list[str]:
        return [row["label"] for row in self.points if row.get("status") == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **plain(vars(self))}


@checked_arguments
def run_sweep(request: SweepRequest, observer: Observer | None = None, plot: bool = True) -> SweepResult:
    """Run what is missing of a sweep, then summarise every point (see the module docstring).

    Args:
        request: the folder, the base request (finetune or train), the points, ``jobs``.
        observer: told each point's progress; each point's own notes go to its ``log.txt``.
        plot: draw ``SWEEPDIR/tradeoff.png`` (needs matplotlib).

    Returns:
        A :class:`SweepResult`; points that failed have ``status`` ``failed`` and their reason.

    Example:
        >>> base = isscli.FinetuneRequest(checkpoint="dense.safetensors", data="ptb/", settings={"epochs": 2})
        >>> points = isscli.make_points([0.001, 0.002], ["100,100"], [], [])
        >>> isscli.run_sweep(isscli.SweepRequest(folder=Path("sweep"), base=base, points=points)).pareto
    """
    with output_lock(request.folder):  # one sweep at a time in a folder
        return _run_sweep(request, observer or SilentObserver(), plot)


def _run_sweep(request: SweepRequest, observer: Observer, plot: bool) -> SweepResult:
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
    if plot and any(r.get("status") == "ok" for r in result.points):
        result.plot = plan.folder / "tradeoff.png"
        with manifest.writing(plan.folder, result.plot.name):
            draw(result, result.plot)
    return result


def summarise(plan: Plan, baseline: dict[str, Any] | None, outcomes: dict[str, PointOutcome]) -> SweepResult:
    """The report: every point, the metric, both Pareto fronts; ``points.jsonl`` rewritten."""
    rows = []
    for point in plan.points:
        path = plan.point_folder(point) / RECORD
        if path.is_file():
            rows.append({key: value for key, value in read_point(path, point).items() if key != "schema"})
        else:
            outcome = outcomes.get(point.label, PointOutcome(point.label, "failed", "not run"))
            rows.append({**point.to_json(), "status": outcome.status, "error": outcome.message})
    classifier = any(r.get("accuracy") is not None for r in rows + ([baseline] if baseline else []))
    regression = plan.base.objective == "regression" if hasattr(plan.base, "objective") else False
    metric = "accuracy" if classifier else "loss" if regression else "perplexity"
    candidates = [r for r in rows if r.get("status") == "ok"] + ([baseline] if baseline else [])
    fronts: dict[str, list[str]] = {}
    for axis, lower_x in (("parameters", True), ("speedup", False)):
        indices = pareto_front([c[axis] for c in candidates], [c[metric] for c in candidates],
                               lower_x=lower_x, lower_y=not classifier)
        fronts[axis] = [candidates[i]["label"] for i in indices]
    for row in rows:
        row["pareto"] = [axis for axis, labels in fronts.items() if row["label"] in labels]
    with manifest.writing(plan.folder, "points.jsonl"):
        atomic_write_text(plan.folder / "points.jsonl", "".join(json.dumps(plain(r)) + "\n" for r in rows))
    return SweepResult(plan.folder, metric, plan.settings(), baseline, rows, fronts)


def draw(result: SweepResult, output: Path) -> None:
    """``tradeoff.png``: the metric against parameters and against speed-up, Pareto fronts joined."""
    from isscli.runtime.pictures import tradeoff_plot

    metric = result.metric
    good = [r for r in result.points if r.get("status") == "ok"]
    entries = [{"label": r["label"], "parameters": r["parameters"], "speedup": r["speedup"], "metric": r[metric]}
               for r in good]
    base = None
    if result.baseline is not None:
        base = {"label": "dense", "parameters": result.baseline["parameters"], "speedup": result.baseline["speedup"],
                "metric": result.baseline[metric]}
    labels = [e["label"] for e in entries + ([base] if base else [])]
    fronts = {axis: [labels.index(label) for label in front] for axis, front in result.pareto.items()}
    tradeoff_plot(entries, base, f"test {metric}", fronts, output)
