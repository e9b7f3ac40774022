"""Every ``>>>`` example in isscli's docstrings runs, as it is written.

The examples of each docstring run with doctest in the globals of their own module, in a fresh folder (an
example that writes a file writes it there). An example that needs files, or names it does not define, cannot run
as it is and belongs in a plain ``::`` example; those not yet rewritten are listed in :data:`PENDING`, as strictly
expected failures, so that an entry has to go when its docstring is rewritten (or made to run).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Docstrings whose examples cannot run as they are: what each needs (none today: those that need files are
#: plain ``Example::`` blocks).
PENDING: dict[str, str] = {}


def modules_with_examples() -> list[str]:
    names = []
    for path in sorted((ROOT / "isscli").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "isscli.__main__" and ">>>" in path.read_text(encoding="utf-8"):
            names.append(name)
    return names


def docstring_tests() -> list[doctest.DocTest]:
    """One doctest per docstring with examples, in every isscli module that has any."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for name in modules_with_examples() for test in finder.find(importlib.import_module(name), name)
            if test.examples]


TESTS = docstring_tests()


def marks(name: str) -> list[pytest.MarkDecorator]:
    if name not in PENDING:
        return []
    return [pytest.mark.xfail(reason=f"needs {PENDING[name]}: to become a plain `::` example", strict=True)]


@pytest.mark.parametrize("test", [pytest.param(test, id=test.name, marks=marks(test.name)) for test in TESTS])
def test_the_examples_of_each_docstring_run(test: doctest.DocTest, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report: list[str] = []
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def test_every_pending_docstring_still_has_examples() -> None:
    """An entry of PENDING whose docstring was rewritten as a plain example goes from the list."""
    assert not set(PENDING) - {test.name for test in TESTS}


def test_examples_are_found_wherever_they_are_written() -> None:
    names = {test.name for test in TESTS}
    assert {"isscli.learn.your_loop.loop.IssTraining", "isscli.live.trace.derive_module_spec",
            "isscli.nn.recurrent.LSTM", "isscli.learn.your_loop.budget.compacted_parameters"} <= names
