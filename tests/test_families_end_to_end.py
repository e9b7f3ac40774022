"""GRU, vanilla RNN and RHN language models through the whole CLI pipeline on a tiny corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

WORDS = "the a cat dog bird sat ran looked at on by to mat tree house river".split()
BATCHES = ["--batch-size", "4", "--bptt", "6", "--max-batches", "20", "--eval-batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for split, lines in (("train", 200), ("valid", 30), ("test", 30)):
        text = "".join(" " + " ".join(rng.choice(WORDS) for _ in range(6)) + " \n" for _ in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
    return folder


def perplexity(run_cli, checkpoint: Path, corpus: Path) -> float:  # noqa: ANN001
    result = run_cli("eval", checkpoint, "--data", corpus, "--device", "cpu", "--json", "-")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)["perplexity"]


@pytest.mark.parametrize(
    "model",
    [
        {"cell": "gru", "embedding_size": 8, "hidden_sizes": [[8], [6]]},
        {"cell": "rnn_tanh", "embedding_size": 8, "hidden_sizes": [[8], [6]]},
        {"family": "rhn", "embedding_size": 8, "hidden_sizes": [[8]], "depth": 2, "tie_weights": True},
    ],
    ids=["gru", "rnn", "rhn"],
)
def test_pipeline_for_every_family(run_cli, corpus: Path, tmp_path: Path, model: dict) -> None:  # noqa: ANN001
    config = tmp_path / "model.json"
    config.write_text(json.dumps(model))
    base, iss = tmp_path / "base.safetensors", tmp_path / "iss.safetensors"
    pruned, small = tmp_path / "pruned.safetensors", tmp_path / "small.safetensors"
    trained = run_cli("train", "--preset", "tiny", "--config", config, "--data", corpus, "-o", base,
                      "--epochs", "1", *BATCHES)
    assert trained.code == 0, trained.stderr
    tuned = run_cli("finetune", base, "--lambda", "0.05", "--weight-threshold", "5e-3", "--keep", "last",
                    "--data", corpus, "-o", iss, "--epochs", "2", *BATCHES, "--json", "-")
    assert tuned.code == 0, tuned.stderr
    alive = json.loads(tuned.stdout)["epochs"][-1]["alive"]
    # Tiny runs remove few units on their own: τ at the smallest per-set median norm removes some in every model.
    summary = json.loads(run_cli("show", iss, "--json", "-").stdout)["sets"]
    tau = min(s["norm_median"] for s in summary)
    assert run_cli("prune", iss, "--group-threshold", tau, "-o", pruned).code == 0
    compacted = run_cli("compact", pruned, "-o", small, "--json", "-")
    assert compacted.code == 0, compacted.stderr
    report = json.loads(compacted.stdout)
    groups = json.loads(run_cli("groups", pruned, "--json", "-").stdout)["sets"]
    after = {s["name"]: s["components_after"] for s in report["sets"]}
    assert after == {s["name"]: s["components"] - s["removable"] for s in groups}
    assert all(after[name] <= alive[name] for name in after)
    assert sum(after.values()) < sum(s["components"] for s in groups)
    assert report["parameters_after"] < report["parameters_before"]
    assert perplexity(run_cli, small, corpus) == pytest.approx(perplexity(run_cli, pruned, corpus), rel=1e-5)
    bench = run_cli("bench", small, "--against", base, "--repeats", "2", "--warmup", "0", "--steps", "3",
                    "--json", "-")
    assert bench.code == 0, bench.stderr
    assert json.loads(bench.stdout)["comparison"]["multiply_add_reduction"] > 1
