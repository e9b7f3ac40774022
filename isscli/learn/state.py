"""The resumable state of a training run: ``OUT.resume.safetensors`` beside the output.

Written atomically at the end of every epoch, it holds what continuing needs: the model's
weights at that point (not the best ones, which are in OUT), the optimizer's state, the RNG
states (dropout), and as JSON metadata the epoch, the best validation score so far, the
settings and what identifies the run (data, parent checkpoint). Continuing from it gives the
same weights, bit for bit on CPU, as a run that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from isscli.io.atomic import atomic_write
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.learn.evaluation import Evaluation

METADATA_KEY = "isscli.resume"
#: The sha256 of the metadata as written: a state edited since (by hand, or damaged) is refused, never half-used.
DIGEST_KEY = "isscli.resume.sha256"
FORMAT_VERSION = 2  # 2: the metadata carries its digest


@dataclass
class RunState:
    """Everything but the data and the model's structure."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: JSONObject  # the optimizer's ``state_dict()``, as torch gives it
    rng: dict[str, torch.Tensor]
    info: JSONObject  # the JSON metadata (a training run's: :class:`RunInfo`)
    hooks: dict[str, torch.Tensor] = field(default_factory=dict)  # training hooks' tensors (e.g. masks)
    carried: dict[str, torch.Tensor] = field(default_factory=dict)  # an LM's state between chunks, mid-epoch


def _split_optimizer(state: JSONObject) -> tuple[dict[str, torch.Tensor], JSONObject]:
    """An optimizer ``state_dict`` as flat tensors plus the JSON-able rest."""
    tensors, plain = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "values": plain}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: JSONObject) -> JSONObject:
    state: dict[int, JSONObject] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for name, value in meta["values"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_run_state(path: Path, state: RunState) -> None:
    optimizer_tensors, optimizer_meta = _split_optimizer(state.optimizer)
    tensors = {f"model.{name}": t for name, t in state.model.items()}
    tensors.update(optimizer_tensors)
    tensors.update({f"rng.{name}": t for name, t in state.rng.items()})
    tensors.update({f"hook.{name}": t for name, t in state.hooks.items()})
    tensors.update({f"carried.{name}": t for name, t in state.carried.items()})
    info = {"format": "isscli.resume", "version": FORMAT_VERSION, "epoch": state.epoch,
            "optimizer": optimizer_meta, **state.info}
    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    text = json.dumps(info)
    metadata = {METADATA_KEY: text, DIGEST_KEY: hashlib.sha256(text.encode()).hexdigest()}
    atomic_write(path, lambda temp: save_file(contiguous, str(temp), metadata=metadata))


#: The hint of every resume file that isscli did not write as it is (damaged, edited, of another version).
FOREIGN = "start afresh with --force (the file is not a resume state as isscli wrote it)"
#: The fields of a resume state's metadata that this module reads, and their kinds
#: (:func:`isscli.io.manifest.field_problem`); the trainer checks the run's own (:data:`RUN_FIELDS`).
STATE_FIELDS = {"format": "string", "version": "integer", "epoch": "integer", "optimizer": "object"}
RUN_FIELDS = {"identity": "object", "settings": "object", "hooks": "object", "best": "object?",
              "lowest_perplexity": "number?", "position": "object?"}
NESTED_FIELDS = {"optimizer": {"param_groups": "list"},
                 "best": {"rank": "list", "epoch": "integer", "valid": "object"},
                 "position": {"epoch": "integer", "batch": "integer", "total": "number", "count": "integer"}}


def checked_info(info: Any, path: Path, fields: dict[str, str] = STATE_FIELDS) -> JSONObject:
    """The metadata of a resume file, each of ``fields`` of the kind isscli writes: a damaged or edited file is one
    line naming the field, never a crash halfway through restoring the run."""
    from isscli.io.manifest import validated

    where = f"resume file {path}"
    if isinstance(info, dict) and "version" in fields and info.get("version") != FORMAT_VERSION:
        raise IsscliError(f"{path} has resume format {info.get('version')!r}", "start afresh with --force")
    validated(info, fields, where, FOREIGN)
    for name, nested in NESTED_FIELDS.items():
        if name in fields and info.get(name) is not None:
            validated(info[name], nested, where, FOREIGN, at=name)
    checked: JSONObject = info
    return checked


@dataclass(frozen=True)
class Position:
    """Where in an epoch a state was saved: ``batch`` batches of ``epoch`` done, their loss summed over ``count``."""

    epoch: int
    batch: int
    total: float
    count: int


@dataclass(frozen=True)
class BestEpoch:
    """The epoch OUT holds so far: its rank (:meth:`~isscli.learn.evaluation.Evaluation.rank`) and its score."""

    rank: list[float]
    epoch: int
    valid: Evaluation


@dataclass(frozen=True)
class RunInfo:
    """What a training run saves beside its tensors: what identifies it (:meth:`isscli.learn.run.TrainingRun.identity`),
    its settings, the best epoch so far, the divergence guard's reference, each hook's state by hook name, and
    (saved mid-epoch) where in the epoch."""

    identity: JSONObject
    settings: JSONObject
    best: BestEpoch | None
    lowest_perplexity: float | None
    hooks: dict[str, JSONObject]
    position: Position | None = None

    def to_json(self) -> JSONObject:
        best = self.best
        return {"identity": self.identity, "settings": self.settings,
                "best": None if best is None else {"rank": best.rank, "epoch": best.epoch, "valid": asdict(best.valid)},
                "lowest_perplexity": self.lowest_perplexity, "hooks": self.hooks,
                "position": None if self.position is None else asdict(self.position)}

    @classmethod
    def read(cls, info: JSONObject, path: Path) -> RunInfo:
        """The run's part of a resume file's metadata, each field checked (:data:`RUN_FIELDS`)."""
        checked_info(info, path, RUN_FIELDS)
        at = info.get("position")
        position = None if at is None else Position(at["epoch"], at["batch"], at["total"], at["count"])
        return cls(info["identity"], info["settings"], best_epoch(info.get("best"), path),
                   info.get("lowest_perplexity"), info["hooks"], position)


def best_epoch(best: JSONObject | None, path: Path) -> BestEpoch | None:
    """The best epoch a resume file records (:data:`NESTED_FIELDS` checked its fields' kinds)."""
    if best is None:
        return None
    try:
        return BestEpoch(best["rank"], best["epoch"], Evaluation(**best["valid"]))
    except TypeError:
        raise IsscliError(f"{path}: field \"best.valid\" is not a score", FOREIGN) from None


def load_run_state(path: Path) -> RunState:
    if not path.is_file():
        raise IsscliError(f"no resumable run at {path}", "start the run without --resume")
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
            text = metadata[METADATA_KEY]
            info = json.loads(text)
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise IsscliError(f"{path} is not a readable resume file ({error})", "start afresh with --force") from None
    if isinstance(info, dict) and info.get("version") != FORMAT_VERSION:
        raise IsscliError(f"{path} has resume format {info.get('version')!r}", "start afresh with --force")
    if metadata.get(DIGEST_KEY) != hashlib.sha256(text.encode()).hexdigest():
        raise IsscliError(f"{path} was changed since isscli wrote it (its state does not match its checksum)",
                          FOREIGN)
    info = checked_info(info, path)
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optimizer": {}, "rng": {}, "hook": {}, "carried": {}}
    for name, tensor in tensors.items():
        kind, _, rest = name.partition(".")
        if kind not in groups:
            raise IsscliError(f"resume file {path} holds a tensor {name!r} that no resume state has", FOREIGN)
        groups[kind][rest if kind != "optimizer" else name] = tensor
    try:
        optimizer = _join_optimizer(groups["optimizer"], info.pop("optimizer"))
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise IsscliError(f"resume file {path}: its optimizer state does not fit its tensors ({error})", FOREIGN) \
            from None
    return RunState(info.pop("epoch"), groups["model"], optimizer, groups["rng"], info, groups["hook"],
                    groups["carried"])


def capture_rng() -> dict[str, torch.Tensor]:
    """CPU and CUDA generator states (dropout draws from them)."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def restore_rng(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[f"cuda{i}"] for i in range(len(states) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
