"""How a library call reports progress: an :class:`Observer` the caller passes in.

A library call prints nothing. Whoever wants to follow it — the CLI's progress bar and
tables, a notebook, a sweep's log file — passes an observer; the default is silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from isscli.learn.run import EpochReport


class Observer(Protocol):
    """Notes for people, and the events of a training run."""

    def note(self, message: str, warning: bool = False) -> None:
        """A line worth telling (``warning``: something the caller should look at)."""

    def run_started(self, components: dict[str, int], classifier: bool) -> None:
        """A training run starts: its ISS sets (name → components) and whether it is a classifier."""

    def epoch_started(self, epoch: int, epochs: int, batches: int, lr: float) -> None: ...
    def batch_done(self, loss: float, alive: dict[str, int] | None) -> None: ...
    def epoch_done(self, report: EpochReport) -> None: ...


class SilentObserver:
    """The default: hears everything, says nothing."""

    def note(self, message: str, warning: bool = False) -> None:
        pass

    def run_started(self, components: dict[str, int], classifier: bool) -> None:
        pass

    def epoch_started(self, epoch: int, epochs: int, batches: int, lr: float) -> None:
        pass

    def batch_done(self, loss: float, alive: dict[str, int] | None) -> None:
        pass

    def epoch_done(self, report: EpochReport) -> None:
        pass

