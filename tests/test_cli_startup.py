"""`isscli --help` and every command's `--help` answer without importing torch (issue 22: the library, and torch
with it, is imported only when a command runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

from isscli.cli.main import app

PROBE = """
import sys
from isscli.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
print("torch" in sys.modules)
"""


def commands() -> list[list[str]]:
    """Every command line that has a --help: the root, each command, each subcommand."""
    group = typer.main.get_command(app)
    context = typer.Context(group)
    found = [[]]
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        found.append([name])
        if hasattr(command, "list_commands"):
            found += [[name, sub] for sub in command.list_commands(context)]
    return found


@pytest.mark.parametrize("words", commands(), ids=lambda words: " ".join(words) or "isscli")
def test_help_imports_no_torch(words: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *words, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip().splitlines()[-1] == "False", f"isscli {' '.join(words)} --help imported torch"
    assert "Usage" in result.stdout


def test_the_demos_help_says_its_default_batches() -> None:
    from isscli.api.demonstration import BATCHES

    result = subprocess.run([sys.executable, "-m", "isscli", "demo", "--help"], capture_output=True, text=True,
                            timeout=60, env={"COLUMNS": "200", "PATH": ""})
    assert f"default {BATCHES};" in result.stdout
