"""``train`` and ``finetune``: learn a model, and its ISS with group Lasso, a size target or weight masks.

Both take a request (the same names as the CLI's flags; the training knobs of
:class:`~isscli.learn.recipes.TrainSettings` go in ``settings``) and return a :class:`TrainResult`.
A run writes OUT (the best or the last epoch), ``OUT.log.jsonl`` and, while it runs,
``OUT.resume.safetensors``; ``resume=True`` continues an interrupted run bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from isscli.api.assembly import assemble
from isscli.api.common import CheckpointSource, ConfigSource, PathLike, SpecSource, run_lock
from isscli.api.corpora import uniform_guess_warning
from isscli.api.validation import Checked, checked_arguments
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import plain
from isscli.learn import distributed
from isscli.learn.controller import ControllerSummary, IssController
from isscli.learn.corpus import CorpusSummary
from isscli.learn.evaluation import Evaluation
from isscli.learn.loop import EpochReport, Trainer, TrainingRun
from isscli.learn.recipes import PUBLISHED_TEST_PERPLEXITY, RECIPES, TrainSettings
from isscli.observer import Observer, SilentObserver
from isscli.runtime.timing import resolve_device


class TrainingInterrupted(IsscliError):
    """Ctrl-C during a run: OUT keeps the last kept epoch, and ``resume=True`` continues."""

    exit_code = 130


@dataclass(kw_only=True)
class RunRequest(Checked):
    """What ``train`` and ``finetune`` share. ``settings`` holds training knobs by name (``epochs``, ``lr``,
    ``group_lasso`` (λ; ``lambda`` is accepted too), ``weight_threshold`` (τ), ``max_batches``, …)."""

    output: PathLike | None = None
    data: PathLike | None = None  # corpus folder or text file; None: $ISSCLI_DATA, ../shared/data/ptb, …
    vocab: PathLike | None = None  # the words in id order (a text file, one per line; or JSON)
    vocab_order: str | None = None  # frequency | first-seen: how to number the words of the training text
    max_vocab: int | None = None  # cap the vocabulary built from text (the rest becomes <unk>)
    min_count: int | None = None
    allow_unknown: bool = False  # train even when the vocabulary reads more than half the train split as <unk>
    preset: str | None = None  # the recipe (and for train, the model)
    config: ConfigSource = None  # model config fields overriding the preset's or the checkpoint's
    dropout: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    settings_file: PathLike | None = None
    spec: SpecSource = None
    renames: Mapping[str, str] = field(default_factory=dict)
    target_hidden: str | Sequence[int] | None = None  # units per ISS set, e.g. "400,350" or [400, 350]
    target_params: str | int | None = None  # parameters after compaction, e.g. "20M"
    target_speedup: float | None = None  # measured on this machine
    prune_epochs: int | None = None
    recover_epochs: int | None = None
    device: str = "auto"
    resume: bool = False
    stop_after: int | None = None
    force: bool = False


@dataclass(kw_only=True)
class TrainRequest(RunRequest):
    """Train a model of ``preset`` from scratch (``group_lasso`` in ``settings`` learns ISS at once)."""

    preset: str
    output: PathLike
    method: str = "dense"  # or "set": sparse evolutionary training of the embedding and recurrent matrices
    density: float | None = None
    zeta: float | None = None


@dataclass(kw_only=True)
class FinetuneRequest(RunRequest):
    """Fine-tune ``checkpoint`` (left untouched); OUT defaults to ``CKPT.iss.safetensors``."""

    checkpoint: CheckpointSource
    arch: str | None = None
    model: str | None = None  # the user's own class (file.py:Class), fine-tuned on tensor data
    model_args: str | Mapping[str, Any] | Sequence[Any] | None = None
    objective: str | None = None  # tensor data: regression | classification | tagging
    split_rule: str | None = None  # tensor data with plain x, y: train,valid,test fractions in file order
    magnitude_sparsity: float | None = None
    prune_start: int | None = None
    prune_end: int | None = None
    prune_every: int | None = None


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


def score_text(score: Evaluation) -> str:
    """The score as people read it: an accuracy in percent, a perplexity or a loss."""
    if score.metric == "accuracy":
        return f"{score.accuracy:.2%}"
    return f"{score.perplexity:.2f}" if score.metric == "perplexity" else f"{score.loss:.4g}"


def starting_score(run: TrainingRun, force: bool, observer: Observer) -> Evaluation:
    """The checkpoint's validation score before fine-tuning: a run that starts worse than a uniform guess is
    reading the words with another numbering, and is refused unless ``force``."""
    score = distributed.on_main(lambda: run.task.evaluate(run.model, "valid", run.settings.max_eval_batches))
    observer.note(f"start: valid {score.metric} {score_text(score)} (the checkpoint as given, before fine-tuning)")
    warning = None
    if score.metric == "perplexity" and run.config is not None and run.corpus is not None:
        warning = uniform_guess_warning(score.perplexity, run.config.vocab_size, run.corpus)
    if warning and not force:
        raise IsscliError(warning, "give the vocabulary it was trained with (`vocab` or `vocab_order`), or pass "
                                   "`force` to fine-tune anyway")
    if warning:
        observer.note(warning, True)
    return score
