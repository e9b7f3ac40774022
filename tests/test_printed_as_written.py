"""What isscli prints is what the files say: brackets are not Rich markup, escape codes are shown, not obeyed
(docs/security.md, "What it prints is what the files say")."""

from __future__ import annotations

import json
from pathlib import Path

from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_config, write_model
from tests.hardening import write_spec
from tests.test_bad_input import assert_clean_failure


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
