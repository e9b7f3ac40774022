"""Sweeps: the size/speed/quality trade-off of several λ values or size targets.

Each *point* fine-tunes the dense model (or trains from scratch) through the library API
(:func:`isscli.finetune` / :func:`isscli.train`) with its λ or target, then :func:`isscli.shrink`
prunes, compacts and evaluates it and, after every training, benches it against the dense
model. Every sweep also has a **dense point**: the same request with λ = 0 and no target, for
as many epochs as the longest point, so that the dense model gets the same extra training as
the ISS models (a fair comparison, not one against an under-trained parent).

Everything goes to ``SWEEPDIR/points/LABEL/``; a point whose ``point.json`` exists is finished,
a training whose ``train.json`` exists is not run again, an interrupted one continues with
``resume``, and :func:`isscli.shrink` keeps the steps it already did: rerunning the same sweep
(or a longer list of points) only runs what is missing. Trainings may run as parallel worker
processes (``jobs``), each calling the same API; benchmarks always run one at a time, after
the trainings, so that no timing shares the CPU with a training.

The summary (``SWEEPDIR/points.jsonl`` and the report) holds, per point, λ or the target,
the hidden sizes, the parameters, the test perplexity (accuracy for classifiers) and the
measured speed-up; :func:`pareto_front` picks the points no other point beats on both axes.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from isscli.api.assembly import planned_epochs
from isscli.api.pipeline import ShrinkRequest, ShrinkResult, shrink
from isscli.api.runs import FinetuneRequest, RunRequest, TrainingInterrupted, TrainRequest, finetune, train
from isscli.api.scoring import EvaluateRequest, evaluate
from isscli.atomic import atomic_write_text
from isscli.checkpoint import Checkpoint, load_checkpoint
from isscli.errors import IsscliError, OutputError
from isscli.observer import Observer, SilentObserver
from isscli.provenance import invoked_by, plain
from isscli.training import TrainingDiverged

SCHEMA = "isscli.sweep/2"
PLAN = "sweep.json"
POINTS = "points"
KINDS = ("lambda", "hidden", "params", "speedup", "dense")
#: Request fields every point sets itself.
RESERVED = ("output", "force", "resume", "stop_after", "target_hidden", "target_params", "target_speedup")

Status = Literal["ok", "diverged", "failed"]


# -- points -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One λ value, one size target, or the dense model trained for ``value`` more epochs (kind ``dense``)."""

    kind: str  # lambda | hidden | params | speedup | dense
    value: str

    @property
    def label(self) -> str:
        if self.kind == "dense":
            return "dense-lambda0"
        value = self.value.replace(",", "x").replace("/", "-")
        return f"{self.kind}-{value}"

    def describe(self) -> str:
        return {"lambda": "λ = {}", "hidden": "units {}", "params": "≤ {} parameters", "speedup": "{}× faster",
                "dense": "dense, λ = 0, {} epochs"}[self.kind].format(self.value)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "label": self.label}

    def request(self, base: RunRequest, output: Path) -> RunRequest:
        """The base request with this point's λ or target, writing ``output``."""
        settings = dict(base.settings)
        changes: dict[str, Any] = {"output": output, "force": True, "resume": False}
        if self.kind == "lambda":
            settings["group_lasso"] = float(self.value)
            if isinstance(base, FinetuneRequest) and "keep" not in settings:
                settings["keep"] = "last"  # ISS fine-tuning: the later epochs are the sparse ones
        elif self.kind == "dense":
            settings.update(group_lasso=0.0, l1=0.0, epochs=int(self.value))
        else:
            name = {"hidden": "target_hidden", "params": "target_params", "speedup": "target_speedup"}[self.kind]
            changes[name] = float(self.value) if self.kind == "speedup" else self.value
        if Path(output).with_suffix(".resume.safetensors").is_file():
            changes.update(resume=True, force=False)
        return dataclasses.replace(base, settings=settings, **changes)


def make_points(lambdas: Sequence[float], hidden: Sequence[str], params: Sequence[str],
                speedups: Sequence[float]) -> list[Point]:
    """The points of a request, in order, duplicates dropped (the dense point is added by the plan)."""
    points = [Point("lambda", f"{v:g}") for v in lambdas]
    points += [Point("hidden", str(v).replace(" ", "")) for v in hidden]
    points += [Point("params", str(v).replace(" ", "")) for v in params]
    points += [Point("speedup", f"{v:g}") for v in speedups]
    unique: list[Point] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


# -- the Pareto front ---------------------------------------------------------------------


def pareto_front(xs: Sequence[float], ys: Sequence[float], lower_x: bool = True, lower_y: bool = True) -> list[int]:
    """Indices of the points no other point dominates, sorted from the best x to the worst.

    A point dominates another when it is at least as good on both axes and better on one;
    ``lower_x``/``lower_y`` say which direction is better (parameters: lower; speed-up:
    higher; perplexity: lower; accuracy: higher). Equal points do not dominate each other.
    """
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    sx = [x if lower_x else -x for x in xs]
    sy = [y if lower_y else -y for y in ys]

    def dominates(a: int, b: int) -> bool:
        return sx[a] <= sx[b] and sy[a] <= sy[b] and (sx[a] < sx[b] or sy[a] < sy[b])

    front = [i for i in range(len(sx)) if not any(dominates(j, i) for j in range(len(sx)) if j != i)]
    return sorted(front, key=lambda i: (sx[i], sy[i]))


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
        for path in (saved_path, folder / "points.jsonl", folder / "baseline.json", folder / "tradeoff.png"):
            path.unlink(missing_ok=True)
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


def finished(plan: Plan, point: Point) -> bool:
    return (plan.point_folder(point) / "point.json").is_file()


def _shrink_request(plan: Plan, point: Point, bench: bool) -> ShrinkRequest:
    folder = plan.point_folder(point)
    return ShrinkRequest(checkpoint=folder / "model.safetensors", folder=folder,
                         baseline=plan.checkpoint or folder / "pruned.safetensors", data=plan.base.data,
                         group_threshold=plan.threshold(point), evaluate=("compact",), bench=bench,
                         bench_repeats=plan.bench_repeats, device=plan.base.device, resume=True, force=True)


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
            (folder / "shrink.json").unlink(missing_ok=True)  # a new training: earlier steps are stale
            request = point.request(plan.base, folder / "model.safetensors")
            operation = train if isinstance(request, TrainRequest) else finetune
            log.note(f"{operation.__name__} ({point.describe()}): {json.dumps(plain(request))}")
            result = operation(request, log)  # type: ignore[arg-type]
            atomic_write_text(folder / "train.json", json.dumps(result.to_json(), indent=2) + "\n")
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
    train_report = json.loads((plan.point_folder(point) / "train.json").read_text(encoding="utf-8"))
    score, bench = result.evaluations["compact"], result.bench
    assert bench is not None and bench.comparison is not None
    record: dict[str, Any] = {
        "status": "ok",
        "hidden_sizes": result.hidden_sizes_after,
        "parameters": result.parameters_after,
        "perplexity": score.perplexity,
        "accuracy": score.accuracy,
        "speedup": bench.speedup,
        "multiply_add_reduction": bench.comparison["multiply_add_reduction"],
        "valid": train_report.get("best_valid"),
    }
    if "controller" in train_report:
        record["targets"] = train_report["controller"]["targets"]
    return record


def write_point(plan: Plan, point: Point, fields: dict[str, Any]) -> None:
    record = {**point.to_json(), **fields, "finished": round(time.time(), 3)}
    atomic_write_text(plan.point_folder(point) / "point.json", json.dumps(record, indent=2) + "\n")


def baseline_record(plan: Plan) -> dict[str, Any] | None:
    """The dense parent, evaluated once on the test split (fine-tuning sweeps only)."""
    if plan.checkpoint is None:
        return None
    path = plan.folder / "baseline.json"
    if not path.is_file():
        score = evaluate(EvaluateRequest(checkpoint=plan.checkpoint, data=plan.base.data, device=plan.base.device))
        dense = load_checkpoint(plan.checkpoint)
        record = {"label": "dense", "kind": "baseline", "value": None, "status": "ok",
                  "hidden_sizes": (dense.config or {}).get("hidden_sizes"), "parameters": dense.num_parameters(),
                  "perplexity": score.perplexity, "accuracy": score.accuracy, "speedup": 1.0}
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return json.loads(path.read_text(encoding="utf-8"))


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
    metric: str  # perplexity | accuracy
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
    observer = observer or SilentObserver()
    plan = prepare(request, observer)
    todo = [p for p in plan.points if not finished(plan, p)]
    for point in plan.points:
        if point not in todo:
            observer.note(f"{point.label}: finished earlier, not rerun")
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
    result = summarise(plan, baseline_record(plan), outcomes)
    if plot and any(r.get("status") == "ok" for r in result.points):
        result.plot = plan.folder / "tradeoff.png"
        draw(result, result.plot)
    return result


def summarise(plan: Plan, baseline: dict[str, Any] | None, outcomes: dict[str, PointOutcome]) -> SweepResult:
    """The report: every point, the metric, both Pareto fronts; ``points.jsonl`` rewritten."""
    rows = []
    for point in plan.points:
        path = plan.point_folder(point) / "point.json"
        if path.is_file():
            rows.append(json.loads(path.read_text(encoding="utf-8")))
        else:
            outcome = outcomes.get(point.label, PointOutcome(point.label, "failed", "not run"))
            rows.append({**point.to_json(), "status": outcome.status, "error": outcome.message})
    classifier = any(r.get("accuracy") is not None for r in rows + ([baseline] if baseline else []))
    metric = "accuracy" if classifier else "perplexity"
    candidates = [r for r in rows if r.get("status") == "ok"] + ([baseline] if baseline else [])
    fronts: dict[str, list[str]] = {}
    for axis, lower_x in (("parameters", True), ("speedup", False)):
        indices = pareto_front([c[axis] for c in candidates], [c[metric] for c in candidates],
                               lower_x=lower_x, lower_y=not classifier)
        fronts[axis] = [candidates[i]["label"] for i in indices]
    for row in rows:
        row["pareto"] = [axis for axis, labels in fronts.items() if row["label"] in labels]
    atomic_write_text(plan.folder / "points.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return SweepResult(plan.folder, metric, plan.settings(), baseline, rows, fronts)


def draw(result: SweepResult, output: Path) -> None:
    """``tradeoff.png``: the metric against parameters and against speed-up, Pareto fronts joined."""
    from isscli.pictures import tradeoff_plot

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
