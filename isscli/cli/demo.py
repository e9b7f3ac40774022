"""``isscli demo``: what ISS buys, on an embedded default, in about two minutes on two CPU cores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.rule import Rule

from isscli.cli.output import console, safe, table
from isscli.cli.progress import ProgressDisplay

if TYPE_CHECKING:
    from isscli.api.demonstration import DemoResult


def demo(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Corpus folder (PTB format). Default: searched."),
    folder: Path = typer.Option(Path("demo-out"), "-o", "--output",
                                help="Folder for the demo outputs (new, or one the demo wrote: it replaces them)."),
    batches: Optional[int] = typer.Option(None, "--batches", min=1,
                                          help="Training batches per epoch (default 60; fewer: faster, worse)."),
) -> None:
    """Train a dense LM, learn ISS to a size target, compact and bench it against a fairly fine-tuned dense model."""
    from isscli.api.demonstration import (  # the library, and torch, only when the command runs
        BATCHES,
        DemoRequest,
        run_demo,
    )

    with ProgressDisplay() as display:
        result = run_demo(DemoRequest(data=data, folder=folder, batches=batches or BATCHES), display)
    summarize(result, folder)


def summarize(result: DemoResult, folder: Path) -> None:
    """One table (80 columns): sizes, parameters, test perplexity and measured speed of the three models."""
    from isscli.api.demonstration import GOAL_LOSS, GOAL_SPEEDUP

    rows = [(row.model, " × ".join(str(sum(layer)) for layer in row.hidden_sizes), row.parameters,
             round(row.perplexity, 2), round(row.milliseconds, 2) if row.milliseconds else "—",
             f"{row.speedup:.2f}×" if row.speedup else "—") for row in result.rows]
    console.print(Rule("summary"))
    title = f"test perplexity on {safe(Path(result.data).name)} ({result.origin}); ms per batch of 10 × 30 steps"
    console.print(table(title, ("model", "hidden", "parameters", "test ppl", "ms", "speed-up"), rows))
    verdict = "met" if result.goals_met else "NOT met"
    console.print(f"ISS: [bold]{result.speedup:.2f}× faster[/], test perplexity {result.loss:+.1%} against the dense "
                  f"model fine-tuned for as many batches (goals ≥ {GOAL_SPEEDUP:g}× and ≤ {GOAL_LOSS:+.0%}: {verdict})")
    console.print(f"checkpoints and JSON reports: {safe(folder)}/")
