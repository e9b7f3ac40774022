"""Every ```python block of the README and docs/api.md runs, in order, in a fresh folder: the examples cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/api.md")


def python_blocks(document: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", document.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_python_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(ROOT / name)
    assert blocks, f"{name} has no ```python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"{name}, example {number}", "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as error:  # noqa: BLE001 - say which example broke
            pytest.fail(f"{name}, example {number} failed: {type(error).__name__}: {error}\n{block}")
