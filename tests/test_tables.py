"""Every command's tables fit an 80-column terminal without cutting a name or a number (no "…")."""

from __future__ import annotations

from pathlib import Path

import pytest

from isscli.cli import output
from tests.conftest import tiny_config, write_model, write_toy_corpus


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.console, "width", 80)


def assert_fits(result, what: str) -> None:  # noqa: ANN001
    assert result.code == 0, (what, result.stderr)
    lines = result.stdout.splitlines()
    assert lines, what
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, (what, too_wide)
    assert "…" not in result.stdout, (what, result.stdout)


def test_every_table_fits_80_columns(run_cli, narrow, tmp_path: Path) -> None:  # noqa: ANN001
    # long names and big numbers: a bidirectional classifier, a tied embedding, a 100k-word vocabulary
    lm = write_model(tmp_path / "a-rather-long-model-name-from-an-experiment.safetensors",
                     tiny_config(vocab_size=100_000, embedding_size=12, hidden_sizes=[[12], [12]], tie_weights=True))
    bidirectional = write_model(tmp_path / "bidirectional-sentence-classifier.safetensors",
                                tiny_config(family="classifier", num_classes=2, hidden_sizes=[[12, 10]]))
    corpus = write_toy_corpus(tmp_path, (60, 20, 20))
    small = write_model(tmp_path / "small-model-for-eval.safetensors", tiny_config(vocab_size=20))
    pruned, compacted = tmp_path / "pruned.safetensors", tmp_path / "compact.safetensors"
    assert_fits(run_cli("groups", lm), "groups")
    assert_fits(run_cli("groups", bidirectional), "groups of a bidirectional layer")
    assert_fits(run_cli("show", lm), "show")
    assert_fits(run_cli("prune", lm, "--group-threshold", "0.05", "-o", pruned), "prune")
    assert_fits(run_cli("compact", pruned, "-o", compacted), "compact")
    assert_fits(run_cli("bench", compacted, "--against", lm, "--repeats", "2", "--warmup", "0"), "bench")
    assert_fits(run_cli("bench", "--shapes", "373,315", "--against-shapes", "1500,1500", "--repeats", "1",
                        "--warmup", "0", "--steps", "2", "--unstructured"), "bench --unstructured")
    assert_fits(run_cli("sparsify", lm, "--sparsity", "0.5", "-o", tmp_path / "sparse.safetensors"), "sparsify")
    order = ("--vocab-order", "frequency")  # fresh models carry no vocabulary
    assert_fits(run_cli("eval", small, "--data", corpus, "--batch-size", "4", *order), "eval")
    assert_fits(run_cli("shrink", small, "-o", tmp_path / "shrunk", "--data", corpus, "--group-threshold", "0.3",
                        *order, "--evaluate", "baseline,pruned,compact", "--bench-repeats", "2"), "shrink")
