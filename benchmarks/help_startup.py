"""How long `isscli … --help` takes, and whether it imports torch (it must not): five runs per command, the median.

Run from the repository root after `make install`: ``python benchmarks/help_startup.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ISSCLI = Path(sys.executable).with_name("isscli")
COMMANDS = [[], ["groups"], ["prune"], ["finetune"], ["eval"], ["bench"], ["export"], ["data", "ptb"], ["sweep"]]


def seconds(words: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(ISSCLI), *words, "--help"], capture_output=True, check=True, env={"COLUMNS": "120"})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def imports_torch(words: list[str]) -> bool:
    """Whether ``python -X importtime`` lists torch among the modules the command imported."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "isscli", *words, "--help"], capture_output=True,
                         text=True, check=True)
    return any(line.rstrip().endswith("| torch") for line in run.stderr.splitlines())


def main() -> None:
    for words in COMMANDS:
        name = " ".join(["isscli", *words, "--help"])
        print(f"{name:30s} median {seconds(words):.3f} s   torch imported: {imports_torch(words)}")


if __name__ == "__main__":
    main()
