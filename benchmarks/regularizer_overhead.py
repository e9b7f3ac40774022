"""How much the group-Lasso regularizer adds to a training step (target: ≤ 10%).

Times the library's own training step (:meth:`isscli.training.Trainer.train_step`: forward,
backward, clipping, SGD, thresholding) on random tokens, for the paper's 2×1500 LM by
default, with λ = 0, with λ > 0, and with λ > 0 plus per-batch thresholding. The variants
run interleaved, round after round, so that a slow moment on a shared machine hits them
alike; the medians are reported.

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
from isscli.models import build_model, model_tensors, preset_config
from isscli.recipes import recipe
from isscli.spec import derive_spec
from isscli.tasks import LanguageModelTask
from isscli.training import RunPaths, Trainer, TrainingRun

VARIANTS = {"λ = 0": (0.0, 0.0), "λ > 0": (0.00245, 0.0), "λ > 0, τ = 1e-4": (0.00245, 1e-4)}


def make_trainer(preset: str, group_lasso: float, tau: float, batch: int, bptt: int, device: torch.device) -> Trainer:
    config = preset_config(preset)
    words = Vocabulary([f"w{i}" for i in range(config["vocab_size"])])
    tokens = torch.randint(0, len(words), (batch * (bptt + 1) * 4,), generator=torch.Generator().manual_seed(0))
    corpus = Corpus(Path("random"), words, {"train": tokens, "valid": tokens, "test": tokens})
    settings = recipe(preset).updated({"group_lasso": group_lasso, "threshold": tau, "batch_size": batch, "bptt": bptt})
    torch.manual_seed(0)
    model = build_model(config).to(device)
    task = LanguageModelTask(corpus, batch, bptt, batch, device)
    spec = derive_spec(model_tensors(model))
    return Trainer(TrainingRun("benchmark", model, task, settings, spec, RunPaths(Path("unused")), device))


def time_step(trainer: Trainer, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> float:
    trainer.run.task.state = None  # every step starts alike
    started = time.perf_counter()
    trainer.train_step(batch, 1, 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


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
    trainers = {name: make_trainer(args.preset, lam, tau, args.batch_size, args.bptt, device)
                for name, (lam, tau) in VARIANTS.items()}
    batch = next(iter(next(iter(trainers.values())).run.task.batches(1, 1)))
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for round_index in range(args.rounds + 1):
        for name, trainer in trainers.items():
            elapsed = time_step(trainer, batch, device)
            if round_index > 0:
                times[name].append(elapsed)
    base = statistics.median(times["λ = 0"])
    results = {
        "preset": args.preset, "batch_size": args.batch_size, "bptt": args.bptt, "device": str(device),
        "threads": torch.get_num_threads(), "rounds": args.rounds,
        "variants": {name: {"median_s": statistics.median(t), "all_s": t,
                            "overhead": statistics.median(t) / base - 1} for name, t in times.items()},
    }
    print(f"{args.preset} LM, batch {args.batch_size} × bptt {args.bptt}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} steps")
    for name, result in results["variants"].items():
        print(f"  {name:<16} {result['median_s'] * 1000:8.1f} ms/step   overhead {result['overhead']:+.1%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
