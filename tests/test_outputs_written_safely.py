"""Every output under the same rules: never an input or another output, replaced only with --force, written
atomically with the umask's mode, one writer at a time (docs/security.md, "It writes only the outputs you name")."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import file_state, write_toy_corpus
from tests.hardening import QUICK, ROOT, subprocess_isscli, write_spec
from tests.test_bad_input import assert_clean_failure

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


# -- permissions -------------------------------------------------------------------------------------------------------


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


# -- one writer per output ---------------------------------------------------------------------------------------------


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


# -- a full disk, SIGTERM ----------------------------------------------------------------------------------------------


def test_a_full_disk_is_a_one_line_error_and_leaves_no_temp_file(tiny_lm: Path, tmp_path: Path) -> None:
    prelude = ("import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))")  # writes past 2 kB fail (EFBIG)
    done = subprocess_isscli("prune", tiny_lm, "--group-threshold", "0", "-o", tmp_path / "out.safetensors",
                             prelude=prelude)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "writing" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.safetensors"]


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
