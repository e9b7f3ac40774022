"""`isscli demo` runs every step and ends with the summary table (a tiny corpus, a few batches)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = "the cat dog bird sat ran on by to mat tree house".split()


def test_demo_runs_the_pipeline_and_summarises(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(0)
    for split, lines in (("train", 300), ("valid", 40), ("test", 40)):
        text = "".join(" " + " ".join(rng.choice(WORDS) for _ in range(8)) + " \n" for _ in range(lines))
        (corpus / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "demo"
    result = run_cli("demo", "--data", corpus, "-o", out, "--batches", "5")
    assert result.code == 0, result.stderr
    for step in range(1, 9):
        assert f"step {step}/8" in result.stdout
    assert "$ isscli train --preset tiny" in result.stdout and "summary" in result.stdout
    assert "ISS, compact" in result.stdout and "speed-up" in result.stdout
    compact = json.loads((out / "compact.json").read_text())
    dense = json.loads((out / "eval-dense.json").read_text())
    small = json.loads((out / "eval-compact.json").read_text())
    pruned = json.loads((out / "eval-pruned.json").read_text())
    assert small["perplexity"] == pruned["perplexity"] or abs(small["perplexity"] / pruned["perplexity"] - 1) < 1e-5
    assert small["parameters"] <= dense["parameters"]
    assert [s["components_before"] for s in compact["sets"]] == [64, 64]
    assert {p.name for p in out.iterdir()} >= {"dense.safetensors", "compact.safetensors", "bench.json"}


def test_demo_says_where_its_data_came_from(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    result = run_cli("demo", "--data", tmp_path / "absent", "-o", tmp_path / "demo")
    assert result.code == 2 and "not found" in result.stderr
