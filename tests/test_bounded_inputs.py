"""Inputs are bounded and checked before any work: absurd numbers, huge or wrapping spec integers, deep JSON,
wrong field types, splits too short, a spec of 200k sets (docs/security.md, "Its inputs are bounded")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import isscli
from isscli.iss.spec import check_spec, parse_spec
from isscli.models.checkpoint import load_checkpoint
from tests.conftest import write_toy_corpus
from tests.hardening import QUICK, subprocess_isscli, write_spec
from tests.test_bad_input import assert_clean_failure


@pytest.mark.parametrize(("lines", "flags", "needle"), [
    ((100, 0, 20), [], "valid split"),
    ((100, 20, 1), ["--eval-batch-size", "50"], "--eval-batch-size 50"),
    ((3, 20, 20), ["--batch-size", "30"], "--batch-size 30"),
])


def test_a_split_too_short_is_refused_before_the_first_batch(run_cli, tmp_path: Path, lines: tuple[int, int, int],
                                                             flags: list[str], needle: str) -> None:
    corpus = write_toy_corpus(tmp_path, lines)
    output = tmp_path / "model.safetensors"
    result = run_cli("train", "--preset", "tiny", "--data", corpus, "-o", output, *QUICK, *flags)
    assert_clean_failure(result, needle)
    assert not output.exists() and not output.with_suffix(".log.jsonl").exists()


def test_a_classifier_corpus_without_training_sentences_is_refused_at_once(run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "mr"
    folder.mkdir()
    (folder / "rt-polarity.all").write_bytes(b"1 a fine film\n")  # 90/10: the one sentence goes to valid/test
    result = run_cli("train", "--preset", "bilstm-classifier", "--data", folder, "-o", tmp_path / "c.safetensors",
                     "--epochs", "1")
    assert_clean_failure(result, "train split")


@pytest.mark.parametrize("where", ["spec", "header", "set", "vocab"])
def test_json_nested_100k_deep_is_bad_input(run_cli, tiny_lm: Path, tmp_path: Path, where: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    if where == "spec":
        (tmp_path / "deep.json").write_text(deep)
        result = run_cli("groups", tiny_lm, "--check", tmp_path / "deep.json")
        assert_clean_failure(result, "nested too deeply")
    elif where == "header":
        checkpoint = load_checkpoint(tiny_lm)
        from safetensors.torch import save_file

        save_file(checkpoint.tensors, str(tmp_path / "deep.safetensors"), metadata={"isscli.config": deep})
        assert_clean_failure(run_cli("compact", tmp_path / "deep.safetensors"), "nested too deeply")
    elif where == "set":
        assert_clean_failure(run_cli("init", "--preset", "tiny", "--set", f"hidden_sizes={deep}", "-o",
                                     tmp_path / "x.safetensors"), "hidden_sizes")
    else:
        (tmp_path / "vocab.json").write_text(deep)
        result = run_cli("eval", tiny_lm, "--vocab", tmp_path / "vocab.json", "--data", tmp_path)
        assert_clean_failure(result, "nested too deeply")


@pytest.mark.parametrize("change", [
    {"offset": 2**63 - 1}, {"offset": 2**64 + 3}, {"offset": 10**30}, {"blocks": 2**40, "block_stride": 2**40},
    {"dim": 2**62}, {"offset": -1},
])


def test_huge_or_wrapping_spec_integers_are_refused_with_their_bound(run_cli, tiny_lm: Path, tmp_path: Path,
                                                                     change: dict) -> None:
    spec = json.loads(write_spec(tmp_path, tiny_lm).read_text())
    spec["sets"][0]["slices"][0].update(change)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = run_cli("prune", tiny_lm, "--spec", tmp_path / "spec.json", "--group-threshold", "0")
    assert_clean_failure(result, "below 0" if change.get("offset") == -1 else "2,147,483,647")


@pytest.mark.parametrize("multiplier", [float("nan"), float("inf"), -1.0, "2", True])
def test_multipliers_are_finite_numbers_at_least_zero(run_cli, tiny_lm: Path, tmp_path: Path, multiplier) -> None:
    spec = json.loads(write_spec(tmp_path, tiny_lm).read_text())
    spec["sets"][0]["multiplier"] = multiplier
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert_clean_failure(run_cli("groups", "check", tmp_path / "spec.json", tiny_lm), "finite number ≥ 0")


@pytest.mark.parametrize("entry", [
    {"multi": "abc"}, {"multi": None}, {"multi": float("nan")}, {"var_name": 5}, {"axis": True}, {"start": 1.5},
    {"end": "6"}, {"end": 2**70},
])


def test_wrong_field_types_in_the_authors_format_are_bad_input(run_cli, tiny_lm: Path, tmp_path: Path,
                                                               entry: dict) -> None:
    group = {"var_name": "rnn.weight_hh_l0", "multi": 1, "axis": 0, "start": 0, "end": 6, **entry}
    (tmp_path / "authors.json").write_text(json.dumps({"groups": [[group]]}))
    result = run_cli("groups", tiny_lm, "--check", tmp_path / "authors.json")
    assert_clean_failure(result, "authors' spec groups[0][0]")


ABSURD = [  # the command line, and what the one line says (the bound, where there is one)
    ("prune {ckpt} --group-threshold nan", "--group-threshold must be a number ≥ 0"),
    ("prune {ckpt} --keep-fraction inf", "--keep-fraction inf is outside (0, 1]"),
    ("prune {ckpt} --target-hidden 1e400,3", "not a comma-separated list"),
    ("train --preset tiny --lr inf -o {out}", "--lr must be > 0"),
    ("eval {ckpt} --batch-size 1000000000", "--batch-size must be between 1 and 65,536"),
    (f"eval {{ckpt}} --seed {2**70}", "--seed must be between 0 and 4,294,967,295"),
    ("bench {ckpt} --batch 1000000000", "--batch must be between 1 and 65,536"),
    ("bench {ckpt} --steps 1000000000", "--steps must be between 1 and 100,000"),
    ("bench {ckpt} --repeats 1000000000", "--repeats must be between 1 and 10,000"),
    ("bench {ckpt} --warmup 1000000000", "--warmup must be between 0 and 10,000"),
    ("bench --shapes 1000000000", "above the largest supported, 65,536"),
    ("bench {ckpt} --seed -1", "--seed must be between 0 and 4,294,967,295"),
    ("init --preset tiny --set vocab_size=100000000000 -o {out}", "not a number from 1 to 10,000,000"),
    (f"init --preset tiny --seed {2**70} -o {{out}}", "--seed must be between 0 and 4,294,967,295"),
    (f"train --preset tiny --seed {2**70} -o {{out}}", "--seed must be between 0 and 4,294,967,295"),
    ("train --preset tiny --target-params 1e400 -o {out}", "--target-params must be between 1 and"),
]


@pytest.mark.parametrize(("command", "needle"), ABSURD)
def test_absurd_numbers_are_refused_with_one_line_naming_the_bound(run_cli, tiny_lm: Path, tmp_path: Path,
                                                                   command: str, needle: str) -> None:
    result = run_cli(*command.format(ckpt=tiny_lm, out=tmp_path / "out.safetensors").split())
    assert_clean_failure(result, needle)
    assert not (tmp_path / "out.safetensors").exists()


def test_bench_refuses_thread_counts_that_would_crash_torch(tiny_lm: Path) -> None:
    done = subprocess_isscli("bench", tiny_lm, "--threads", "32768", "--repeats", "1")  # segfaulted before
    assert done.returncode == 2, done.stderr
    assert "--threads" in done.stderr and "1,024" in done.stderr and done.stderr.count("\n") == 1


# -- scale -------------------------------------------------------------------------------------------------------------


def test_a_spec_of_200k_sets_parses_and_checks_in_seconds() -> None:
    count = 200_000
    raw = {"format": "isscli.groups", "version": 1,
           "sets": [{"name": f"unit{i}", "components": 1, "slices": [{"tensor": "w", "dim": 0, "offset": i}]}
                    for i in range(count)]}
    started = time.perf_counter()
    spec = parse_spec(raw)
    check_spec(spec, {"w": torch.zeros(count, 1)})
    assert time.perf_counter() - started < 30  # it took over 5 minutes: the time grew with the square of the sets
    raw["sets"][-1]["slices"][0]["offset"] = 0
    with pytest.raises(isscli.SpecError, match="index 0 belongs to two components"):
        check_spec(parse_spec(raw), {"w": torch.zeros(count, 1)})
