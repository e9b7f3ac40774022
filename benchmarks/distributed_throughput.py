"""Throughput of ISS fine-tuning on 1 process vs 2 torchrun ranks on this machine, and the communication share.

    python benchmarks/distributed_throughput.py DENSE.safetensors --data ../shared/data/ptb [--batches 200] [--runs 3]

Every run fine-tunes DENSE with λ for one epoch of ``--batches`` batches (global batch 20 × 20
steps, validation cut to one batch) and reads the epoch's seconds from its JSON report:

* ``1 process``: one process using all the cores (``OMP_NUM_THREADS`` = cores);
* ``2 ranks``: ``torchrun --nproc-per-node 2``, each rank on half the cores and half of every batch;
* ``1 process, half batch``: one process on half the cores with batch 10: what each rank computes.

Tokens/s = batches × 20 × 20 / seconds. The communication share is the 2-rank step's time beyond
its own half-batch compute: (t(2 ranks) − t(half batch)) / t(2 ranks). Medians of ``--runs``
runs, interleaved. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BATCH, BPTT = 20, 20


def seconds(command: list[str], threads: int, workdir: Path) -> float:
    report = workdir / "report.json"
    report.unlink(missing_ok=True)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command + ["--json", str(report)], env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return json.loads(report.read_text())["epochs"][0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense")
    parser.add_argument("--data", required=True)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lambda", dest="group_lasso", default="0.001")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)

        def finetune(batch: int) -> list[str]:
            return ["finetune", args.dense, "--data", args.data, "--lambda", args.group_lasso, "--epochs", "1",
                    "--max-batches", str(args.batches), "--batch-size", str(batch), "--bptt", str(BPTT),
                    "--max-eval-batches", "1", "--device", "cpu", "--force", "-o", str(workdir / "out.safetensors")]

        runs = {
            "1 process": ([sys.executable, "-m", "isscli", *finetune(BATCH)], cores),
            "2 ranks": ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                         "isscli", *finetune(BATCH)], max(1, cores // 2)),
            "1 process, half batch": ([sys.executable, "-m", "isscli", *finetune(BATCH // 2)], max(1, cores // 2)),
        }
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.runs):
            for name, (command, threads) in runs.items():
                samples[name].append(seconds(command, threads, workdir))
    median = {name: statistics.median(values) for name, values in samples.items()}
    tokens = args.batches * BATCH * BPTT
    print(f"cores: {cores}; {args.batches} batches of {BATCH} × {BPTT} tokens; medians of {args.runs} runs")
    print("| run | seconds (median; all runs) | tokens/s |")
    print("| --- | ---: | ---: |")
    for name in ("1 process", "2 ranks"):
        shown = ", ".join(f"{value:.1f}" for value in samples[name])
        print(f"| {name} | {median[name]:.1f} ({shown}) | {tokens / median[name]:,.0f} |")
    share = (median["2 ranks"] - median["1 process, half batch"]) / median["2 ranks"]
    print(f"2 ranks vs 1 process: {median['1 process'] / median['2 ranks']:.2f}×; one rank's own half-batch compute "
          f"takes {median['1 process, half batch']:.1f} s, so communication and waiting are {share:.0%} of a "
          "2-rank epoch")


if __name__ == "__main__":
    main()
