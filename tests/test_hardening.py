"""Hardening: one set of rules for every output, checks that NaN cannot fool, bounded inputs, text printed as it
is, signals, scale; and a fuzz test of groups, prune and compact. docs/security.md says which test backs which
promise."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import isscli
from isscli.io.checkpoint import load_checkpoint, save_checkpoint
from isscli.iss.spec import check_spec, derive_spec, parse_spec
from tests.conftest import file_state, tiny_config, write_model, write_toy_corpus
from tests.test_bad_input import assert_clean_failure

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


# -- 1. every output under the same rules --------------------------------------------------------------------------


CASES = {
    "json over the input": (["prune", "{ckpt}", "--group-threshold", "0", "-o", "{out}", "--json", "{ckpt}"],
                            "is the input file"),
    "json over -o": (["prune", "{ckpt}", "--group-threshold", "0", "-o", "{out}", "--json", "{out}"],
                     "is also written as -o"),
    "json over -o, forced": (["compact", "{ckpt}", "-o", "{out}", "--json", "{out}", "--force"], "is also written"),
    "groups check json over the spec": (["groups", "check", "{spec}", "{ckpt}", "--json", "{spec}", "--force"],
                                        "is the input file"),
    "groups -o over the checked spec": (["groups", "{ckpt}", "--check", "{spec}", "-o", "{spec}", "--force"],
                                        "is the input file"),
    "prune -o over its spec": (["prune", "{ckpt}", "--group-threshold", "0", "--spec", "{spec}", "-o", "{spec}",
                                "--force"], "is the input file"),
    "show json over the input": (["show", "{ckpt}", "--json", "{ckpt}", "--force"], "is the input file"),
    "eval json over the input": (["eval", "{ckpt}", "--json", "{ckpt}", "--force"], "is the input file"),
    "bench json over the input": (["bench", "{ckpt}", "--json", "{ckpt}", "--force"], "is the input file"),
    "export json over -o": (["export", "{ckpt}", "-o", "{out}", "--json", "{out}"], "is also written as -o"),
    "an existing report without --force": (["groups", "check", "{spec}", "{ckpt}", "--json", "{old}"],
                                           "already exists"),
    "an existing report, -o not written first": (["prune", "{ckpt}", "--group-threshold", "0", "-o", "{out}",
                                                  "--json", "{old}"], "already exists"),
}


@pytest.mark.parametrize("case", CASES)
def test_no_output_replaces_an_input_another_output_or_a_file_without_force(run_cli, tiny_lm: Path, tmp_path: Path,
                                                                              case: str) -> None:
    spec = write_spec(tmp_path, tiny_lm)
    (tmp_path / "old.json").write_text("keep me")
    args, needle = CASES[case]
    paths = {"ckpt": tiny_lm, "out": tmp_path / "out.safetensors", "spec": spec, "old": tmp_path / "old.json"}
    before = file_state(tmp_path)
    result = run_cli(*[arg.format(**paths) for arg in args])
    assert_clean_failure(result, needle)
    assert file_state(tmp_path) == before  # checked before any work: not even -o was written


def test_reports_and_pictures_replace_files_only_with_force(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, tiny_lm)
    report, pictures = tmp_path / "check.json", tmp_path / "pictures"
    assert run_cli("groups", "check", spec, tiny_lm, "--json", report).code == 0
    assert_clean_failure(run_cli("groups", "check", spec, tiny_lm, "--json", report), "already exists")
    assert run_cli("groups", "check", spec, tiny_lm, "--json", report, "--force").code == 0
    pytest.importorskip("matplotlib")
    assert run_cli("show", tiny_lm, "-o", pictures).code == 0
    assert_clean_failure(run_cli("show", tiny_lm, "-o", pictures), "already exists")
    assert run_cli("show", tiny_lm, "-o", pictures, "--force").code == 0
    assert_clean_failure(run_cli("show", tiny_lm, "-o", pictures, "--json", pictures / "units.png", "--force"),
                         "units.png is also written as")


def test_no_command_writes_into_its_corpus(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    corpus = write_toy_corpus(tmp_path / "corpus", (20, 5, 5))
    before = file_state(corpus)
    result = run_cli("eval", tiny_lm, "--data", corpus, "--json", corpus / "ptb.test.txt", "--force")
    assert_clean_failure(result, "input folder")
    assert file_state(corpus) == before


# -- 2. non-finite values make checks fail --------------------------------------------------------------------------


def with_dead_unit_holding_nan(folder: Path) -> Path:
    """A model whose unit 0 of layer 0 reaches nothing (compaction removes it) and computes NaN."""
    checkpoint = load_checkpoint(write_model(folder / "clean.safetensors", tiny_config()))
    tensors = {name: tensor.clone() for name, tensor in checkpoint.tensors.items()}
    tensors["rnn.weight_hh_l0"][:, 0] = 0
    tensors["rnn.weight_ih_l1"][:, 0] = 0
    tensors["rnn.weight_ih_l0"][0, 0] = float("nan")  # unit 0's input gate: h_0 is NaN, and NaN × 0 is NaN
    return save_checkpoint(folder / "nan.safetensors", tensors, checkpoint.config)


def test_nan_in_a_removed_unit_fails_the_verification(run_cli, tmp_path: Path) -> None:
    model = with_dead_unit_holding_nan(tmp_path)
    result = run_cli("compact", model, "-o", tmp_path / "small.safetensors")
    assert_clean_failure(result, "NaN or infinite", code=1)
    assert not (tmp_path / "small.safetensors").exists()


def test_the_equivalence_check_reports_nan_not_zero() -> None:
    from isscli.iss.equivalence import compare

    same = torch.zeros(3)
    assert compare([(same, same)]) == (0.0, 0.0)
    difference, scale = compare([(same, same), (torch.tensor([float("nan"), 0.0]), torch.zeros(2))])
    assert difference != difference and scale != scale  # NaN: no tolerance accepts it


def test_eval_of_nan_weights_fails_instead_of_scoring_nan(run_cli, dense: Path, corpus: Path, tmp_path: Path) -> None:
    checkpoint = isscli.load(dense)
    checkpoint.tensors["decoder.bias"][3] = float("nan")
    checkpoint.path = None
    broken = isscli.save(checkpoint, tmp_path / "nan.safetensors")
    result = run_cli("eval", broken, "--data", corpus, "--batch-size", "4", "--json", tmp_path / "eval.json")
    assert_clean_failure(result, "decoder.bias", code=1)
    assert not (tmp_path / "eval.json").exists()


def test_show_and_groups_survive_non_finite_weights(run_cli, tmp_path: Path) -> None:
    model = with_dead_unit_holding_nan(tmp_path)
    checkpoint = load_checkpoint(model)
    checkpoint.tensors["rnn.weight_hh_l1"][1, 1] = float("inf")
    model = save_checkpoint(tmp_path / "inf.safetensors", checkpoint.tensors, checkpoint.config)
    assert run_cli("groups", model).code == 0
    result = run_cli("show", model, "--json", "-")
    assert result.code == 0, result.stderr
    pytest.importorskip("matplotlib")
    assert run_cli("show", model, "-o", tmp_path / "pictures").code == 0


# -- 3. verification in the checkpoint's own precision --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_compaction_is_verified_in_the_checkpoints_precision(tmp_path: Path, dtype: torch.dtype) -> None:
    config = tiny_config(vocab_size=300, embedding_size=100, hidden_sizes=[[200]])  # float32 sums differ here
    checkpoint = load_checkpoint(write_model(tmp_path / "m.safetensors", config))
    weights = isscli.Checkpoint({n: t.to(dtype) for n, t in checkpoint.tensors.items()}, checkpoint.config)
    pruned = isscli.prune(isscli.PruneRequest(checkpoint=weights, keep_fraction=0.5))
    small = isscli.compact(isscli.CompactRequest(checkpoint=pruned.checkpoint))
    verification = small.verification
    assert verification is not None
    expected = "float64" if dtype == torch.float64 else "float32"  # float16 and bfloat16 are exact in float32
    assert verification.dtype == expected
    assert verification.tolerance == pytest.approx(isscli.api.pruning.TOLERANCE[expected] *
                                                   max(1.0, verification.output_scale))
    assert verification.max_output_difference <= verification.tolerance
    assert {t.dtype for t in small.checkpoint.tensors.values()} == {dtype}
    assert small.hidden_sizes == [[100]]


# -- 4. import-pt keeps views, stores aliases once ------------------------------------------------------------------


def test_import_pt_keeps_transposes_and_strided_views_and_stores_a_true_alias_once(run_cli, tmp_path: Path) -> None:
    square, line = torch.randn(4, 4), torch.randn(10)
    state = {"w": square, "w_t": square.t(), "every_other": line[::2], "first_half": line[:5], "tied": square}
    torch.save(state, tmp_path / "model.pt")
    assert run_cli("import-pt", tmp_path / "model.pt", "-o", tmp_path / "model.safetensors").code == 0
    tensors = load_checkpoint(tmp_path / "model.safetensors").tensors
    assert sorted(tensors) == ["every_other", "first_half", "w", "w_t"]  # "tied" is "w": stored once
    for name in tensors:
        assert torch.equal(tensors[name], state[name]), name


# -- 5. text from files and arguments, printed as it is -------------------------------------------------------------


def test_brackets_in_file_names_are_printed_not_parsed(run_cli, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model[v2].safetensors", tiny_config())
    result = run_cli("prune", model, "--group-threshold", "0", "--json", tmp_path / "report[bold].json")
    assert result.code == 0, result.stderr
    assert "model[v2].pruned.safetensors" in result.stderr and "report[bold].json" in result.stderr


def test_set_names_with_markup_and_escape_codes_are_shown_escaped(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    spec = json.loads(write_spec(tmp_path, tiny_lm).read_text())
    spec["sets"][0]["name"], spec["sets"][1]["name"] = "[/x]", "evil\x1b[2J"
    (tmp_path / "odd.json").write_text(json.dumps(spec))
    for command in (["show", tiny_lm, "--spec", tmp_path / "odd.json"], ["groups", tiny_lm, "--check",
                                                                        tmp_path / "odd.json"]):
        result = run_cli(*command)
        assert result.code == 0, result.stderr
        assert "[/x]" in result.stdout and "evil\\x1b[2J" in result.stdout
        assert "\x1b" not in result.stdout + result.stderr


def test_escape_codes_in_tensor_names_and_paths_never_reach_the_terminal(run_cli, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(write_model(tmp_path / "m.safetensors", tiny_config(), with_config=False))
    renamed = {name.replace("rnn.", "r\x1b[2J."): tensor for name, tensor in checkpoint.tensors.items()}
    model = save_checkpoint(tmp_path / "renamed.safetensors", renamed)
    result = run_cli("groups", model)
    assert result.code == 0, result.stderr
    assert "r\\x1b[2J" in result.stdout and "\x1b" not in result.stdout
    missing = run_cli("compact", tmp_path / "gone\x1b]0;title\x07.safetensors")
    assert_clean_failure(missing, "gone\\x1b]0;title\\x07.safetensors")
    assert "\x1b" not in missing.stderr and "\x07" not in missing.stderr


# -- 6. metadata that contradicts the tensors -----------------------------------------------------------------------


def test_a_tied_config_with_a_decoder_of_its_own_is_refused(run_cli, tmp_path: Path) -> None:
    tied = load_checkpoint(write_model(tmp_path / "tied.safetensors", tiny_config(embedding_size=5, tie_weights=True)))
    tensors = {**tied.tensors, "decoder.weight": torch.randn_like(tied.tensors["encoder.weight"])}
    contradiction = save_checkpoint(tmp_path / "both.safetensors", tensors, tied.config)
    assert_clean_failure(run_cli("compact", contradiction, "-o", tmp_path / "c.safetensors"),
                         "decoder.weight of its own")
    tensors["decoder.weight"] = tensors["encoder.weight"].clone()  # a copy says the same: no contradiction
    copy = save_checkpoint(tmp_path / "copy.safetensors", tensors, tied.config)
    assert run_cli("compact", copy, "-o", tmp_path / "c.safetensors").code == 0


# -- 7. permissions --------------------------------------------------------------------------------------------------


def test_new_outputs_follow_the_umask_and_replaced_ones_keep_their_mode(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    output, report = tmp_path / "out.safetensors", tmp_path / "out.json"
    previous = os.umask(0o077)
    try:
        assert run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", output, "--json", report).code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(output.stat().st_mode) == 0o600 and stat.S_IMODE(report.stat().st_mode) == 0o600
    output.chmod(0o640)
    previous = os.umask(0o022)
    try:
        assert run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", output, "--force").code == 0
        assert stat.S_IMODE(output.stat().st_mode) == 0o640  # replaced: its mode kept
        assert run_cli("compact", tiny_lm, "-o", tmp_path / "new.safetensors").code == 0
        assert stat.S_IMODE((tmp_path / "new.safetensors").stat().st_mode) == 0o644
    finally:
        os.umask(previous)


# -- 8. one writer per output ----------------------------------------------------------------------------------------


@contextmanager
def held_elsewhere(output: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ``output`` (as a running isscli command would) until the block ends."""
    code = ("import sys, time\nfrom isscli.io.atomic import output_lock\nwith output_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(120)")
    process = subprocess.Popen([sys.executable, "-c", code, str(output)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_second_writer_is_refused_while_the_first_runs_and_a_crash_leaves_no_lock(run_cli, tiny_lm: Path,
                                                                                   tmp_path: Path) -> None:
    output = tmp_path / "pruned.safetensors"
    with held_elsewhere(output) as holder:
        result = run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", output)
        assert_clean_failure(result, f"being written by another isscli run (process {holder.pid})")
        assert not output.exists()
        holder.kill()  # a crash: the OS lets go of the lock
        holder.wait()
        assert run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", output).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.safetensors", "pruned.safetensors"]  # lock file gone


def test_a_training_run_holds_its_output_for_its_whole_duration(run_cli, corpus: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    with held_elsewhere(output):
        result = run_cli("train", "--preset", "tiny", "--data", corpus, "-o", output, *QUICK)
        assert_clean_failure(result, "being written by another isscli run")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []  # no log, resume file, model


def test_a_sweep_folder_has_one_writer(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    with held_elsewhere(tmp_path / "sweep"):
        result = run_cli("sweep", tiny_lm, "--lambda", "0.001", "-o", tmp_path / "sweep", "--epochs", "1")
        assert_clean_failure(result, "being written by another isscli run")
    assert not (tmp_path / "sweep").exists()


# -- 9. inputs checked before any work --------------------------------------------------------------------------------


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


# -- 10. user mistakes are not internal errors ------------------------------------------------------------------------


def test_a_full_disk_is_a_one_line_error_and_leaves_no_temp_file(tiny_lm: Path, tmp_path: Path) -> None:
    prelude = ("import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))")  # writes past 2 kB fail (EFBIG)
    done = subprocess_isscli("prune", tiny_lm, "--group-threshold", "0", "-o", tmp_path / "out.safetensors",
                             prelude=prelude)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "writing" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.safetensors"]


def test_no_space_anywhere_is_a_machine_problem_not_a_bug(run_cli, tiny_lm: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: object, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("isscli.cli.output.atomic_write_text", full)
    result = run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", tmp_path / "p.safetensors", "--json",
                     tmp_path / "p.json")
    assert_clean_failure(result, "No space left on device")


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


def test_show_into_a_place_that_cannot_be_written_is_bad_input(run_cli, tiny_lm: Path) -> None:
    pytest.importorskip("matplotlib")
    assert_clean_failure(run_cli("show", tiny_lm, "-o", "/proc/isscli-pictures"), "/proc")


STATES = {
    "integer keys": (lambda: {0: torch.zeros(2), 1: torch.ones(2)}, "must be tensor names (strings), not int"),
    "sparse": (lambda: {"w": torch.eye(3).to_sparse()}, "'w' is sparse (sparse_coo)"),
    "csr": (lambda: {"w": torch.eye(3).to_sparse_csr()}, "'w' is sparse (sparse_csr)"),
    "meta": (lambda: {"w": torch.empty(3, 3, device="meta")}, "'w' has no data (a meta tensor)"),
    "quantized": (lambda: {"w": torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.qint8)}, "dtype qint8"),
    "complex": (lambda: {"w": torch.zeros(3, dtype=torch.complex64)}, "dtype complex64"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: sparse CSR is beta, quantized tensors are deprecated
@pytest.mark.parametrize("state", STATES)
def test_import_pt_refuses_what_it_cannot_store(run_cli, tmp_path: Path, state: str) -> None:
    make, needle = STATES[state]
    torch.save(make(), tmp_path / "model.pt")
    result = run_cli("import-pt", tmp_path / "model.pt", "-o", tmp_path / "model.safetensors")
    assert_clean_failure(result, needle)
    assert not (tmp_path / "model.safetensors").exists()


def test_random_bytes_that_start_like_a_pickle_are_not_called_torch_save(run_cli, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x80\x02" + os.urandom(254))
    result = run_cli("prune", corrupt, "--group-threshold", "0.1")
    assert_clean_failure(result, "not a readable safetensors file")
    legacy = tmp_path / "legacy.safetensors"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert_clean_failure(run_cli("groups", legacy), "torch.save pickle")


def test_sigterm_cleans_up_like_ctrl_c(corpus: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    process = subprocess.Popen(
        [sys.executable, "-m", "isscli", "train", "--preset", "tiny", "--data", str(corpus), "-o", str(output),
         "--epochs", "50", "--batch-size", "4", "--bptt", "8", "--eval-batch-size", "4", "--device", "cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not output.with_suffix(".log.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside the training loop
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (130, 143), (process.returncode, stderr[-1000:])
    assert "Traceback" not in stderr and "interrupted" in stderr.strip().splitlines()[-1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".lock"))]


def test_ctrl_c_while_torch_imports_is_one_line(tmp_path: Path) -> None:
    prelude = ("import sys\nclass Interrupt:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'torch':\n            raise KeyboardInterrupt\n"
               "sys.meta_path.insert(0, Interrupt())")
    done = subprocess_isscli("groups", tmp_path / "absent.safetensors", prelude=prelude)
    assert done.returncode == 130 and done.stderr == "interrupted: no output was written\n", done.stderr


def test_the_package_imports_without_torch_and_exports_as_before() -> None:
    code = ("import sys, isscli, isscli.cli.entry\nassert 'torch' not in sys.modules\nnames = {}\n"
            "exec('from isscli import *', names)\nassert set(isscli.__all__) <= set(names) | {'__version__'}\n"
            "assert callable(isscli.finetune) and 'prune' in dir(isscli)\n"
            "assert isscli.FinetuneRequest.__name__ == 'FinetuneRequest'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'isscli = "isscli.cli.entry:main"' in (ROOT / "pyproject.toml").read_text()


# -- 11. scale --------------------------------------------------------------------------------------------------------


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


# -- the fuzz test ----------------------------------------------------------------------------------------------------

NAMES = ["encoder.weight", "decoder.weight", "decoder.bias", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
         "rnn.weight_ih_l1", "rnn.weight_hh_l1", "mask.rnn.weight_hh_l0", "x[/x]", "e\x1b[2J"]
DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "BOOL": 1, "U8": 1, "F8_E4M3": 1, "C64": 8, "XX": 4}
NUMBERS = st.one_of(st.integers(-2, 12), st.sampled_from([2**31, 2**63, 2**64 + 5, 10**30]),
                    st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none())


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A valid 8-byte header length, a random or garbled JSON header, and data of about the right size."""
    header: dict = {}
    offset = 0
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=6, unique=True)):
        dtype = draw(st.sampled_from(list(DTYPES)))
        shape = draw(st.lists(st.integers(0, 8), max_size=3))
        size = DTYPES[dtype] * int(torch.Size(shape).numel()) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + max(size, 0)]}
        offset += max(size, 0)
    if draw(st.booleans()):
        config = draw(st.fixed_dictionaries({}, optional={
            "family": st.sampled_from(["lm", "classifier", "x"]), "cell": st.sampled_from(["lstm", "gru", "y"]),
            "vocab_size": NUMBERS, "embedding_size": NUMBERS, "tie_weights": NUMBERS, "dropout": NUMBERS,
            "hidden_sizes": st.lists(st.lists(st.integers(-1, 8), max_size=2), max_size=2)}))
        header["__metadata__"] = {"isscli.config": json.dumps(config)}
    text = json.dumps(header).encode()
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.binary(max_size=3)) + text[cut + 1:]
    return struct.pack("<Q", len(text)) + text + draw(st.binary(min_size=offset, max_size=offset))


SLICES = st.fixed_dictionaries({}, optional={
    "tensor": st.sampled_from(["rnn.weight_hh_l0", "rnn.weight_ih_l1", "decoder.weight", "nope"]) | NUMBERS,
    "dim": NUMBERS, "offset": NUMBERS, "blocks": NUMBERS, "block_stride": NUMBERS,
    "role": st.sampled_from(["producer", "receiver"]) | NUMBERS, "penalize": NUMBERS})
SETS = st.fixed_dictionaries({"name": st.text(max_size=4) | NUMBERS, "components": NUMBERS,
                              "slices": st.lists(SLICES, max_size=3) | NUMBERS}, optional={"multiplier": NUMBERS})
ENTRIES = st.fixed_dictionaries({}, optional={
    "var_name": st.sampled_from(["rnn.weight_hh_l0", "Model/kernel:0"]) | NUMBERS, "axis": NUMBERS,
    "start": NUMBERS, "end": NUMBERS, "multi": NUMBERS})
SPECS = st.one_of(
    st.fixed_dictionaries({"format": st.just("isscli.groups") | NUMBERS, "version": st.just(1) | NUMBERS,
                           "sets": st.lists(SETS, max_size=3) | NUMBERS}),
    st.fixed_dictionaries({"groups": st.lists(st.lists(ENTRIES, max_size=3) | NUMBERS, max_size=2) | NUMBERS}),
    st.recursive(NUMBERS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=8),
)


@st.composite
def edited_specs(draw: st.DrawFn) -> dict:
    """The fuzz model's own spec (:func:`fuzz_model`) with one field of a set or a slice changed or dropped."""
    spec = derive_spec(isscli.new_model(tiny_config()).tensors).to_json()
    iss = draw(st.sampled_from(spec["sets"]))
    target = draw(st.sampled_from([iss, *iss["slices"]]))
    field = draw(st.sampled_from(sorted(target) + ["block_stride", "multiplier"]))
    if draw(st.booleans()):
        target.pop(field, None)
    else:
        target[field] = draw(NUMBERS | st.integers(0, 30))
    return spec


INPUTS = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("header"), safetensors_files()),
    st.tuples(st.just("spec"), (SPECS | edited_specs()).map(lambda spec: json.dumps(spec).encode())),
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(INPUTS, st.sampled_from(["groups", "prune", "compact"]))
def test_fuzz_groups_prune_compact(run_cli, fuzz_model: bytes, given_input: tuple[str, bytes], command: str) -> None:
    kind, blob = given_input
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        checkpoint, spec = folder / "in.safetensors", folder / "spec.json"
        checkpoint.write_bytes(blob if kind != "spec" else fuzz_model)
        if kind == "spec":
            spec.write_bytes(blob)
        inputs = file_state(folder)
        output, report = folder / "out.safetensors", folder / "report.json"
        with_spec = ["--spec", spec] if kind == "spec" else []
        args = {"groups": ["groups", checkpoint, *(["--check", spec] if kind == "spec" else []), "--json", report],
                "prune": ["prune", checkpoint, "--keep-fraction", "0.5", *with_spec, "-o", output, "--json", report],
                "compact": ["compact", checkpoint, *with_spec, "-o", output, "--json", report]}[command]
        result = run_cli(*args)
        assert result.code in (0, 1, 2), (result.code, result.stderr)
        assert "Traceback" not in result.stderr
        if result.code:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        after = file_state(folder)
        assert {name: after[name] for name in inputs} == inputs  # inputs byte-identical
        written = {"groups": {"report.json"}, "prune": {"out.safetensors", "report.json"},
                   "compact": {"out.safetensors", "report.json"}}[command] if result.code == 0 else set()
        assert set(after) - set(inputs) == written  # no temp file, no lock file, nothing half-written


@pytest.fixture(scope="module")
def fuzz_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small LM checkpoint, to fuzz specs against."""
    model = isscli.new_model(tiny_config())
    return isscli.save(model, tmp_path_factory.mktemp("fuzz") / "lm.safetensors").read_bytes()
