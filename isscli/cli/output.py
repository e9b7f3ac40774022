"""How commands talk to people and to CI: rich tables on stdout, messages on stderr, JSON reports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isscli.io.atomic import atomic_write_text
from isscli.io.jsonfile import finite_json
from isscli.observer import SilentObserver

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JSON_HELP = "Write the report as JSON to this file ('-' for stdout, which replaces the table)."
#: Characters a terminal would obey rather than show: C0/C1 controls (ESC starts colour and cursor codes), DEL,
#: zero-width and bidirectional overrides, line and paragraph separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def visible(text: object) -> str:
    """Text from a file or an argument with its control characters shown, not obeyed: ESC as ``\\x1b``."""
    return CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", str(text))


def safe(text: object) -> str:
    """Text from a file or an argument, ready for Rich markup: control characters shown, ``[…]`` printed as is."""
    return escape(visible(text))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table with right-aligned numbers, the house style of every report.

    Cells fold rather than end in "…": in a narrow terminal (80 columns) a long name or number
    wraps onto the next line, and is never cut.
    """
    result = Table(title=safe(title), title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        for index, value in enumerate(row):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                result.columns[index].justify = "right"
        result.add_row(*[format_value(value) for value in row])
    return result


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "\n".join(safe(line) for line in str(value).split("\n"))  # multi-line cells stay multi-line


def emit(
    report: dict[str, Any], json_path: Path | None, render: Callable[[], None], schema: str | None = None
) -> None:
    """Show ``report`` to people (``render``) and/or write it as JSON for machines, versioned by ``schema``
    (``isscli.<command>/<version>``: a report's fields change only with its version).

    The JSON is always valid: a NaN or an infinity (which JSON lacks, and CI tools' parsers refuse) is written as
    null, and ``non_finite`` maps each such field to what it held; a note says so."""
    if schema is not None:
        report = {"schema": schema, **report}
    if json_path is not None:
        report, replaced = finite_json(report)
        if replaced:
            report["non_finite"] = replaced
            fields = ", ".join(f"{field} ({value})" for field, value in list(replaced.items())[:5])
            more = f" and {len(replaced) - 5:,} more" if len(replaced) > 5 else ""
            note(f"not finite, written as null in the JSON report (listed under non_finite): {fields}{more}",
                 warning=True)
    if json_path is not None and str(json_path) == "-":
        print(json.dumps(report, indent=2, allow_nan=False))
        return
    render()
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report, indent=2, allow_nan=False) + "\n")
        note(f"report written to {json_path}")


def note(message: str, warning: bool = False) -> None:
    """A progress or result line for people, on stderr so stdout stays parseable (``message`` is plain text)."""
    err_console.print(f"[yellow]{safe(message)}[/]" if warning else safe(message), soft_wrap=True)


class Notes(SilentObserver):
    """The observer of commands without a progress bar: the library's notes, on stderr."""

    def note(self, message: str, warning: bool = False) -> None:
        note(message, warning)
