"""``evaluate``: perplexity of a language model (accuracy of a classifier) on one split of a corpus."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isscli.api.common import CheckpointSource, ConfigSource, PathLike, as_checkpoint, model_overrides
from isscli.api.corpora import check_vocabulary, load_task, uniform_guess_warning, vocabulary_choice
from isscli.api.user_models import user_source
from isscli.api.validation import Checked, checked_arguments
from isscli.data.tensors import is_tensor_file, load_tensor_data
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.parsing import MAX_BATCH, MAX_SEED, MAX_STEPS, check_bounds
from isscli.io.provenance import check_provenance
from isscli.learn.corpus import UnknownTokens, unknown_tokens
from isscli.learn.evaluation import Metric, MetricName
from isscli.learn.recipes import RECIPES
from isscli.learn.tasks import TensorTask
from isscli.live.usermodel import ModelSource, load_user_model
from isscli.models import load_model
from isscli.models.checkpoint import Checkpoint
from isscli.models.registry import architecture_assumption
from isscli.observer import Observer, SilentObserver
from isscli.runtime.quantize import check_precision, quantize_torch
from isscli.runtime.timing import resolve_device

SPLITS = ("train", "valid", "test")


class ScoreNotFinite(IsscliError):
    """The loss is NaN or infinite (NaN or infinite weights): a failed check, never a score."""

    exit_code = 1


@dataclass(kw_only=True)
class EvaluateRequest(Checked):
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
    fail_above: float | None = None  # the gate of a language model: perplexity at most this
    fail_below: float | None = None  # the gate of a classifier: accuracy at least this (a share, 0.75)
    baseline: CheckpointSource | None = None  # the gate against a model: scored on the same split …
    max_loss: float | None = None  # … it may be this much worse: perplexity × (1 + max_loss), accuracy − max_loss
    model: str | None = None  # the user's own class (file.py:Class): scores it on tensor data
    model_args: str | Mapping[str, Any] | Sequence[Any] | None = None
    objective: str | None = None  # tensor data: regression | classification | tagging
    split_rule: str | None = None  # tensor data with plain x, y: train,valid,test fractions in file order
    quantize: str | None = None  # int8 | bf16: score the quantized model (torch); a baseline is scored as given


@dataclass
class QualityGate:
    """The quality gate's verdict: the ``metric``'s ``value`` against each limit (by the request field that set it:
    ``fail_above``, ``fail_below``, ``max_loss``), the baseline's score (``max_loss``), and whether it ``passed``."""

    metric: MetricName
    value: float
    limits: dict[str, float]
    baseline: float | None
    passed: bool

    def to_json(self) -> JSONObject:
        return {**vars(self), "limits": dict(self.limits)}


@dataclass
class VocabularyRecord:
    """The words a model was scored over: their number, their fingerprint (``None``: not known) and where they came
    from. Perplexities are comparable only over the same words."""

    size: int
    sha256: str | None
    source: str

    def to_json(self) -> JSONObject:
        return dict(vars(self))


#: The fields of the nested records in a stored evaluation (:func:`isscli.io.manifest.validated`).
GATE_FIELDS = {"metric": "string", "value": "number", "limits": "object", "baseline": "number?", "passed": "boolean"}
VOCABULARY_FIELDS = {"size": "integer", "sha256": "string?", "source": "string"}
MODEL_FIELDS = {"model": "string"}


@dataclass
class EvaluateResult:
    checkpoint: str
    data: str
    split: str
    loss: float  # mean cross-entropy per token (LM) or sentence (classifier); tensor data: the objective's loss
    perplexity: float | None  # exp(loss); None on tensor data (the loss or the accuracy is the score)
    count: int  # tokens or sentences scored
    parameters: int
    accuracy: float | None = None  # classifiers
    warning: str | None = None  # e.g. a perplexity worse than a uniform guess (another word numbering?)
    gate: QualityGate | None = None  # the quality gate's verdict (None: no gate asked for)
    assumption: str | None = None  # a checkpoint without a config run as one of isscli's families: said, recorded
    unknown: dict[str, UnknownTokens] | None = None  # LMs: per split, the tokens read as <unk>
    objective: str | None = None  # tensor data: regression | classification | tagging
    model: ModelSource | None = None  # the user's class that was run (``model``, ``model_args``)
    split_rule: str | None = None  # tensor data: how the splits were made
    precision: str = "fp32"  # int8 | bf16: the model was scored quantized (``quantize``)
    vocabulary: VocabularyRecord | None = None  # LMs and classifiers: the words the model was scored over

    @property
    def metric(self) -> Metric:
        return Metric.of(self.accuracy is not None, self.objective)

    def to_json(self) -> JSONObject:
        unknown = None if self.unknown is None else {split: tokens.to_json() for split, tokens in self.unknown.items()}
        return {**vars(self), "gate": self.gate.to_json() if self.gate else None, "unknown": unknown,
                "model": self.model.describe() if self.model else None,
                "vocabulary": self.vocabulary.to_json() if self.vocabulary else None}

    @classmethod
    def from_json(cls, raw: JSONObject) -> EvaluateResult:
        """The result :meth:`to_json` wrote, its nested records checked already (:data:`GATE_FIELDS` …)."""
        gate, unknown, model, vocabulary = (raw.get(name) for name in ("gate", "unknown", "model", "vocabulary"))
        return cls(**{**raw, "gate": QualityGate(**gate) if gate else None,
                      "unknown": None if unknown is None else unknown_tokens(unknown),
                      "model": ModelSource(model["model"], model.get("model_args", {})) if model else None,
                      "vocabulary": VocabularyRecord(**vocabulary) if vocabulary else None})


@checked_arguments
def evaluate(request: EvaluateRequest, observer: Observer | None = None) -> EvaluateResult:
    """Perplexity (accuracy) of a checkpoint on one split.

    Args:
        request: the checkpoint, the corpus folder (PTB format for LMs, SST-2/MR for
            classifiers), the split and the batching.
        observer: told where the corpus came from when it was searched for.

    Returns:
        An :class:`EvaluateResult` with the loss, perplexity (and accuracy), tokens scored and
        the model's parameter count.

    Example::

        isscli.evaluate(isscli.EvaluateRequest(checkpoint="compact.safetensors", data="ptb/")).perplexity
    """
    check_gates(request)
    if request.split not in SPLITS:
        raise IsscliError(f"unknown `split` {request.split!r}", f"use {', '.join(SPLITS)}")
    for name, high in (("batch_size", MAX_BATCH), ("bptt", MAX_STEPS)):
        check_bounds(getattr(request, name), name, 1, high)
    check_bounds(request.seed, "seed", 0, MAX_SEED)
    observer = observer or SilentObserver()
    source = user_source(request, observer)
    loaded = read_checkpoint(request.checkpoint)
    baseline = None if request.baseline is None else read_checkpoint(request.baseline)  # checked before any work
    if source is not None or (request.data is not None and is_tensor_file(request.data)):
        if request.quantize is not None:
            raise IsscliError("`quantize` scores isscli's own model families", "drop `quantize` with `model`")
        return evaluate_tensors(request, loaded, baseline, source, observer)
    device = resolve_device(request.device)
    assumption = architecture_assumption(loaded, request.arch, model_overrides(request.config))
    if assumption:
        observer.note(f"assumed: {assumption}", True)
    model = load_model(loaded, request.arch, model_overrides(request.config))
    if request.quantize is not None:
        check_precision(request.quantize, "torch", model.config)
        if device.type != "cpu" and request.quantize == "int8":
            raise IsscliError("`quantize`=int8 runs on the CPU (dynamic int8 kernels)", "add `device`=cpu")
        model = quantize_torch(model, request.quantize)
    model = model.to(device)
    settings = RECIPES["small"].updated({"batch_size": request.batch_size, "eval_batch_size": request.batch_size,
                                         "bptt": request.bptt, "seed": request.seed})
    choice = vocabulary_choice(optional_path(request.vocab), request.vocab_order, checkpoint=loaded,
                               observer=observer)
    task, data, _ = load_task(model.config.family, optional_path(request.data), settings, device, observer, choice,
                              splits={request.split: "batch_size"})
    check_vocabulary(model.config, data, loaded.provenance)
    score = task.evaluate(model, request.split)
    if not math.isfinite(score.loss):
        broken = sorted(name for name, tensor in loaded.tensors.items()
                        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()))
        cause = f"tensor(s) {', '.join(broken[:3])} hold NaN or infinite values" if broken else "its outputs overflow"
        raise ScoreNotFinite(f"{checkpoint_name(loaded)}: the loss on the {request.split} split is {score.loss} "
                             f"({cause}): the model has no score",
                             "fix or re-create the checkpoint")
    warning = None if score.accuracy is not None else \
        uniform_guess_warning(score.perplexity, model.config.vocab_size, data)
    if warning:
        observer.note(warning, True)
    result = EvaluateResult(checkpoint_name(loaded), data.path, request.split,
                            score.loss, score.perplexity, score.count, loaded.num_parameters(), score.accuracy,
                            warning, unknown=data.unknown)
    if data.vocabulary_size is not None:
        result.vocabulary = VocabularyRecord(data.vocabulary_size, data.vocabulary_sha256,
                                             data.vocabulary_source or "built from the training text")
    result.gate = quality_gate(request, result, baseline, observer)
    result.assumption = assumption
    result.precision = request.quantize or "fp32"
    return result


def evaluate_tensors(request: EvaluateRequest, loaded: Checkpoint, baseline: Checkpoint | None,
                     source: ModelSource | None, observer: Observer) -> EvaluateResult:
    """The user's own class on tensor data: the objective's loss (and accuracy) on one split."""
    if source is None:
        raise IsscliError(f"`data` {request.data} is tensor data, which isscli's own model families do not read",
                          "give `model`=file.py:Class, the model that reads it")
    if request.data is None or not is_tensor_file(request.data):
        raise IsscliError("`model` is scored on tensor data", "give `data`=FILE.safetensors or .npz holding x and y")
    device = resolve_device(request.device)
    data = load_tensor_data(Path(request.data), request.objective, request.split_rule)
    if request.split not in data.splits:
        raise IsscliError(f"{request.data} has no {request.split} split ({data.split_rule})",
                          f"use `split`={' or '.join(data.splits)}, or store {request.split}.x and {request.split}.y")
    observer.note(f"data: {data.reading}")
    model = load_user_model(source, loaded).to(device)
    task = TensorTask(data, request.batch_size, request.batch_size, request.seed, device)
    score = task.evaluate(model, request.split)
    if not math.isfinite(score.loss):
        raise ScoreNotFinite(f"{checkpoint_name(loaded)}: the loss on the {request.split} split is {score.loss}: "
                             "the model has no score",
                             "fix or re-create the checkpoint")
    result = EvaluateResult(checkpoint_name(loaded), str(request.data), request.split,
                            score.loss, None, score.count, loaded.num_parameters(), score.accuracy,
                            objective=data.objective, model=source, split_rule=data.split_rule)
    result.gate = quality_gate(request, result, baseline, observer)
    return result


def read_checkpoint(source: CheckpointSource) -> Checkpoint:
    """A checkpoint to score, its provenance checked as the input it is (a wrong type is bad input, not a crash)."""
    loaded = as_checkpoint(source)
    check_provenance(loaded.provenance, loaded.path)
    return loaded


def optional_path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


def checkpoint_name(loaded: Checkpoint) -> str:
    return str(loaded.path) if loaded.path else "(in memory)"


def check_gates(request: EvaluateRequest) -> None:
    for name in ("fail_above", "fail_below", "max_loss"):
        value = getattr(request, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise IsscliError(f"`{name}` must be a number ≥ 0 (got {value})", "fix the option")
    if (request.baseline is None) != (request.max_loss is None):
        raise IsscliError("`baseline` and `max_loss` go together", "give both (e.g. `max_loss`=0.05), or neither")


def quality_gate(request: EvaluateRequest, result: EvaluateResult, baseline: Checkpoint | None,
                 observer: Observer) -> QualityGate | None:
    """The gate's verdict: a perplexity (a loss) at most ``fail_above``, an accuracy at least ``fail_below``, and
    against ``baseline`` (read already) a perplexity at most (1 + ``max_loss``) × its, or an accuracy at least its −
    ``max_loss``."""
    metric = result.metric
    value = metric.value(result)
    wanted = "fail_below" if metric.higher_is_better else "fail_above"
    limits: dict[str, float] = {}
    for name in ("fail_above", "fail_below"):
        limit = getattr(request, name)
        if limit is not None and name != wanted:
            raise IsscliError(f"`{name}` does not gate a model scored by {metric.name}",
                              "use `fail_above` for a perplexity or a loss (LMs, regression) and `fail_below` for "
                              "an accuracy (classifiers, classification and tagging objectives)")
        if limit is not None:
            limits[name] = limit
    reference = None
    if baseline is not None:
        reference, limits["max_loss"] = baseline_limit(request, result, baseline, observer)
    if not limits:
        return None
    passed = value is not None and math.isfinite(value) and all(metric.meets(value, limit) for limit in limits.values())
    return QualityGate(metric.name, math.nan if value is None else value, limits, reference, passed)


def baseline_limit(request: EvaluateRequest, result: EvaluateResult, baseline: Checkpoint,
                   observer: Observer) -> tuple[float, float]:
    """The baseline's score (on the same split of the same data, over the same words) and the limit ``max_loss``
    gives: both finite, or the gate cannot be measured."""
    base = evaluate(EvaluateRequest(checkpoint=baseline, data=request.data, vocab=request.vocab,
                                    vocab_order=request.vocab_order, split=request.split,
                                    batch_size=request.batch_size, bptt=request.bptt, seed=request.seed,
                                    device=request.device, arch=request.arch, config=request.config,
                                    model=request.model, model_args=request.model_args,
                                    objective=request.objective, split_rule=request.split_rule), observer)
    check_comparable(result, base)
    metric = result.metric
    score = metric.value(base)
    reference = math.nan if score is None else score
    limit = metric.tolerated(reference, float(request.max_loss or 0.0))
    if not (math.isfinite(reference) and math.isfinite(limit)):
        raise IsscliError(f"the baseline {base.checkpoint} scores {metric.name} {reference:.4g} on the {base.split} "
                          f"split (loss {base.loss:.4g}), which gives no finite limit: the gate cannot be measured",
                          "gate against a baseline with a finite score (e.g. the dense model the run started "
                          "from), or gate with `fail_above`")
    return reference, limit


def check_comparable(result: EvaluateResult, base: EvaluateResult) -> None:
    """Perplexities are comparable only over one vocabulary: a model that reads most words as ``<unk>`` predicts
    few outcomes and scores low. Both were scored on the same split of the same corpus; their vocabularies must be
    the same words too. (A classifier's accuracy counts the same labelled sentences whatever the vocabulary.)"""
    ours, theirs = result.vocabulary, base.vocabulary
    if result.metric.name != "perplexity" or ours is None or theirs is None or ours.sha256 == theirs.sha256:
        return
    same_size = " other" if ours.size == theirs.size else ""
    raise IsscliError(
        f"the gate would compare perplexities over different vocabularies: the model's {ours.size:,} words "
        f"({ours.source}) and the baseline's {theirs.size:,}{same_size} words ({theirs.source})",
        "gate against a baseline with the model's vocabulary (trained on the same corpus and vocabulary)")
