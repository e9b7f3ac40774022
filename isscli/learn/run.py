"""What a training run is made of: its inputs (:class:`TrainingRun`), the protocol of the hooks
that act beside SGD (:class:`TrainingHook`), its files (:class:`RunPaths`) and its reports.

The loop that runs it is :class:`isscli.learn.loop.Trainer`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from isscli.data.fingerprint import data_fingerprint
from isscli.io.atomic import check_output_path
from isscli.io.errors import IsscliError, OutputError
from isscli.io.jsonfile import JSONObject, finite_json
from isscli.iss.spec import GroupSpec
from isscli.learn.corpus import CorpusSummary
from isscli.learn.distributed import current
from isscli.learn.evaluation import Evaluation, Task
from isscli.learn.recipes import TrainSettings
from isscli.models.checkpoint import Checkpoint
from isscli.models.registry import config_of

if TYPE_CHECKING:
    from isscli.learn.loop import Trainer
    from isscli.live.usermodel import ModelSource
    from isscli.models.config import ModelConfig

#: What a run does: ``train`` a fresh model, or ``finetune`` a checkpoint (its provenance's ``operation``).
Operation = Literal["train", "finetune"]


class TrainingDiverged(IsscliError):
    """The run stopped on a NaN loss, a validation blow-up or a dead ISS set."""

    exit_code = 1


@dataclass
class RunPaths:
    """The output checkpoint and the two files beside it."""

    output: Path

    @property
    def log(self) -> Path:
        return self.output.with_suffix(".log.jsonl")

    @property
    def resume(self) -> Path:
        return self.output.with_suffix(".resume.safetensors")


def prepare_outputs(paths: RunPaths, inputs: tuple[Path, ...], force: bool, resume: bool) -> None:
    """Refuse, before any training, outputs that would clobber an input or an unfinished run."""
    for path in (paths.output, paths.log, paths.resume):
        check_output_path(path, inputs, overwrite=True)
    if resume:
        if not paths.resume.is_file():
            raise IsscliError(f"no resumable run at {paths.resume}", "start the run without --resume")
        return
    if not force:
        if paths.resume.exists():
            raise OutputError(
                f"an interrupted run left {paths.resume}",
                "continue it with --resume, or pass --force to start afresh",
            )
        if paths.output.exists():
            raise OutputError(f"output {paths.output} already exists",
                              "pass --force to replace it, or choose another -o")
    paths.resume.unlink(missing_ok=True)


@dataclass
class EpochReport:
    epoch: int
    lr: float
    train_loss: float
    valid: Evaluation
    penalty: float
    alive: dict[str, int]
    components: dict[str, int]
    sparsity: float
    seconds: float
    best: bool = False
    smallest_norm: dict[str, float] = field(default_factory=dict)  # per set, of its nonzero groups: what τ must pass

    @property
    def train_perplexity(self) -> float:
        return math.exp(self.train_loss) if self.train_loss < 700 else math.inf

    def to_record(self) -> JSONObject:
        record: JSONObject = {"event": "epoch"}
        record.update((key, value) for key, value in asdict(self).items() if key != "valid")
        record["train_perplexity"] = self.train_perplexity
        record.update((f"valid_{key}", value) for key, value in self.valid.to_dict().items() if key != "split")
        return record


@dataclass
class TrainingResult:
    """How the run ended; ``test`` is the best checkpoint's score on the test split."""

    epochs: list[EpochReport]
    best_epoch: int | None
    best: Evaluation | None
    test: Evaluation | None = None
    stopped_early: bool = False
    resumed_from: int = 0


class TrainingHook:
    """Acts on the model beside SGD: weight masks (SET, magnitude pruning) or a λ controller.

    The trainer calls every hook at fixed points of each batch and epoch; the defaults do
    nothing. ``state_dict``/``load_state_dict`` carry what ``--resume`` needs (tensors, and a JSON
    object), so a resumed run continues exactly as an uninterrupted one.
    """

    name = "hook"

    def after_backward(self, trainer: Trainer) -> None:
        """The gradient (data loss and regularizers) is complete; it is clipped next."""

    def after_step(self, trainer: Trainer, epoch: int, index: int) -> None:
        """The SGD step and the thresholding of batch ``index`` are done (``trainer.last_step`` holds its loss)."""

    def add_group_lasso_(self, trainer: Trainer) -> bool:
        """Add the group-Lasso gradient in the trainer's place (e.g. a λ per set); return True when done.

        Called after the data loss's backward pass, before :meth:`after_backward`. The default
        leaves it to the trainer (``settings.group_lasso``, one λ for every set).
        """
        return False

    def threshold_(self, trainer: Trainer, tau: float) -> bool:
        """Threshold the weights in the trainer's place after every SGD step (called even when τ = 0);
        return True when done. The default leaves it to the trainer (every |w| < τ zeroed)."""
        return False

    def after_epoch(self, trainer: Trainer, report: EpochReport) -> None:
        """Validation is done and OUT written (when this epoch is kept); the resume state is saved next."""

    def keeps(self, epoch: int) -> bool:
        """Whether OUT may hold the model of ``epoch``: not while it is still being pruned to its target."""
        return True

    def state_dict(self) -> tuple[dict[str, torch.Tensor], JSONObject]:
        return {}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], info: JSONObject) -> None:
        """Restore what :meth:`state_dict` returned."""

    def checkpoint_masks(self) -> tuple[dict[str, torch.Tensor], JSONObject] | None:
        """Weight masks to write with every checkpoint of the run, and how they were made as the checkpoint records
        it (None: no masks)."""
        return None

    def provenance(self) -> JSONObject | None:
        """What the checkpoints' provenance records about this hook (its settings), under its name."""
        return None


@dataclass
class TrainingRun:
    """A run's inputs. ``parameters`` (JSON-able: the request, the resolved settings, the corpus) go into
    every checkpoint's provenance and the log's start record; ``corpus`` is the data's typed summary."""

    operation: Operation
    model: nn.Module
    task: Task
    settings: TrainSettings
    spec: GroupSpec
    paths: RunPaths
    device: torch.device
    parent: Checkpoint | None = None
    parameters: JSONObject = field(default_factory=dict)
    hooks: list[TrainingHook] = field(default_factory=list)
    vocabulary: list[str] | None = None  # the word of each embedding row, written into every checkpoint
    source: ModelSource | None = None  # the user's own class (``model``); None: one of isscli's families
    corpus: CorpusSummary | None = None  # the data read (``parameters["data"]`` is its description)
    recipe: str | None = None  # the name of the recipe the settings started from
    corpus_sha256: str | None = field(init=False, default=None)  # the text read (:mod:`isscli.data.fingerprint`)

    def __post_init__(self) -> None:
        """Fingerprint the corpus now, right after it was read: a resume must find the same text."""
        if self.corpus is not None and self.corpus.sha256 is None:  # tensor data carries its file's sha256 already
            self.corpus_sha256 = data_fingerprint(self.corpus.path)

    @property
    def fine_tunes(self) -> bool:
        """Whether the run continues a checkpoint (``finetune``) rather than training a fresh model (``train``)."""
        return self.operation == "finetune"

    @property
    def config(self) -> ModelConfig | None:
        """The config of isscli's model; None for the user's own class (whose arguments are its own)."""
        return None if self.source is not None else config_of(self.model)

    def model_record(self) -> JSONObject:
        """What the model is, for the log and the resume identity: its config, or the user's class and arguments."""
        if self.source is not None:
            return self.source.describe()
        return self.config.to_dict() if self.config is not None else {}

    def reload(self, checkpoint: Checkpoint) -> nn.Module:
        """A written checkpoint as a model again (reading it back proves the file sound)."""
        if self.source is not None:
            from isscli.live.usermodel import load_user_model

            return load_user_model(self.source, checkpoint)
        from isscli.models.registry import load_model

        return load_model(checkpoint)

    @property
    def scores_loss(self) -> bool:
        """Whether progress shows a loss rather than a perplexity (classifiers, the user's models)."""
        return self.config is None or self.config.family == "classifier"

    def identity(self) -> JSONObject:
        """What must not change between an interrupted run and its continuation (:data:`IDENTITY_NAMES`): the data
        by content, its vocabulary and its text (or the tensor file's sha256)."""
        corpus = self.corpus
        return {
            "action": self.operation,
            "parent_sha256": self.parent.sha256 if self.parent else None,
            "config": self.model_record(),
            "data": {"vocabulary_sha256": None if corpus is None else corpus.vocabulary_sha256,
                     "sha256": (None if corpus is None else corpus.sha256) or self.corpus_sha256},
            "spec": self.spec.to_json(),
        }


#: How a resume refusal names each part of :meth:`TrainingRun.identity` that changed.
IDENTITY_NAMES = {"action": "operation", "parent_sha256": "parent checkpoint", "config": "model", "data": "data",
                  "spec": "spec"}


def identity_changes(saved: Any, now: JSONObject) -> list[str]:
    """The parts of a run's identity that differ between a resume state (``saved``, read from its file) and now."""
    if not isinstance(saved, dict):
        return sorted(IDENTITY_NAMES.values())
    return [IDENTITY_NAMES.get(key, key) for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key)]


class JsonLog:
    """Append-only JSON lines; a fresh run truncates the file, a resumed one appends."""

    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        self.active = current().main  # with several ranks, rank 0 keeps the log
        if not append and self.active:
            path.write_text("", encoding="utf-8")

    def write(self, record: JSONObject) -> None:
        if not self.active:
            return
        stamped, replaced = finite_json({"time": round(time.time(), 3), **record})
        if replaced:  # JSON has no NaN or infinity: null, and which fields held what
            stamped["non_finite"] = replaced
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(stamped, allow_nan=False) + "\n")


