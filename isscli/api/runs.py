"""``train`` and ``finetune``: learn a model, and its ISS with group Lasso, a size target or weight masks.

Both take a request (the same names as the CLI's flags; the training knobs of
:class:`~isscli.learn.recipes.TrainSettings` go in ``settings``) and return a :class:`TrainResult`.
A run writes OUT (the best or the last epoch), ``OUT.log.jsonl`` and, while it runs,
``OUT.resume.safetensors``; ``resume=True`` continues an interrupted run bit for bit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from isscli.api.assembly import assemble
from isscli.api.common import run_lock
from isscli.api.corpora import uniform_guess_warning
from isscli.api.run_requests import FinetuneRequest, RunRequest, TrainRequest
from isscli.api.validation import checked_arguments
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import plain
from isscli.learn import distributed
from isscli.learn.controller import ControllerSummary, IssController
from isscli.learn.corpus import CorpusSummary
from isscli.learn.evaluation import Evaluation
from isscli.learn.loop import Trainer
from isscli.learn.recipes import PUBLISHED_TEST_PERPLEXITY, RECIPES, TrainSettings
from isscli.learn.run import EpochReport, TrainingRun
from isscli.observer import Observer, SilentObserver
from isscli.runtime.timing import resolve_device


class TrainingInterrupted(IsscliError):
    """Ctrl-C during a run: OUT keeps the last kept epoch, and ``resume=True`` continues."""

    exit_code = 130


@dataclass
class TrainResult:
    """How a run ended. ``best_valid`` is the kept epoch's validation score, ``test`` OUT's test score."""

    output: Path
    log: Path
    recipe: str
    settings: TrainSettings
    resumed_from_epoch: int
    stopped_early: bool
    best_epoch: int | None
    best_valid: Evaluation | None
    test: Evaluation | None
    epochs: list[EpochReport]
    controller: ControllerSummary | None = None  # a size target's run: targets, units, λ per epoch, freezes
    published_test_perplexity: float | None = None  # Zaremba et al.'s, for a published recipe run as published
    start_valid: Evaluation | None = None  # finetune: the checkpoint's validation score before any training
    corpus: CorpusSummary | None = None  # the data: path, vocabulary (size, source), tokens, <unk> per split

    @property
    def hooks(self) -> JSONObject:
        """Deprecated until 0.4 (read :attr:`controller`): the controller's summary as JSON, under its name."""
        warnings.warn("TrainResult.hooks is deprecated: read TrainResult.controller", DeprecationWarning, stacklevel=2)
        return {} if self.controller is None else {"controller": self.controller.to_json()}

    @property
    def data(self) -> JSONObject | None:
        """Deprecated until 0.4 (read :attr:`corpus`): the data's description as JSON."""
        warnings.warn("TrainResult.data is deprecated: read TrainResult.corpus", DeprecationWarning, stacklevel=2)
        return None if self.corpus is None else self.corpus.to_json()

    def to_json(self) -> JSONObject:
        report = {
            "output": str(self.output), "log": str(self.log), "recipe": self.recipe,
            "settings": self.settings.to_dict(), "resumed_from_epoch": self.resumed_from_epoch,
            "stopped_early": self.stopped_early, "best_epoch": self.best_epoch,
            "best_valid": self.best_valid.to_dict() if self.best_valid else None,
            "test": self.test.to_dict() if self.test else None,
            "epochs": [epoch.to_record() for epoch in self.epochs],
            "published_test_perplexity": self.published_test_perplexity,
            "start_valid": self.start_valid.to_dict() if self.start_valid else None,
            "data": self.corpus.to_json() if self.corpus else None,
        }
        if self.controller is not None:
            report["controller"] = self.controller.to_json()
        result: JSONObject = plain(report)
        return result


@checked_arguments
def train(request: TrainRequest, observer: Observer | None = None) -> TrainResult:
    """Train a model from scratch with a published recipe; ``group_lasso`` learns ISS at the same time (Table 1).

    Args:
        request: the preset (model and recipe), the output checkpoint, the corpus, training
            settings by name, optionally a size target or SET (``method="set"``, ``density``).
        observer: follows the run (epoch progress, notes); silent by default.

    Returns:
        A :class:`TrainResult`: the kept epoch and its validation score, the test score, every
        epoch's report, and the size target's summary when there was one.

    Example::

        isscli.train(isscli.TrainRequest(preset="small", output="small.safetensors", data="ptb/",
                                         settings={"epochs": 13})).test.perplexity
    """
    return _run(request, observer)


@checked_arguments
def finetune(request: FinetuneRequest, observer: Observer | None = None) -> TrainResult:
    """Fine-tune a checkpoint with group Lasso on its ISS (paper Eq. 2–4), a size target, or weight masks.

    Args:
        request: the checkpoint, the corpus, λ (``settings={"group_lasso": …}``) or a size target
            (``target_hidden``, ``target_params``, ``target_speedup``), or magnitude pruning.
        observer: follows the run; silent by default.

    Returns:
        A :class:`TrainResult` (see :func:`train`).

    Example::

        isscli.finetune(isscli.FinetuneRequest(checkpoint="small.safetensors", data="ptb/",
                                               target_hidden=[100, 100])).output
    """
    return _run(request, observer)


def _run(request: RunRequest, observer: Observer | None) -> TrainResult:
    """One run, on this process or — launched by torchrun — on every rank (:mod:`isscli.learn.distributed`)."""
    ranks, device, owned = distributed.start(resolve_device(request.device))
    try:
        with run_lock(request, ranks.main):  # one run at a time writes OUT, OUT.log.jsonl, OUT.resume.safetensors
            return _run_here(request, (observer or SilentObserver()) if ranks.main else SilentObserver(), device)
    except RuntimeError as error:  # a collective failed: another rank died, or a bug
        lost = distributed.lost_rank(error, "OUT.resume.safetensors")
        if lost is None:
            raise
        raise lost from error
    finally:
        if owned:
            distributed.stop()


def _run_here(request: RunRequest, observer: Observer, device: torch.device) -> TrainResult:
    run, resume = assemble(request, observer, device)
    start = starting_score(run, request.force, observer) if run.fine_tunes and not resume else None
    trainer = Trainer(run, observer)
    try:
        result = trainer.train(resume=resume, stop_after=request.stop_after)
    except KeyboardInterrupt:
        kept = "no model was written"
        if trainer.best_epoch is not None:
            kept = f"{run.paths.output} keeps the model of epoch {trainer.best_epoch}"
        raise TrainingInterrupted(f"interrupted; {kept}", "rerun the same request with `resume` to continue") \
            from None
    controller = next((hook.summary() for hook in run.hooks if isinstance(hook, IssController)), None)
    return TrainResult(run.paths.output, run.paths.log, run.recipe or "", run.settings, result.resumed_from,
                       result.stopped_early, result.best_epoch, result.best, result.test, result.epochs, controller,
                       published_perplexity(run), start, run.corpus)


def published_perplexity(run: TrainingRun) -> float | None:
    """Zaremba et al.'s test perplexity, for a ``train`` run of a published recipe exactly as published."""
    recipe_name = run.recipe or ""
    if run.fine_tunes or recipe_name not in PUBLISHED_TEST_PERPLEXITY or \
            run.settings != RECIPES[recipe_name].resolved():
        return None
    return PUBLISHED_TEST_PERPLEXITY[recipe_name]


def starting_score(run: TrainingRun, force: bool, observer: Observer) -> Evaluation:
    """The checkpoint's validation score before fine-tuning: a run that starts worse than a uniform guess is
    reading the words with another numbering, and is refused unless ``force``."""
    score = distributed.on_main(lambda: run.task.evaluate(run.model, "valid", run.settings.max_eval_batches))
    metric = score.metric
    value = metric.value(score)
    assert value is not None  # an evaluation has every score of its metric
    observer.note(f"start: valid {metric.name} {metric.text(value)} (the checkpoint as given, before fine-tuning)")
    warning = None
    if metric.name == "perplexity" and run.config is not None and run.corpus is not None:
        warning = uniform_guess_warning(score.perplexity, run.config.vocab_size, run.corpus)
    if warning and not force:
        raise IsscliError(warning, "give the vocabulary it was trained with (`vocab` or `vocab_order`), or pass "
                                   "`force` to fine-tune anyway")
    if warning:
        observer.note(warning, True)
    return score
