"""The embedded demo: what ISS buys, measured, in about two minutes on two CPU cores.

One run of the library API, in five steps:

1. train a dense LSTM language model (:data:`MODEL`) for a few hundred batches;
2. learn ISS on it with a size target (:data:`TARGETS` units per layer): the λ controller
   prunes for :data:`PRUNE_EPOCHS` short epoch(s), then the survivors recover with λ = 0;
3. fine-tune the same dense model for exactly as many batches with λ = 0 — the fair
   baseline, so that ISS is not credited with training the dense model did not get;
4. prune, compact (verified exact) and bench against the dense model (:func:`isscli.shrink`);
5. evaluate the compacted model on the test split.

The summary compares the three models: test perplexity (the dense ones as their training runs
scored them, with the same batching), parameters, measured inference time (batch 10 × 30
steps) and speed-up, and the perplexity change of the compacted model against the fair
baseline. To fit in two minutes, validation passes read a slice of the valid split
(:data:`EVAL_BATCHES`); every test figure reads the whole test split.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from isscli.api.common import PathLike
from isscli.api.pipeline import COMPACTED, ShrinkRequest, ShrinkResult, shrink
from isscli.api.run_requests import FinetuneRequest, TrainRequest
from isscli.api.runs import finetune, train
from isscli.api.scoring import EvaluateRequest, EvaluateResult, evaluate
from isscli.api.validation import Checked, checked_arguments
from isscli.data.resolve import DataSource, resolve_data
from isscli.io import manifest
from isscli.io.atomic import atomic_write_text, output_lock
from isscli.io.errors import OutputError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import invoked_by, plain
from isscli.learn.tasks import Evaluation
from isscli.observer import Observer, SilentObserver

#: The dense model: big enough that removing units shows in the timings (the decoder dominates).
HIDDEN_SIZES = [[256], [256]]
MODEL = {"embedding_size": 256, "hidden_sizes": HIDDEN_SIZES, "dropout": 0.0}
#: Units per layer after ISS.
TARGETS = [128, 96]
#: Batches of the dense training (one long epoch), and per epoch of the two ISS phases: prune, then recover.
DENSE_BATCHES = 300
BATCHES = 60
PRUNE_EPOCHS = 1
RECOVER_EPOCHS = 3
#: The largest λ the controller may use (a gentle one: the budget is short).
LAMBDA_CAP = 0.03
#: Validation passes read this many batches of this size (the test passes are whole).
EVAL_BATCH_SIZE = 40
EVAL_BATCHES = 10
#: What the demo promises: at least this speed-up at no more than this perplexity loss.
GOAL_SPEEDUP = 1.8
GOAL_LOSS = 0.05
STEPS = 5
#: Names of the files the demo writes into its folder (and a lock or temp file of one of them).
DEMO_FILE = re.compile(r"\.?(dense|iss|dense-finetuned|pruned|compact|demo|shrink)"
                       r"(\.safetensors|\.log\.jsonl|\.resume\.safetensors|\.json)(\.lock|\..*\.tmp)?")
#: The training runs' outputs, by the name of their model (each run writes OUT, OUT.log.jsonl, OUT.resume.safetensors).
RUNS = ("dense", "iss", "dense-finetuned")
RUN_SUFFIXES = (".safetensors", ".log.jsonl", ".resume.safetensors")
#: Every file the demo writes; it replaces one on a later run only where its manifest says the demo wrote it.
DEMO_OUTPUTS = (*(run + suffix for run in RUNS for suffix in RUN_SUFFIXES),
                "pruned.safetensors", "compact.safetensors", "shrink.json", "demo.json")


@dataclass(kw_only=True)
class DemoRequest(Checked):
    data: PathLike | None = None  # None: PTB where found, else the shipped corpus
    folder: PathLike = Path("demo-out")
    batches: int = BATCHES  # per epoch of the ISS phases (the dense training has 5× as many)
    targets: list[int] = field(default_factory=lambda: list(TARGETS))
    bench_repeats: int = 7


@dataclass
class DemoRow:
    model: str
    hidden_sizes: list[list[int]]
    parameters: int
    perplexity: float
    milliseconds: float | None
    speedup: float | None


@dataclass
class DemoResult:
    data: str
    origin: str
    rows: list[DemoRow]
    loss: float  # compact vs the fair dense baseline, relative (0.03 = 3% worse)
    speedup: float  # compact vs dense, measured side by side

    @property
    def goals_met(self) -> bool:
        return self.speedup >= GOAL_SPEEDUP and self.loss <= GOAL_LOSS

    def to_json(self) -> JSONObject:
        return {"schema": "isscli.demo/1", **plain(vars(self)), "goals": {"speedup": GOAL_SPEEDUP, "loss": GOAL_LOSS},
                "goals_met": self.goals_met}


class RunFields(TypedDict):
    """What the demo's three training runs share: the corpus, the CPU, and their outputs replaced."""

    data: Path
    device: str
    force: bool


@checked_arguments
def demo(request: DemoRequest, observer: Observer | None = None) -> DemoResult:
    """Train, learn ISS to a size target, compare fairly with the dense model; see the module docstring."""
    observer = observer or SilentObserver()
    source = resolve_data(None if request.data is None else Path(request.data))
    if source.note:
        observer.note(source.note, True)
    folder = Path(request.folder)
    check_demo_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    observer.note(f"data: {source.path} ({source.origin}); outputs in {folder}/ (replaced on every run)")
    with output_lock(folder):
        result = demonstrate(request, source, folder, observer)
        with manifest.writing(folder, "demo.json"):
            atomic_write_text(folder / "demo.json", json.dumps(result.to_json(), indent=2) + "\n")
    return result


def check_demo_folder(folder: Path) -> None:
    """The demo replaces its own files on every run, so it must not write into a folder that holds anything
    else (a corpus, someone's checkpoints), nor replace a file with one of its names that it did not write
    (a model the README's walk-through named ``dense.safetensors``): its names are its own only where its
    manifest lists them, unchanged. Both are refused before any work."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file", "give the demo a folder with `folder`")
    foreign = sorted(path.name for path in folder.iterdir()
                     if not DEMO_FILE.fullmatch(path.name) and not manifest.is_manifest_file(path.name)) \
        if folder.is_dir() else []
    if foreign:
        raise OutputError(f"folder {folder} holds files the demo did not write ({', '.join(foreign[:3])}"
                          f"{', …' if len(foreign) > 3 else ''}) and the demo replaces its outputs on every run",
                          "give it a new or empty folder with `folder`")
    manifest.check(folder, DEMO_OUTPUTS)


def run_files(output: Path) -> tuple[str, ...]:
    """The names of the files a training run writing ``output`` puts beside it."""
    return tuple(output.name.removesuffix(".safetensors") + suffix for suffix in RUN_SUFFIXES)


def demonstrate(request: DemoRequest, source: DataSource, folder: Path, observer: Observer) -> DemoResult:
    """The five steps, into ``folder`` (checked and held by :func:`demo`)."""
    evaluation = {"eval_batch_size": EVAL_BATCH_SIZE, "max_eval_batches": EVAL_BATCHES}
    phases = {**evaluation, "max_batches": request.batches}
    common = RunFields(data=source.path, device="cpu", force=True)
    dense, iss, tuned = (folder / f"{name}.safetensors" for name in ("dense", "iss", "dense-finetuned"))
    dense_batches = max(1, request.batches * DENSE_BATCHES // BATCHES)
    with invoked_by("demo"):
        step(observer, 1, f"train a dense {' × '.join(str(s[0]) for s in HIDDEN_SIZES)} LSTM language model")
        with manifest.writing(folder, *run_files(dense)):
            trained = train(TrainRequest(preset="tiny", config=MODEL, output=dense, **common, settings={
                **evaluation, "max_batches": dense_batches, "epochs": 1}), observer)
        step(observer, 2, f"learn ISS down to {request.targets} units (λ controller, then recovery)")
        with manifest.writing(folder, *run_files(iss)):
            finetune(FinetuneRequest(checkpoint=dense, output=iss, target_hidden=request.targets,
                                     prune_epochs=PRUNE_EPOCHS, recover_epochs=RECOVER_EPOCHS,
                                     settings={**phases, "group_lasso": LAMBDA_CAP}, **common), observer)
        step(observer, 3, "fine-tune the dense model for as many batches with λ = 0 (the fair baseline)")
        with manifest.writing(folder, *run_files(tuned)):
            fair = finetune(FinetuneRequest(checkpoint=dense, output=tuned, settings={
                **phases, "epochs": PRUNE_EPOCHS + RECOVER_EPOCHS}, **common), observer)
        step(observer, 4, "prune, compact (verified), and bench against the dense model")
        shrunk = shrink(ShrinkRequest(checkpoint=iss, folder=folder, baseline=dense, data=source.path,
                                      group_threshold=0.0, evaluate=(), device="cpu",
                                      bench_repeats=request.bench_repeats, force=True), observer)
        step(observer, 5, "evaluate the compacted model on the test split")
        small = evaluate(EvaluateRequest(checkpoint=folder / COMPACTED, data=source.path, device="cpu",
                                         batch_size=EVAL_BATCH_SIZE, bptt=trained.settings.bptt))
    assert trained.test is not None and fair.test is not None
    return summarise(source, shrunk, trained.test, fair.test, small)


def step(observer: Observer, index: int, title: str) -> None:
    observer.note(f"step {index}/{STEPS}: {title}")


def summarise(source: DataSource, shrunk: ShrinkResult, dense: Evaluation, fair: Evaluation,
              small: EvaluateResult) -> DemoResult:
    bench = shrunk.bench
    assert bench is not None and shrunk.hidden_sizes_before and shrunk.hidden_sizes_after
    assert shrunk.parameters_before is not None and small.perplexity is not None
    dense_ms, compact_ms = bench.median_ms("baseline"), bench.median_ms("model")
    rows = [
        DemoRow("dense", shrunk.hidden_sizes_before, shrunk.parameters_before, dense.perplexity, dense_ms, 1.0),
        DemoRow("dense, fine-tuned", shrunk.hidden_sizes_before, shrunk.parameters_before, fair.perplexity,
                dense_ms, 1.0),
        DemoRow("ISS, compact", shrunk.hidden_sizes_after, small.parameters, small.perplexity, compact_ms,
                dense_ms / compact_ms),
    ]
    return DemoResult(str(source.path), source.origin, rows, small.perplexity / fair.perplexity - 1,
                      dense_ms / compact_ms)
