"""What the size-target controller reads of a trainer, filled from the user's own loop.

:class:`~isscli.learn.controller.IssController` was written as a hook of isscli's own
:class:`~isscli.learn.loop.Trainer`; :class:`LoopTrainer` is the small part of a trainer it reads, so the very
same controller steers λ inside any loop (:class:`~isscli.learn.your_loop.loop.IssTraining`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from isscli.iss.regularizer import GroupLasso
from isscli.iss.spec import GroupSpec


@dataclass
class LoopTask:
    batches: int

    def num_batches(self, max_batches: int | None) -> int:
        return self.batches if max_batches is None else min(self.batches, max_batches)


@dataclass
class LoopPaths:
    log: Path


@dataclass
class LoopRun:
    spec: GroupSpec
    task: LoopTask
    paths: LoopPaths


@dataclass
class LoopSettings:
    optimizer: str  # "sgd" | "adam": the step length the controller assumes
    max_batches: int | None = None


@dataclass
class LoopStep:
    total: float  # the batch loss as the back-off test compares it (see the module docstring)
    count: int


@dataclass
class LoopValid:
    perplexity: float


@dataclass
class LoopReport:
    epoch: int
    valid: LoopValid


@dataclass
class LoopTrainer:
    """What :class:`~isscli.learn.controller.IssController` reads of a trainer, filled from the user's loop.

    ``run.spec`` (the ISS sets), ``run.task.num_batches(settings.max_batches)`` (batches per epoch),
    ``run.paths.log`` (its JSON-lines log), ``settings.optimizer`` ("sgd" or "adam" step lengths),
    ``parameters`` (the live tensors by name), ``regularizer``, ``optimizer`` (the lr of its first
    param group) and ``last_step`` (the latest batch's loss, ``.total`` over ``.count``).
    """

    run: LoopRun
    settings: LoopSettings
    parameters: dict[str, torch.Tensor]
    regularizer: GroupLasso
    optimizer: torch.optim.Optimizer
    last_step: LoopStep | None = None
