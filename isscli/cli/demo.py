"""``isscli demo``: what ISS buys, on an embedded default, in about two minutes on two CPU cores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

from rich.rule import Rule

from isscli.cli.options import option
from isscli.cli.output import console, safe, table
from isscli.cli.progress import ProgressDisplay

if TYPE_CHECKING:
    from isscli.api.demonstration import DemoResult


def demo(
    data: Annotated[Optional[Path], option("data", "Corpus folder (PTB format). Default: searched.")] = None,
    folder: Annotated[Path, option("folder", "Folder for the demo outputs (new, or one the demo wrote: it replaces "
                                             "them).")] = Path("demo-out"),
    batches: Annotated[Optional[int], option("batches")] = None,
) -> None:
    """Train a dense LM, learn ISS to a size target, compact and bench it against a fairly fine-tuned dense model."""
    from isscli.api import demonstration  # the library, and torch, only when the command runs
    from isscli.api.demonstration import BATCHES, DemoRequest

    with ProgressDisplay() as display:
        result = demonstration.demo(DemoRequest(data=data, folder=folder, batches=batches or BATCHES), display)
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
