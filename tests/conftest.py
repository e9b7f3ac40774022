"""Shared fixtures: tiny checkpoints and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from isscli.cli.main import main
from isscli.models import build_model, model_tensors
from isscli.models.checkpoint import save_checkpoint

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The files whose tests take seconds each (subprocesses, torchrun, real training, whole sweeps): ``slow``, left out
#: by ``make test-quick`` (the inner loop, under a minute) and run by ``make test`` (everything, as CI does).
SLOW_FILES = {"test_distributed.py", "test_gpu_paths.py", "test_examples.py", "test_ci_doc.py",
              "test_sweep.py", "test_sweep_merge.py", "test_tables.py", "test_paper_lm.py", "test_bench.py",
              "test_reuse_checks.py", "test_cli_startup.py", "test_docs.py", "test_demo.py", "test_mutated_files.py",
              "test_outputs_written_safely.py", "test_bounded_inputs.py", "test_checks_not_fooled.py",
              "test_one_line_failures.py", "test_fuzz_inputs.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run ``isscli ARGS`` in-process; return exit code and captured output."""

    def run(*args: Any) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def tiny_config(**changes: Any) -> dict[str, Any]:
    config = {"family": "lm", "vocab_size": 50, "embedding_size": 8, "hidden_sizes": [[6], [5]], "cell": "lstm"}
    config.update(changes)
    return config


def write_model(path: Path, config: dict[str, Any], seed: int = 0, with_config: bool = True) -> Path:
    torch.manual_seed(seed)
    model = build_model(config)
    save_checkpoint(path, model_tensors(model), model.config.to_dict() if with_config else None)
    return path


@pytest.fixture
def tiny_lm(tmp_path: Path) -> Path:
    return write_model(tmp_path / "lm.safetensors", tiny_config())


def file_state(folder: Path) -> dict[str, bytes]:
    """Every file in a folder with its content, to prove that nothing changed or appeared."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


TOY_WORDS = (["the cat", "a dog", "the bird", "my friend"], ["sat on", "looked at", "ran to", "slept by"],
             ["the mat", "a tree", "the house", "the river"])


def write_toy_corpus(folder: Path, counts: tuple[int, int, int]) -> Path:
    """A PTB-format corpus of random three-part sentences: ``counts`` lines of train, valid, test."""
    for (split, count), seed in zip(zip(("train", "valid", "test"), counts), (1, 2, 3)):
        rng = random.Random(seed)
        text = "".join(" " + " ".join(rng.choice(part) for part in TOY_WORDS) + " \n" for _ in range(count))
        (folder / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    return folder


def train_toy_lm(folder: Path, corpus: Path) -> Path:
    """A 2-layer LSTM LM (16, 12 units) trained for one short epoch on a toy corpus."""
    config = folder / "model.json"
    config.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[16], [12]]}), encoding="utf-8")
    output = folder / "dense.safetensors"
    main(["train", "--preset", "tiny", "--config", str(config), "--data", str(corpus), "-o", str(output),
          "--epochs", "1", "--batch-size", "4", "--bptt", "8", "--max-batches", "20", "--eval-batch-size", "4"])
    return output


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy corpus of 200/30/30 lines (a test module may define its own ``corpus``)."""
    return write_toy_corpus(tmp_path_factory.mktemp("toy-corpus"), (200, 30, 30))


@pytest.fixture(scope="session")
def dense(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-layer LSTM LM (16, 12 units) of :func:`train_toy_lm`, trained on :func:`corpus`."""
    return train_toy_lm(tmp_path_factory.mktemp("toy-dense"), corpus)
