"""Failures are one line, and 70 means a bug: a machine's shortcomings and Ctrl-C are one line, the package
imports without torch (docs/security.md, "Failures are one line, and 70 means a bug")."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hardening import ROOT, subprocess_isscli
from tests.test_bad_input import assert_clean_failure


def test_no_space_anywhere_is_a_machine_problem_not_a_bug(run_cli, tiny_lm: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: object, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("isscli.cli.output.atomic_write_text", full)
    result = run_cli("prune", tiny_lm, "--group-threshold", "0", "-o", tmp_path / "p.safetensors", "--json",
                     tmp_path / "p.json")
    assert_clean_failure(result, "No space left on device")


def test_show_into_a_place_that_cannot_be_written_is_bad_input(run_cli, tiny_lm: Path) -> None:
    pytest.importorskip("matplotlib")
    assert_clean_failure(run_cli("show", tiny_lm, "-o", "/proc/isscli-pictures"), "/proc")


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
