"""`isscli demo` runs every step through the library and ends with one 80-column summary (a tiny corpus)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from isscli.models.checkpoint import load_checkpoint

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
    for step in range(1, 6):
        assert f"step {step}/5" in result.stderr
    assert "summary" in result.stdout and "speed-up" in result.stdout
    for row in ("dense ", "dense, fine-tuned", "ISS, compact"):
        assert row in result.stdout
    summary = result.stdout[result.stdout.index("summary"):]
    assert all(len(line) <= 80 for line in summary.splitlines()), summary
    assert "…" not in summary  # nothing cut
    shrunk = json.loads((out / "shrink.json").read_text())
    assert shrunk["hidden_sizes_before"] == [[256], [256]] and shrunk["hidden_sizes_after"] == [[128], [96]]
    summary = json.loads((out / "demo.json").read_text())
    dense, fair, compact = summary["rows"]
    assert [row["model"] for row in summary["rows"]] == ["dense", "dense, fine-tuned", "ISS, compact"]
    assert compact["parameters"] < dense["parameters"] == fair["parameters"]
    assert summary["speedup"] == shrunk["bench"]["comparison"]["speedup"] == compact["speedup"]
    assert summary["loss"] == compact["perplexity"] / fair["perplexity"] - 1
    assert f"{summary['speedup']:.2f}× faster" in result.stdout and f"{summary['loss']:+.1%}" in result.stdout
    assert summary["goals_met"] == (summary["speedup"] >= 1.8 and summary["loss"] <= 0.05)
    # every checkpoint says which operation made it, and that the demo ran it
    for name, operation in (("dense", "train"), ("iss", "finetune"), ("dense-finetuned", "finetune"),
                            ("pruned", "prune"), ("compact", "compact")):
        provenance = load_checkpoint(out / f"{name}.safetensors").provenance or {}
        assert provenance["operation"] == operation and provenance["invocation"] == {"via": "demo"}, name
    tuned = load_checkpoint(out / "iss.safetensors").provenance or {}
    fair = load_checkpoint(out / "dense-finetuned.safetensors").provenance or {}
    assert tuned["parameters"]["settings"]["epochs"] == fair["parameters"]["settings"]["epochs"]  # the same budget
    assert fair["parameters"]["settings"]["group_lasso"] == 0 and fair["parameters"]["target_hidden"] is None


def test_demo_says_where_its_data_came_from(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    result = run_cli("demo", "--data", tmp_path / "absent", "-o", tmp_path / "demo")
    assert result.code == 2 and "not found" in result.stderr


def test_demo_refuses_a_folder_holding_other_files(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"someone's weights")
    (out / "dense.safetensors").write_bytes(b"a name the demo uses")
    fallback = Path(__file__).parents[1] / "isscli" / "data" / "fallback"
    result = run_cli("demo", "--data", fallback, "-o", out)
    assert result.code == 2
    assert f"folder {out} holds files the demo did not write (model.safetensors)" in result.stderr
    assert "new or empty folder with --output" in result.stderr and "Traceback" not in result.stderr
    assert (out / "model.safetensors").read_bytes() == b"someone's weights"
    assert (out / "dense.safetensors").read_bytes() == b"a name the demo uses"
    assert sorted(path.name for path in out.iterdir()) == ["dense.safetensors", "model.safetensors"]


def test_a_folder_of_demo_outputs_is_accepted() -> None:
    from isscli.api.demonstration import DEMO_FILE

    for name in ("dense.safetensors", "iss.log.jsonl", "dense-finetuned.resume.safetensors", "shrink.json",
                 "demo.json", ".compact.safetensors.lock", ".pruned.safetensors.k3j2.tmp"):
        assert DEMO_FILE.fullmatch(name), name
    for name in ("train.txt", "ptb.train.txt", "dense.pt", "my-dense.safetensors", "iss.safetensors.bak"):
        assert not DEMO_FILE.fullmatch(name), name
