"""A live view of training: a progress bar per epoch on stderr, one result line per epoch on stdout."""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from isscli.cli.output import console, err_console, safe

if TYPE_CHECKING:
    from isscli.learn.run import EpochReport


def format_alive(alive: dict[str, int], components: dict[str, int], smallest: dict[str, float] | None = None) -> str:
    """``rnn.l0 180/200`` per set; with ``smallest``, the smallest nonzero group norm, which a threshold must pass."""
    parts = []
    for name in alive:
        floor = f" (‖w‖ ≥ {smallest[name]:.2g})" if smallest and alive[name] else ""
        parts.append(f"{safe(name)} {alive[name]}/{components[name]}{floor}")
    return " ".join(parts)


def epoch_line(report: EpochReport, epochs: int) -> str:
    """``epoch 3/13  lr 1  train ppl 150.2  valid ppl 140.1  ISS rnn.l0 180/200 …  sparsity 12.3%  32 s``."""
    valid = report.valid
    metric = valid.metric.name
    if metric == "accuracy":
        score = f"valid acc {valid.accuracy:.2%} (loss {valid.loss:.3f})"
    elif metric == "loss":
        score = f"valid loss {valid.loss:.4g}"
    else:
        score = f"valid ppl {valid.perplexity:.2f}"
    train = (f"train ppl {report.train_perplexity:.2f}" if metric == "perplexity"
             else f"train loss {report.train_loss:.4g}")
    return (
        f"epoch {report.epoch:>{len(str(epochs))}}/{epochs}  lr {report.lr:.4g}  {train}  {score}  "
        f"ISS {format_alive(report.alive, report.components, report.smallest_norm)}  sparsity {report.sparsity:.1%}  "
        f"{report.seconds:.0f} s" + ("  [green]best[/]" if report.best else "")
    )


class ProgressDisplay:
    """The CLI's :class:`isscli.observer.Observer` for training; use it as a context manager."""

    def __init__(self, stdout_is_json: bool = False) -> None:
        self.components: dict[str, int] = {}
        self.classifier = False
        self.stdout_is_json = stdout_is_json
        self.epochs = 0
        self.alive = ""
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=err_console, transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.stop()

    def note(self, message: str, warning: bool = False) -> None:
        """Above the bar, on stderr."""
        self.progress.console.print(f"[yellow]{safe(message)}[/]" if warning else safe(message), soft_wrap=True)

    def run_started(self, components: dict[str, int], classifier: bool) -> None:
        self.components, self.classifier = components, classifier

    def epoch_started(self, epoch: int, epochs: int, batches: int, lr: float) -> None:
        self.epochs = epochs
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs} (lr {lr:.3g})", total=batches, stats="")

    def batch_done(self, loss: float, alive: dict[str, int] | None) -> None:
        if alive is not None:
            self.alive = "  ISS " + format_alive(alive, self.components)
        if self.classifier:
            stats = f"loss {loss:.3f}"
        else:
            stats = f"loss {loss:.3f} ppl {math.exp(min(loss, 700)):.1f}"
        if self.task is not None:
            self.progress.update(self.task, advance=1, stats=stats + self.alive)

    def epoch_done(self, report: EpochReport) -> None:
        """To stdout for logs and pipes, unless stdout carries JSON or shares the bar's terminal
        (then above the bar, on stderr)."""
        to_stderr = self.stdout_is_json or (console.is_terminal and err_console.is_terminal)
        (self.progress.console if to_stderr else console).print(epoch_line(report, self.epochs), soft_wrap=True)
