"""The embedded demo: what ISS buys, measured, in about two minutes on two CPU cores.

One run of the library API, in five steps:

1. train a dense LSTM language model (:data:`MODEL`) for a few hundred batches;
2. learn ISS on it with a size target (:data:`TARGETS` units per layer): the λ controller
   prunes for :data:`PRUNE_EPOCHS` short epochs, then the survivors recover with λ = 0;
3. fine-tune the same dense model for exactly as many batches with λ = 0 — the fair
   baseline, so that ISS is not credited with training the dense model did not get;
4. prune, compact (verified exact), evaluate and bench (:func:`isscli.shrink`);
5. evaluate the fairly fine-tuned dense model.

The summary compares the three models: test perplexity, parameters, measured inference time
(batch 10 × 30 steps) and speed-up, and the perplexity change of the compacted model against
the fair baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isscli.api.common import PathLike
from isscli.api.pipeline import ShrinkRequest, ShrinkResult, shrink
from isscli.api.runs import FinetuneRequest, TrainRequest, TrainResult, finetune, train
from isscli.api.scoring import EvaluateRequest, EvaluateResult, evaluate
from isscli.data.resolve import resolve_data
from isscli.observer import Observer, SilentObserver
from isscli.provenance import invoked_by

#: The dense model: big enough that removing units shows in the timings (the decoder dominates).
MODEL = {"embedding_size": 256, "hidden_sizes": [[256], [256]], "dropout": 0.0}
#: Units per layer after ISS.
TARGETS = [128, 96]
#: Batches per (short) epoch, the dense training's epochs, and the two phases of ISS fine-tuning.
BATCHES = 150
DENSE_EPOCHS = 3
PRUNE_EPOCHS = 2
RECOVER_EPOCHS = 1
#: What the demo promises: at least this speed-up at no more than this perplexity loss.
GOAL_SPEEDUP = 1.8
GOAL_LOSS = 0.05
STEPS = 5


@dataclass(kw_only=True)
class DemoRequest:
    data: PathLike | None = None  # None: PTB where found, else the shipped corpus
    folder: PathLike = Path("demo-out")
    batches: int = BATCHES
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


def run_demo(request: DemoRequest, observer: Observer | None = None) -> DemoResult:
    """Train, learn ISS to a size target, compare fairly with the dense model; see the module docstring."""
    observer = observer or SilentObserver()
    source = resolve_data(None if request.data is None else Path(request.data))
    if source.note:
        observer.note(source.note, True)
    folder = Path(request.folder)
    folder.mkdir(parents=True, exist_ok=True)
    observer.note(f"data: {source.path} ({source.origin}); outputs in {folder}/ (replaced on every run)")
    short = {"max_batches": request.batches}
    common: dict[str, Any] = {"data": source.path, "device": "cpu", "force": True}
    dense, iss, tuned = (folder / f"{name}.safetensors" for name in ("dense", "iss", "dense-finetuned"))
    with invoked_by("demo"):
        step(observer, 1, f"train a dense {' × '.join(str(s[0]) for s in MODEL['hidden_sizes'])} LSTM language model")
        train(TrainRequest(preset="tiny", config=MODEL, output=dense, settings={**short, "epochs": DENSE_EPOCHS},
                           **common), observer)
        step(observer, 2, f"learn ISS down to {request.targets} units (λ controller, then recovery)")
        finetune(FinetuneRequest(checkpoint=dense, output=iss, target_hidden=request.targets, settings=short,
                                 prune_epochs=PRUNE_EPOCHS, recover_epochs=RECOVER_EPOCHS, **common), observer)
        step(observer, 3, "fine-tune the dense model for as many batches with λ = 0 (the fair baseline)")
        baseline: TrainResult = finetune(FinetuneRequest(
            checkpoint=dense, output=tuned, settings={**short, "epochs": PRUNE_EPOCHS + RECOVER_EPOCHS}, **common),
            observer)
        step(observer, 4, "prune, compact (verified), evaluate and bench against the dense model")
        shrunk = shrink(ShrinkRequest(checkpoint=iss, folder=folder, baseline=dense, data=source.path,
                                      group_threshold=0.0, evaluate=("baseline", "compact"), device="cpu",
                                      bench_repeats=request.bench_repeats, force=True), observer)
        step(observer, 5, "evaluate the fairly fine-tuned dense model")
        fair = evaluate(EvaluateRequest(checkpoint=baseline.output, data=source.path, device="cpu"))
    return summarise(source.path, source.origin, shrunk, fair)


def step(observer: Observer, index: int, title: str) -> None:
    observer.note(f"step {index}/{STEPS}: {title}")


def summarise(data: Path, origin: str, shrunk: ShrinkResult, fair: EvaluateResult) -> DemoResult:
    bench = shrunk.bench
    assert bench is not None and shrunk.hidden_sizes_before and shrunk.hidden_sizes_after
    dense_ms, compact_ms = bench.median_ms("baseline"), bench.median_ms("model")
    dense, small = shrunk.evaluations["baseline"], shrunk.evaluations["compact"]
    rows = [
        DemoRow("dense", shrunk.hidden_sizes_before, dense.parameters, dense.perplexity, dense_ms, 1.0),
        DemoRow("dense, fine-tuned", shrunk.hidden_sizes_before, fair.parameters, fair.perplexity, dense_ms, 1.0),
        DemoRow("ISS, compact", shrunk.hidden_sizes_after, small.parameters, small.perplexity, compact_ms,
                dense_ms / compact_ms),
    ]
    return DemoResult(str(data), origin, rows, small.perplexity / fair.perplexity - 1, dense_ms / compact_ms)
