"""Every bad input: one line on stderr naming problem and fix, nonzero exit, no traceback, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import isscli.models.checkpoint
from isscli.iss.spec import derive_spec
from isscli.models.checkpoint import load_checkpoint
from tests.conftest import file_state, is_root


def assert_clean_failure(result, needle: str, code: int = 2) -> None:
    assert result.code == code, (result.code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert needle in lines[0], lines[0]
    assert " — " in lines[0], "the message should say how to fix it"


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(json.dumps(spec))
    return path


def native_spec(tiny_lm: Path) -> dict:
    return derive_spec(load_checkpoint(tiny_lm).tensors).to_json()


@pytest.mark.parametrize("command", [["groups"], ["prune", "--group-threshold", "0.1"], ["compact"]])
def test_missing_checkpoint(run_cli, tmp_path: Path, command: list[str]) -> None:
    result = run_cli(command[0], tmp_path / "absent.safetensors", *command[1:])
    assert_clean_failure(result, "not found")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint(run_cli, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(256))
    before = file_state(tmp_path)
    assert_clean_failure(run_cli("prune", corrupt, "--group-threshold", "0.1"), "not a readable safetensors file")
    assert file_state(tmp_path) == before


def test_truncated_checkpoint(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_lm.read_bytes()[: tiny_lm.stat().st_size // 2])
    before = file_state(tmp_path)
    assert_clean_failure(run_cli("compact", truncated), "not a readable safetensors file")
    assert file_state(tmp_path) == before


def test_torch_pickle_gets_a_conversion_hint(run_cli, tmp_path: Path) -> None:
    import torch

    pickle = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, pickle)
    assert_clean_failure(run_cli("groups", pickle), "torch.save pickle")


def test_spec_naming_a_missing_tensor(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    spec = native_spec(tiny_lm)
    spec["sets"][0]["slices"][0]["tensor"] = "rnn.weight_ih_l9"
    path = write_spec(tmp_path / "spec.json", spec)
    before = file_state(tmp_path)
    assert_clean_failure(run_cli("prune", tiny_lm, "--spec", path, "--group-threshold", "0.1"), "'rnn.weight_ih_l9'")
    assert file_state(tmp_path) == before


def test_index_out_of_range(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    spec = native_spec(tiny_lm)
    spec["sets"][1]["slices"][-1]["offset"] = 3  # decoder has 5 columns: 3 + 4 is out of range
    path = write_spec(tmp_path / "spec.json", spec)
    assert_clean_failure(run_cli("compact", tiny_lm, "--spec", path), "out of range")


def test_sets_of_unequal_length(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    authors = {
        "groups": [
            [
                {"var_name": "rnn.weight_hh_l0", "multi": 1, "axis": 0, "start": 0, "end": 6},
                {"var_name": "rnn.weight_ih_l1", "multi": 1, "axis": 0, "start": 0, "end": 5},
            ]
        ]
    }
    path = write_spec(tmp_path / "authors.json", authors)
    assert_clean_failure(run_cli("groups", tiny_lm, "--check", path), "unequal lengths")


def test_overlapping_sets(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    spec = native_spec(tiny_lm)
    spec["sets"][1]["slices"].append({"tensor": "rnn.weight_ih_l1", "dim": 1, "offset": 1})
    path = write_spec(tmp_path / "spec.json", spec)
    assert_clean_failure(run_cli("groups", "check", path, tiny_lm), "overlap")


def test_spec_that_is_not_json(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{ not json")
    assert_clean_failure(run_cli("prune", tiny_lm, "--spec", path, "--group-threshold", "0.1"), "not valid JSON")


def test_spec_of_unknown_shape(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    path = write_spec(tmp_path / "spec.json", {"hello": 1})
    assert_clean_failure(run_cli("compact", tiny_lm, "--spec", path), "neither an isscli spec")


def test_output_equal_to_input(run_cli, tiny_lm: Path) -> None:
    before = tiny_lm.read_bytes()
    result = run_cli("prune", tiny_lm, "--group-threshold", "0.1", "-o", tiny_lm, "--force")
    assert_clean_failure(result, "is the input file")
    assert tiny_lm.read_bytes() == before


def test_existing_output_needs_force(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    existing = tmp_path / "out.safetensors"
    existing.write_bytes(b"keep me")
    assert_clean_failure(run_cli("compact", tiny_lm, "-o", existing), "already exists")
    assert existing.read_bytes() == b"keep me"


def test_missing_output_folder(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    assert_clean_failure(run_cli("compact", tiny_lm, "-o", tmp_path / "nowhere" / "x.safetensors"), "does not exist")


def test_unwritable_output_folder(run_cli, tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if is_root():  # root may write anywhere: make the folder refuse, as a read-only one would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode))
    else:
        locked.chmod(0o555)
    try:
        result = run_cli("prune", tiny_lm, "--group-threshold", "0.1", "-o", locked / "x.safetensors")
        assert_clean_failure(result, "not writable")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_failure_while_creating_the_temp_file(run_cli, tiny_lm: Path, tmp_path: Path, monkeypatch) -> None:
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert_clean_failure(run_cli("compact", tiny_lm, "-o", tmp_path / "x.safetensors"), "cannot write")
    assert not (tmp_path / "x.safetensors").exists()


def test_ctrl_c_during_write_leaves_nothing(run_cli, tiny_lm: Path, tmp_path: Path, monkeypatch) -> None:
    def interrupted_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(isscli.models.checkpoint, "save_file", interrupted_save)
    before = file_state(tmp_path)
    result = run_cli("prune", tiny_lm, "--group-threshold", "0.1", "-o", tmp_path / "out.safetensors")
    assert result.code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert file_state(tmp_path) == before  # no output, no temp file, input unchanged


def test_usage_error_is_one_line(run_cli, tiny_lm: Path) -> None:
    assert_clean_failure(run_cli("prune", tiny_lm), "--group-threshold")


def test_debug_shows_the_traceback(tiny_lm: Path, tmp_path: Path) -> None:
    from isscli.cli.main import main
    from isscli.io.errors import CheckpointError

    with pytest.raises(CheckpointError):
        main(["--debug", "groups", str(tmp_path / "absent.safetensors")])


@pytest.mark.parametrize(
    "flaw, needle",
    [("forgotten", "do not form a consistent model"), ("mislabelled", "outputs differ")],
)
def test_compaction_that_would_change_outputs_is_refused(
    run_cli, tiny_lm: Path, tmp_path: Path, flaw: str, needle: str
) -> None:
    """A spec that forgets a receiver, or calls one a producer, would make compaction inexact."""
    import torch

    from isscli.iss.spec import parse_spec
    from isscli.iss.surgery import zero_components
    from isscli.models.checkpoint import save_checkpoint

    loaded = load_checkpoint(tiny_lm)
    raw = native_spec(tiny_lm)
    first = raw["sets"][0]
    receiver = next(s for s in first["slices"] if s["tensor"] == "rnn.weight_ih_l1")
    zero_components(loaded.tensors, parse_spec(raw).sets[0], torch.tensor([True, False, False, False, False, False]))
    if flaw == "forgotten":
        first["slices"].remove(receiver)
    else:
        receiver.update(role="producer", penalize=False)
        loaded.tensors["rnn.weight_ih_l1"][:, 0] = 0.5  # unit 0 still feeds layer 2
    spec_path = write_spec(tmp_path / "flawed.json", raw)
    pruned = save_checkpoint(tmp_path / "pruned.safetensors", loaded.tensors, loaded.config)
    before = file_state(tmp_path)
    result = run_cli("compact", pruned, "--spec", spec_path, "-o", tmp_path / "small.safetensors")
    assert_clean_failure(result, needle, code=1)
    assert "receiver" in result.stderr
    assert file_state(tmp_path) == before
