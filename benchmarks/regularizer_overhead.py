"""How much the group-Lasso regularizer adds to a training step (target: ≤ 10%).

Times the library's own training step (:meth:`isscli.learn.loop.Trainer.train_step`: forward,
backward, clipping, SGD, thresholding) on random tokens, for the paper's 2×1500 LM by
default, with λ = 0, with λ > 0, and with λ > 0 plus per-batch thresholding. All variants
train the same model (only the settings change), interleaved round after round, so that
neither memory placement nor a slow moment on a shared machine favours one of them; the
medians are reported.

    python benchmarks/regularizer_overhead.py                    # large, batch 20 × bptt 35, CPU
    python benchmarks/regularizer_overhead.py --preset small --rounds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from isscli.data.corpus import Corpus, Vocabulary
from isscli.iss.spec import derive_spec
from isscli.learn.loop import RunPaths, Trainer, TrainingRun
from isscli.learn.recipes import recipe
from isscli.learn.tasks import LanguageModelTask
from isscli.models import build_model, model_tensors, preset_config

VARIANTS = {"λ = 0": (0.0, 0.0), "λ > 0": (0.00245, 0.0), "λ > 0, τ = 1e-4": (0.00245, 1e-4)}


def make_trainer(preset: str, batch: int, bptt: int, device: torch.device) -> Trainer:
    config = preset_config(preset)
    words = Vocabulary([f"w{i}" for i in range(config["vocab_size"])])
    tokens = torch.randint(0, len(words), (batch * (bptt + 1) * 4,), generator=torch.Generator().manual_seed(0))
    corpus = Corpus(Path("random"), words, {"train": tokens, "valid": tokens, "test": tokens})
    settings = recipe(preset).updated({"batch_size": batch, "bptt": bptt})
    torch.manual_seed(0)
    model = build_model(config).to(device)
    task = LanguageModelTask(corpus, batch, bptt, batch, device)
    spec = derive_spec(model_tensors(model))
    return Trainer(TrainingRun("benchmark", model, task, settings, spec, RunPaths(Path("unused")), device))


def time_step(trainer: Trainer, group_lasso: float, tau: float, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    trainer.settings = trainer.settings.updated({"group_lasso": group_lasso, "weight_threshold": tau})
    trainer.run.task.state = None  # every step starts alike
    started = time.perf_counter()
    trainer.train_step(batch, 1, 1)
    if trainer.run.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def time_parts(trainer: Trainer, repeats: int = 10) -> dict[str, float]:
    """The regularizer's own per-step work, timed alone: a steadier figure than step differences."""
    for parameter in trainer.model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    parts = {"add_gradient_": lambda: trainer.regularizer.add_gradient_(0.00245),
             "threshold_": lambda: trainer.regularizer.threshold_(1e-4)}
    medians = {}
    for name, work in parts.items():
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            samples.append(time.perf_counter() - started)
        medians[name] = statistics.median(samples)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="large")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    trainer = make_trainer(args.preset, args.batch_size, args.bptt, device)
    batch = next(iter(trainer.run.task.batches(1, 1)))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds + 1):
        for name, (group_lasso, tau) in VARIANTS.items():
            elapsed = time_step(trainer, group_lasso, tau, batch)
            if round_index > 0:
                times[name].append(elapsed)
    base = statistics.median(times["λ = 0"])
    parts = time_parts(trainer)
    results = {
        "preset": args.preset, "batch_size": args.batch_size, "bptt": args.bptt, "device": str(device),
        "threads": torch.get_num_threads(), "rounds": args.rounds,
        "variants": {name: {"median_s": statistics.median(t), "all_s": t,
                            "overhead": statistics.median(t) / base - 1} for name, t in times.items()},
        "parts": {name: {"median_s": seconds, "share_of_step": seconds / base} for name, seconds in parts.items()},
    }
    print(f"{args.preset} LM, batch {args.batch_size} × bptt {args.bptt}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} steps")
    for name, result in results["variants"].items():
        print(f"  {name:<16} {result['median_s'] * 1000:8.1f} ms/step   overhead {result['overhead']:+.1%}")
    for name, result in results["parts"].items():
        share = result["share_of_step"]
        print(f"  {name:<16} {result['median_s'] * 1000:8.1f} ms alone    = {share:.1%} of a λ = 0 step")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
