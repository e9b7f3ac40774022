"""``evaluate``: perplexity of a language model (accuracy of a classifier) on one split of a corpus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isscli.api.common import CheckpointSource, ConfigSource, PathLike, as_checkpoint, model_overrides
from isscli.api.corpora import check_vocabulary, load_task, uniform_guess_warning, vocabulary_choice
from isscli.errors import IsscliError
from isscli.models import load_model
from isscli.observer import Observer, SilentObserver
from isscli.recipes import RECIPES
from isscli.timing import resolve_device

SPLITS = ("train", "valid", "test")


@dataclass(kw_only=True)
class EvaluateRequest:
    """Score ``checkpoint`` on ``split`` of ``data`` (for LMs, the state is carried across ``bptt``-step chunks)."""

    checkpoint: CheckpointSource
    data: PathLike | None = None  # None: the usual search ($ISSCLI_DATA, ../shared/data/ptb, …)
    vocab: PathLike | None = None  # for a checkpoint that carries no vocabulary: the words in id order
    vocab_order: str | None = None  # or how they are numbered: frequency | first-seen
    split: str = "test"
    batch_size: int = 10  # streams (LM) or sentences (classifier) per batch
    bptt: int = 35
    seed: int = 0  # of MR's 90/10 split (classifiers)
    device: str = "auto"
    arch: str | None = None
    config: ConfigSource = None


@dataclass
class EvaluateResult:
    checkpoint: str
    data: str
    split: str
    loss: float  # mean cross-entropy per token (LM) or sentence (classifier)
    perplexity: float  # exp(loss)
    count: int  # tokens or sentences scored
    parameters: int
    accuracy: float | None = None  # classifiers
    warning: str | None = None  # e.g. a perplexity worse than a uniform guess (another word numbering?)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def evaluate(request: EvaluateRequest, observer: Observer | None = None) -> EvaluateResult:
    """Perplexity (accuracy) of a checkpoint on one split.

    Args:
        request: the checkpoint, the corpus folder (PTB format for LMs, SST-2/MR for
            classifiers), the split and the batching.
        observer: told where the corpus came from when it was searched for.

    Returns:
        An :class:`EvaluateResult` with the loss, perplexity (and accuracy), tokens scored and
        the model's parameter count.

    Example:
        >>> isscli.evaluate(isscli.EvaluateRequest(checkpoint="compact.safetensors", data="ptb/")).perplexity
    """
    if request.split not in SPLITS:
        raise IsscliError(f"unknown `split` {request.split!r}", f"use {', '.join(SPLITS)}")
    if request.batch_size < 1 or request.bptt < 1:
        raise IsscliError("`batch_size` and `bptt` must be ≥ 1", "fix the option")
    loaded = as_checkpoint(request.checkpoint)
    device = resolve_device(request.device)
    model = load_model(loaded, request.arch, model_overrides(request.config)).to(device)
    settings = RECIPES["small"].updated({"batch_size": request.batch_size, "eval_batch_size": request.batch_size,
                                         "bptt": request.bptt, "seed": request.seed})
    observer = observer or SilentObserver()
    choice = vocabulary_choice(request.vocab, request.vocab_order, checkpoint=loaded, observer=observer)
    task, data, _ = load_task(model.config.family, request.data, settings, device, observer, choice)
    check_vocabulary(model.config, data, loaded.provenance)
    score = task.evaluate(model, request.split)
    warning = None if score.accuracy is not None else \
        uniform_guess_warning(score.perplexity, model.config.vocab_size, data)
    if warning:
        observer.note(warning, True)
    return EvaluateResult(str(loaded.path) if loaded.path else "(in memory)", data["path"], request.split,
                          score.loss, score.perplexity, score.count, loaded.num_parameters(), score.accuracy,
                          warning)
