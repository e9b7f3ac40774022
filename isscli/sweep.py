"""``isscli sweep``: the size/speed/quality trade-off of several λ values or size targets.

Each *point* runs the pipeline a user would type — ``finetune`` (or ``train`` from scratch)
with its λ or target, ``prune``, ``compact``, ``eval`` on the test split — and then ``bench``
against the dense model. Everything goes to ``SWEEPDIR/points/LABEL/``; a stage whose JSON
report exists is not run again, an interrupted training continues with ``--resume``, and a
point whose ``point.json`` exists is finished: rerunning the same sweep (or a longer list of
λ values) only runs what is missing. Trainings may run as parallel processes (``jobs``);
benchmarks always run one at a time, after the trainings, so that no timing shares the CPU
with a training.

The summary (``SWEEPDIR/points.jsonl`` and the report) holds, per point, λ or the target,
the hidden sizes, the parameters, the test perplexity (accuracy for classifiers) and the
measured speed-up; :func:`pareto_front` picks the points no other point beats on both axes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isscli.atomic import atomic_write_text
from isscli.errors import IsscliError, OutputError

SCHEMA = "isscli.sweep/1"
PLAN = "sweep.json"
POINTS = "points"
KINDS = {"lambda": "--lambda", "hidden": "--target-hidden", "params": "--target-params", "speedup": "--target-speedup"}
#: Flags the sweep sets itself for every point; passing them through would break the pipeline.
RESERVED = ("-o", "--output", "--json", "--data", "-d", "--lambda", "--target-hidden", "--target-params",
            "--target-speedup", "--force", "--resume", "--stop-after", "--preset", "-p")

Runner = Callable[[list[str], Path], int]


# -- points -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One λ value or one size target."""

    kind: str  # lambda | hidden | params | speedup
    value: str

    @property
    def label(self) -> str:
        value = self.value.replace(",", "x").replace("/", "-")
        return f"{self.kind}-{value}"

    def flags(self) -> list[str]:
        return [KINDS[self.kind], self.value]

    def describe(self) -> str:
        return {"lambda": "λ = {}", "hidden": "units {}", "params": "≤ {} parameters",
                "speedup": "{}× faster"}[self.kind].format(self.value)

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "label": self.label}


def format_lambda(value: float) -> str:
    return f"{value:g}"


def make_points(lambdas: Sequence[float], hidden: Sequence[str], params: Sequence[str],
                speedups: Sequence[float]) -> list[Point]:
    """The points of a command line, in order, duplicates dropped."""
    points = [Point("lambda", format_lambda(v)) for v in lambdas]
    points += [Point("hidden", v.replace(" ", "")) for v in hidden]
    points += [Point("params", v.replace(" ", "")) for v in params]
    points += [Point("speedup", format_lambda(v)) for v in speedups]
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
class Plan:
    """What every point shares; saved as ``SWEEPDIR/sweep.json`` so that a rerun resumes the same sweep."""

    folder: Path
    checkpoint: Path | None
    preset: str | None
    data: Path | None
    train_args: list[str]
    prune_threshold: float | None
    bench_repeats: int
    points: list[Point]

    @property
    def from_scratch(self) -> bool:
        return self.checkpoint is None

    def settings(self) -> dict[str, Any]:
        """The part that must not change between runs of the same sweep."""
        return {
            "checkpoint": str(self.checkpoint.resolve()) if self.checkpoint else None,
            "preset": self.preset,
            "data": str(self.data.resolve()) if self.data else None,
            "train_args": list(self.train_args),
            "prune_threshold": self.prune_threshold,
            "bench_repeats": self.bench_repeats,
        }

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "settings": self.settings(), "points": [p.to_json() for p in self.points]}

    def point_folder(self, point: Point) -> Path:
        return self.folder / POINTS / point.label

    def point(self, label: str) -> Point:
        for point in self.points:
            if point.label == label:
                return point
        raise IsscliError(f"the sweep in {self.folder} has no point {label!r}", "list the points in sweep.json")


def prepare(plan: Plan, force: bool) -> Plan:
    """Create the folder or check that it holds the same sweep; merge its earlier points into the plan."""
    folder = plan.folder
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file", "give a folder for the sweep with -o")
    saved_path = folder / PLAN
    if force and folder.is_dir():
        shutil.rmtree(folder / POINTS, ignore_errors=True)
        for path in (saved_path, folder / "points.jsonl", folder / "baseline.json", folder / "tradeoff.png"):
            path.unlink(missing_ok=True)
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        changed = sorted(k for k, v in plan.settings().items() if saved.get("settings", {}).get(k) != v)
        if changed:
            raise IsscliError(
                f"{folder} holds a sweep with other settings (changed: {', '.join(changed)})",
                "rerun with the same checkpoint, data and training flags, choose another -o, or pass --force",
            )
        earlier = [Point(p["kind"], p["value"]) for p in saved.get("points", [])]
        plan.points = earlier + [p for p in plan.points if p not in earlier]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved_path, json.dumps(plan.to_json(), indent=2) + "\n")
    return plan


def load_plan(folder: Path) -> Plan:
    path = folder / PLAN
    if not path.is_file():
        raise IsscliError(f"no sweep in {folder}", "start it with isscli sweep")
    raw = json.loads(path.read_text(encoding="utf-8"))
    settings = raw["settings"]
    return Plan(folder, Path(settings["checkpoint"]) if settings["checkpoint"] else None, settings["preset"],
                Path(settings["data"]) if settings["data"] else None, list(settings["train_args"]),
                settings["prune_threshold"], settings["bench_repeats"],
                [Point(p["kind"], p["value"]) for p in raw["points"]])


# -- running a point ----------------------------------------------------------------------


def in_process(args: list[str], log: Path) -> int:
    """Run ``isscli ARGS`` here, its output appended to ``log``; the exit code."""
    from isscli.cli.main import main

    with open(log, "a", encoding="utf-8") as stream:
        stream.write(f"$ isscli {' '.join(args)}\n")
        stream.flush()
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                main(args)
            except SystemExit as done:
                return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _last_error(log: Path) -> str:
    if not log.is_file():
        return ""
    errors = [line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else ""


def finished(plan: Plan, point: Point) -> bool:
    return (plan.point_folder(point) / "point.json").is_file()


def train_point(plan: Plan, point: Point, run: Runner = in_process) -> str:
    """Train, prune, compact and evaluate one point (stages with a JSON report are skipped): ``ok``,
    ``diverged`` (the training stopped on its guard: a finished point) or ``failed``."""
    folder = plan.point_folder(point)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    model, pruned, compacted = (folder / f"{name}.safetensors" for name in ("model", "pruned", "compact"))
    if not (folder / "train.json").is_file():
        if plan.from_scratch:
            args = ["train", "--preset", str(plan.preset)]
        else:
            args = ["finetune", str(plan.checkpoint)]
            if plan.preset:
                args += ["--preset", plan.preset]
        args += [*point.flags(), "-o", str(model), "--json", str(folder / "train.json"), *plan.train_args]
        if point.kind == "lambda" and "--keep" not in plan.train_args and not plan.from_scratch:
            args += ["--keep", "last"]  # ISS fine-tuning: the later epochs are the sparse ones
        if plan.data is not None:
            args += ["--data", str(plan.data)]
        if model.with_suffix(".resume.safetensors").is_file():
            args.append("--resume")
        elif model.exists():
            args.append("--force")
        code = run(args, log)
        if code == 1:
            write_point(plan, point, {"status": "diverged", "error": _last_error(log)})
            return "diverged"
        if code != 0:
            return "failed"
    if not (folder / "prune.json").is_file():
        threshold = plan.prune_threshold
        if threshold is None:
            threshold = 0.0 if point.kind != "lambda" else trained_threshold(model)
        code = run(["prune", str(model), "--threshold", repr(threshold), "-o", str(pruned), "--force",
                    "--json", str(folder / "prune.json")], log)
        if code != 0:
            return "failed"
    if not (folder / "compact.json").is_file():
        code = run(["compact", str(pruned), "-o", str(compacted), "--force", "--json", str(folder / "compact.json")],
                   log)
        if code != 0:
            return "failed"
    if not (folder / "eval.json").is_file():
        args = ["eval", str(compacted), "--split", "test", "--json", str(folder / "eval.json")]
        code = run(args + (["--data", str(plan.data)] if plan.data is not None else []), log)
        if code != 0:
            return "failed"
    return "ok"


def trained_threshold(model: Path) -> float:
    """τ of the point's training (its provenance), the natural group threshold of its prune step."""
    from isscli.checkpoint import load_checkpoint

    provenance = load_checkpoint(model).provenance or {}
    return float(provenance.get("threshold") or 0.0)


def bench_point(plan: Plan, point: Point, run: Runner = in_process) -> str:
    """Time the compacted model against the dense one (the parent, or for from-scratch points the
    dense-shaped pruned model), then write the point's record."""
    folder = plan.point_folder(point)
    log = folder / "log.txt"
    if not (folder / "bench.json").is_file():
        against = plan.checkpoint if plan.checkpoint is not None else folder / "pruned.safetensors"
        code = run(["bench", str(folder / "compact.safetensors"), "--against", str(against),
                    "--repeats", str(plan.bench_repeats), "--json", str(folder / "bench.json")], log)
        if code != 0:
            return "failed"
    write_point(plan, point, point_record(plan, point))
    return "ok"


def point_record(plan: Plan, point: Point) -> dict[str, Any]:
    from isscli.checkpoint import load_checkpoint

    folder = plan.point_folder(point)
    compacted = load_checkpoint(folder / "compact.safetensors")
    evaluation, bench = _read(folder / "eval.json"), _read(folder / "bench.json")
    train = _read(folder / "train.json")
    record: dict[str, Any] = {
        "status": "ok",
        "hidden_sizes": (compacted.config or {}).get("hidden_sizes"),
        "parameters": compacted.num_parameters(),
        "perplexity": evaluation.get("perplexity"),
        "accuracy": evaluation.get("accuracy"),
        "speedup": bench["comparison"]["speedup"],
        "multiply_add_reduction": bench["comparison"]["multiply_add_reduction"],
        "valid": train.get("best_valid"),
    }
    if "controller" in train:
        record["targets"] = train["controller"]["targets"]
    return record


def write_point(plan: Plan, point: Point, fields: dict[str, Any]) -> None:
    record = {**point.to_json(), **fields, "finished": round(time.time(), 3)}
    atomic_write_text(plan.point_folder(point) / "point.json", json.dumps(record, indent=2) + "\n")


def baseline_record(plan: Plan, run: Runner = in_process) -> dict[str, Any] | None:
    """The dense parent, evaluated once on the test split (fine-tuning sweeps only)."""
    if plan.checkpoint is None:
        return None
    from isscli.checkpoint import load_checkpoint

    path = plan.folder / "baseline.json"
    if not path.is_file():
        scores = plan.folder / "baseline-eval.json"
        args = ["eval", str(plan.checkpoint), "--split", "test", "--json", str(scores)]
        code = run(args + (["--data", str(plan.data)] if plan.data is not None else []), plan.folder / "log.txt")
        if code != 0:
            return None
        evaluation, dense = _read(scores), load_checkpoint(plan.checkpoint)
        record = {"label": "dense", "kind": "dense", "value": None, "status": "ok",
                  "hidden_sizes": (dense.config or {}).get("hidden_sizes"), "parameters": dense.num_parameters(),
                  "perplexity": evaluation.get("perplexity"), "accuracy": evaluation.get("accuracy"),
                  "speedup": 1.0}
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return _read(path)


# -- running the sweep --------------------------------------------------------------------


def worker_command(plan: Plan, point: Point) -> list[str]:
    return [sys.executable, "-m", "isscli", "sweep-point", str(plan.folder), point.label]


def train_in_parallel(plan: Plan, points: list[Point], jobs: int, notify: Callable[[str], None]) -> dict[str, str]:
    """Train the points as separate processes, ``jobs`` at a time, the CPU threads split between them."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    waiting, running, statuses = list(points), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                point = waiting.pop(0)
                folder = plan.point_folder(point)
                folder.mkdir(parents=True, exist_ok=True)
                with open(folder / "log.txt", "a", encoding="utf-8") as log:
                    process = subprocess.Popen(worker_command(plan, point), stdout=log, stderr=subprocess.STDOUT,
                                               env=env)
                running[point] = process
                notify(f"{point.label}: training (process {process.pid}, {threads} thread(s))")
            time.sleep(0.2)
            for point, process in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[point]
                statuses[point.label] = {0: "ok", 3: "diverged"}.get(code, "failed")
                notify(f"{point.label}: {statuses[point.label]}")
    except BaseException:
        for process in running.values():
            process.terminate()
        for process in running.values():
            process.wait()
        raise
    return statuses


def run_sweep(plan: Plan, jobs: int = 1, run: Runner = in_process,
              notify: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Run what is missing, then summarise every point of the plan (see the module docstring)."""
    todo = [p for p in plan.points if not finished(plan, p)]
    for point in plan.points:
        if point not in todo:
            notify(f"{point.label}: finished earlier, not rerun")
    if jobs > 1 and len(todo) > 1:
        if any(point.kind == "speedup" for point in todo):
            notify("note: speed-up targets are measured while other points train: the derived sizes are rough "
                   "(use --jobs 1 for them)")
        statuses = train_in_parallel(plan, todo, jobs, notify)
    else:
        statuses = {}
        for point in todo:
            notify(f"{point.label}: training ({point.describe()})")
            statuses[point.label] = train_point(plan, point, run)
    for point in todo:
        if statuses.get(point.label) == "ok":
            notify(f"{point.label}: benchmarking")
            statuses[point.label] = bench_point(plan, point, run)
    baseline = baseline_record(plan, run)
    return summarise(plan, baseline, statuses)


def summarise(plan: Plan, baseline: dict[str, Any] | None, statuses: dict[str, str]) -> dict[str, Any]:
    """The report: every point, the metric, both Pareto fronts; ``points.jsonl`` rewritten."""
    rows = []
    for point in plan.points:
        path = plan.point_folder(point) / "point.json"
        if path.is_file():
            rows.append(_read(path))
        else:
            folder = plan.point_folder(point)
            error = _last_error(folder / "log.txt")
            rows.append({**point.to_json(), "status": statuses.get(point.label, "failed"), "error": error})
    classifier = any(r.get("accuracy") is not None for r in rows + ([baseline] if baseline else []))
    metric = "accuracy" if classifier else "perplexity"
    good = [r for r in rows if r.get("status") == "ok"]
    candidates = good + ([baseline] if baseline else [])
    fronts: dict[str, list[str]] = {}
    for axis, lower_x in (("parameters", True), ("speedup", False)):
        indices = pareto_front([c[axis] for c in candidates], [c[metric] for c in candidates],
                               lower_x=lower_x, lower_y=not classifier)
        fronts[axis] = [candidates[i]["label"] for i in indices]
    for row in rows:
        row["pareto"] = [axis for axis, labels in fronts.items() if row["label"] in labels]
    atomic_write_text(plan.folder / "points.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return {"schema": SCHEMA, "folder": str(plan.folder), "metric": metric, "settings": plan.settings(),
            "baseline": baseline, "points": rows, "pareto": fronts}


def draw(report: dict[str, Any], output: Path) -> None:
    """``tradeoff.png``: the metric against parameters and against speed-up, Pareto fronts joined."""
    from isscli.pictures import tradeoff_plot

    metric = report["metric"]
    good = [r for r in report["points"] if r.get("status") == "ok"]
    entries = [{"label": r["label"], "parameters": r["parameters"], "speedup": r["speedup"], "metric": r[metric]}
               for r in good]
    baseline = report["baseline"]
    base = None
    if baseline is not None:
        base = {"label": "dense", "parameters": baseline["parameters"], "speedup": baseline["speedup"],
                "metric": baseline[metric]}
    everything = entries + ([base] if base else [])
    labels = [e["label"] for e in everything]
    fronts = {axis: [labels.index(label) for label in front] for axis, front in report["pareto"].items()}
    title = f"test {metric}"
    tradeoff_plot(entries, base, title, fronts, output)
