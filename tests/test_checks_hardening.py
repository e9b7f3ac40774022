"""What isscli compares or reuses is checked by content (issue 21): gates, resumes, provenance, JSON reports."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

import isscli
from isscli.data.fingerprint import data_fingerprint
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import finite_json
from isscli.io.provenance import check_provenance
from isscli.learn.recipes import recipe
from isscli.learn.run import JsonLog
from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_config, write_model

BATCHES = ["--batch-size", "4", "--bptt", "8", "--max-batches", "10", "--eval-batch-size", "4"]


def strict_json(text: str) -> Any:
    """Parse as a strict JSON reader (a CI tool's) would: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def variant(source: Path, target: Path, provenance: Any = None, scale: dict[str, float] | None = None) -> Path:
    """``source`` rewritten with another provenance header and/or some tensors scaled."""
    loaded = load_checkpoint(source)
    tensors = {name: tensor * (scale or {}).get(name, 1.0) for name, tensor in loaded.tensors.items()}
    return save_checkpoint(target, tensors, loaded.config, loaded.provenance if provenance is None else provenance,
                           vocabulary=loaded.vocabulary)


# -- gates (repros 2 and 3; eval --baseline missing) -----------------------------------------------------


def test_a_gate_refuses_perplexities_over_different_vocabularies(run_cli, dense: Path, corpus: Path,
                                                                   tmp_path: Path) -> None:  # noqa: ANN001
    few = write_model(tmp_path / "few.safetensors", tiny_config(vocab_size=3))
    loaded = load_checkpoint(few)
    few = save_checkpoint(tmp_path / "three-words.safetensors", loaded.tensors, loaded.config,
                          vocabulary=["<unk>", "<eos>", "the"])
    report = tmp_path / "eval.json"
    result = run_cli("eval", few, "--data", corpus, "--baseline", dense, "--max-loss", "0", "--json", report)
    words = len(load_checkpoint(dense).vocabulary or [])
    error = one_error(result.stderr)
    assert result.code == 2 and "different vocabularies" in error
    assert "the model's 3 words" in error and f"the baseline's {words} words" in error
    assert not report.exists()
    same = run_cli("eval", dense, "--data", corpus, "--baseline", dense, "--max-loss", "0", "--json", "-")
    assert same.code == 0 and strict_json(same.stdout)["vocabulary"]["size"] == words


def test_a_baseline_whose_perplexity_overflows_is_no_reference(run_cli, dense: Path, corpus: Path,
                                                                tmp_path: Path) -> None:  # noqa: ANN001
    huge = variant(dense, tmp_path / "huge.safetensors", scale={"decoder.weight": 1e5})
    alone = run_cli("eval", huge, "--data", corpus, "--json", "-")
    report = strict_json(alone.stdout)  # its perplexity is inf: null in the JSON, and said
    assert alone.code == 0 and math.isfinite(report["loss"]) and report["loss"] > 710
    assert report["perplexity"] is None and report["non_finite"] == {"perplexity": "Infinity"}
    gated = run_cli("eval", dense, "--data", corpus, "--baseline", huge, "--max-loss", "0")
    error = one_error(gated.stderr)
    assert gated.code == 2 and "perplexity inf" in error and "no finite limit" in error and str(huge) in error


def test_eval_reads_the_baseline_before_scoring_the_model(run_cli, dense: Path, corpus: Path,
                                                          tmp_path: Path) -> None:  # noqa: ANN001
    missing = tmp_path / "missing.safetensors"
    result = run_cli("eval", dense, "--data", corpus, "--baseline", missing, "--max-loss", "0")
    assert result.code == 2 and f"checkpoint {missing} not found" in one_error(result.stderr)
    assert "perplexity" not in result.stdout  # nothing was scored


# -- resume (repro 5) ------------------------------------------------------------------------------------


def test_resume_with_another_corpus_is_refused_naming_data(run_cli, dense: Path, corpus: Path,
                                                           tmp_path: Path) -> None:  # noqa: ANN001
    other = tmp_path / "other"
    shutil.copytree(corpus, other)
    lines = (other / "ptb.train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (other / "ptb.train.txt").write_text("".join(reversed(lines)), encoding="utf-8")  # same words, other text
    output = tmp_path / "iss.safetensors"
    common = ["finetune", dense, "--lambda", "0.001", "--epochs", "2", *BATCHES, "-o", output]
    assert run_cli(*common, "--data", corpus, "--stop-after", "1").code == 0
    state = output.with_suffix(".resume.safetensors")
    before = sha256(state)
    refused = run_cli(*common, "--data", other, "--resume")
    assert refused.code == 2 and "changed: data" in one_error(refused.stderr)
    assert sha256(state) == before  # the run stays resumable with its own corpus
    assert run_cli(*common, "--data", corpus, "--resume").code == 0


def test_the_corpus_fingerprint_is_its_content(corpus: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    moved.mkdir()
    for split in ("train", "valid", "test"):  # other folder, other file names, same text: the same corpus
        shutil.copy(corpus / f"ptb.{split}.txt", moved / f"{split}.txt")
    assert data_fingerprint(moved) == data_fingerprint(corpus)
    with open(moved / "test.txt", "a", encoding="utf-8") as stream:
        stream.write(" the cat \n")
    assert data_fingerprint(moved) != data_fingerprint(corpus)
    single = tmp_path / "all.txt"
    single.write_text("a b\nc d\ne f\n", encoding="utf-8")
    assert data_fingerprint(single) != data_fingerprint(corpus)


# -- provenance (repro 8) -----------------------------------------------------------------------------


MALFORMED = {
    "parent_provenance": (lambda p: p.update(parent_provenance="oops"), '"parent_provenance" must be a JSON object'),
    "parameters": (lambda p: p.update(parameters=[1, 2]), '"parameters" must be a JSON object'),
    "settings": (lambda p: p["parameters"].update(settings=7), '"parameters.settings" must be a JSON object'),
    "tau as text": (lambda p: p["parameters"]["settings"].update(weight_threshold="1e-4"),
                    '"parameters.settings.weight_threshold" must be a number'),
    "negative tau": (lambda p: p["parameters"]["settings"].update(weight_threshold=-1),
                     '"parameters.settings.weight_threshold" must be a number'),
    "vocabulary": (lambda p: p["parameters"]["data"].update(vocabulary_sha256=[]),
                   '"parameters.data.vocabulary_sha256" must be text'),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_provenance_is_one_line_naming_the_file_and_the_field(run_cli, dense: Path, corpus: Path,
                                                                         tmp_path: Path, case: str) -> None:  # noqa: ANN001
    change, words = MALFORMED[case]
    field = words.split('"')[1].rsplit(".", 1)[-1]
    provenance = copy.deepcopy(load_checkpoint(dense).provenance)
    change(provenance)
    bad = variant(dense, tmp_path / "bad.safetensors", provenance)
    before = sha256(bad)
    result = run_cli("eval", bad, "--data", corpus)
    error = one_error(result.stderr)
    assert result.code == 2 and f"{bad}: provenance field" in error and words in error
    folder = tmp_path / "shrunk"
    shrunk = run_cli("shrink", bad, "-o", folder, "--data", corpus, "--no-bench")
    assert shrunk.code == 2 and field in one_error(shrunk.stderr)  # shrink reads τ itself, in its own words
    assert not (folder / "pruned.safetensors").exists() and not (folder / "compact.safetensors").exists()
    assert sha256(bad) == before


def test_a_provenance_nested_in_a_parent_is_checked_with_its_path() -> None:
    record = {"operation": "prune", "parent_provenance": {"operation": "train", "parameters": {"settings": []}}}
    with pytest.raises(IsscliError, match=r'm\.safetensors: provenance field "parent_provenance\.parameters\.'
                                          r'settings" must be a JSON object \(got a list\)'):
        check_provenance(record, "m.safetensors")
    check_provenance({"operation": "train", "parameters": {"settings": {"weight_threshold": None}}}, "ok")


def test_a_threshold_that_kills_the_model_leaves_nothing_behind(run_cli, dense: Path, corpus: Path,
                                                                tmp_path: Path) -> None:  # noqa: ANN001
    provenance = copy.deepcopy(load_checkpoint(dense).provenance)
    provenance["parameters"]["settings"]["weight_threshold"] = 1e30
    bad = variant(dense, tmp_path / "tau.safetensors", provenance)
    folder = tmp_path / "shrunk"
    result = run_cli("shrink", bad, "-o", folder, "--data", corpus, "--no-bench")
    assert result.code == 2 and "the model would be dead" in one_error(result.stderr)
    assert not (folder / "pruned.safetensors").exists() and not (folder / "compact.safetensors").exists()
    output = tmp_path / "pruned.safetensors"
    pruned = run_cli("prune", dense, "--group-threshold", "100", "-o", output)
    error = one_error(pruned.stderr)
    assert pruned.code == 2 and "--group-threshold 100 would zero every one of the 16" in error
    assert "give a --group-threshold below" in error and not output.exists()


# -- JSON reports and logs ------------------------------------------------------------------------------


def test_every_json_isscli_writes_is_valid_json(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    model = write_model(tmp_path / "m.safetensors", tiny_config())
    loaded = load_checkpoint(model)
    loaded.tensors["rnn.weight_hh_l1"][1, 1] = float("nan")
    broken = save_checkpoint(tmp_path / "nan.safetensors", loaded.tensors, loaded.config)
    report = tmp_path / "show.json"
    result = run_cli("show", broken, "--json", report)
    written = strict_json(report.read_text(encoding="utf-8"))
    assert result.code == 0 and written["sets"][1]["norm_max"] is None
    assert written["non_finite"]["sets[1].norm_max"] == "NaN"
    assert "sets[1].norm_max (NaN)" in result.stderr and "written as null" in result.stderr
    assert "non_finite" not in strict_json(run_cli("show", model, "--json", "-").stdout)
    log = JsonLog(tmp_path / "run.log.jsonl", append=False)
    log.write({"event": "epoch", "train_loss": math.nan, "valid": {"perplexity": math.inf}})
    record = strict_json((tmp_path / "run.log.jsonl").read_text(encoding="utf-8"))
    assert record["train_loss"] is None and record["non_finite"] == {"train_loss": "NaN",
                                                                    "valid.perplexity": "Infinity"}


def test_finite_json_names_every_replaced_field() -> None:
    value, replaced = finite_json({"a": [1.0, -math.inf], "b": {"c": math.nan}, "d": "nan"})
    assert value == {"a": [1.0, None], "b": {"c": None}, "d": "nan"}
    assert replaced == {"a[1]": "-Infinity", "b.c": "NaN"}


# -- prune's advice -------------------------------------------------------------------------------------


def test_prune_at_zero_after_a_size_target_confirms_the_zeros(run_cli, tiny_lm: Path, tmp_path: Path) -> None:  # noqa: ANN001
    sized = tmp_path / "sized.safetensors"
    isscli.save(isscli.prune(isscli.PruneRequest(checkpoint=tiny_lm, target_hidden="4,3")).checkpoint, sized)
    confirm = run_cli("prune", sized, "--group-threshold", "0", "-o", tmp_path / "p.safetensors")
    assert confirm.code == 0 and "nothing more to zero: 4 group(s) were already exactly zero" in confirm.stderr
    assert "zeros are confirmed" in confirm.stderr and "larger" not in confirm.stderr
    fresh = run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", tmp_path / "q.safetensors")
    assert fresh.code == 0 and "nothing was zeroed" in fresh.stderr
    assert "give a larger --group-threshold" in fresh.stderr


# -- bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "words"), [
    ({"epochs": 10**6}, "`epochs` must be at most 100,000 (got 1,000,000)"),
    ({"epochs": 10**400}, "`epochs` must be at most 100,000 (got about 10^400)"),
    ({"batch_size": 10**9}, "`batch_size` must be at most 65,536"),
    ({"eval_batch_size": 10**9}, "`eval_batch_size` must be at most 65,536"),
    ({"bptt": 10**9}, "`bptt` must be at most 100,000"),
    ({"decay_after": 10**9}, "`decay_after` must be at most 100,000"),
    ({"save_every": 10**12}, "`save_every` must be at most 1,000,000,000"),
    ({"lr": 1e39}, "`lr` must be at most 3.40282e+38"),
    ({"lambda": 1e300}, "`group_lasso` must be at most 3.40282e+38"),
    ({"tau": 1e300}, "`weight_threshold` must be at most 3.40282e+38"),
    ({"divergence_factor": math.inf}, "`divergence_factor` must be > 1"),
])
def test_training_settings_have_upper_bounds(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(IsscliError) as caught:
        recipe("tiny").updated(changes)
    assert words in caught.value.message


def test_a_setting_above_its_bound_is_one_line_from_the_cli(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    result = run_cli("train", "--preset", "tiny", "--epochs", "1000000", "-o", tmp_path / "m.safetensors")
    assert result.code == 2 and "--epochs must be at most 100,000" in one_error(result.stderr)
    with pytest.raises(IsscliError, match=r"`batch_size` must be an int \(got '10', a string\)"):
        isscli.EvaluateRequest(checkpoint="x.safetensors", batch_size="10")  # type: ignore[arg-type]


def test_provenance_records_carry_their_schema_and_a_foreign_one_is_refused() -> None:
    from isscli.io.provenance import SCHEMA, check_provenance, operation_record

    record = operation_record("prune", {"group_threshold": 0.0})
    assert record["schema"] == SCHEMA == "isscli.provenance/1"
    check_provenance(record, "m.safetensors")
    check_provenance({k: v for k, v in record.items() if k != "schema"}, "m.safetensors")  # older: unversioned
    with pytest.raises(IsscliError, match=r'm.safetensors: provenance field "parent_provenance.schema" is text '
                                          r'"other.tool/9", not \'isscli.provenance/1\''):
        check_provenance({**record, "parent_provenance": {**record, "schema": "other.tool/9"}}, "m.safetensors")
