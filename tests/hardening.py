"""Helpers of the tests that back docs/security.md's promises (test_outputs_written_safely.py, test_bounded_inputs.py,
test_printed_as_written.py, test_one_line_failures.py …)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from isscli.iss.spec import derive_spec
from isscli.models.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--epochs", "1", "--batch-size", "4", "--bptt", "8", "--eval-batch-size", "4", "--max-batches", "5"]


def write_spec(folder: Path, checkpoint: Path, name: str = "spec.json") -> Path:
    path = folder / name
    path.write_text(derive_spec(load_checkpoint(checkpoint).tensors).dumps())
    return path


def subprocess_isscli(*args: object, prelude: str = "", **options: object) -> subprocess.CompletedProcess:
    """``isscli ARGS`` in a fresh Python through the console entry point, after ``prelude`` (Python code)."""
    code = f"{prelude}\nimport sys\nfrom isscli.cli.entry import main\nmain(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, **options)  # type: ignore[call-overload]
