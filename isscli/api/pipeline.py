"""``shrink``: the steps after learning ISS — prune, compact (verified), evaluate, bench — in one call.

Every sweep point, the demo and the benchmark scripts end the same way, so they all call
this. The steps write into one folder (``pruned.safetensors``, ``compact.safetensors`` and
``shrink.json``, the result so far); with ``resume=True`` the steps whose results are in
``shrink.json`` are not run again, so a caller may run the cheap steps now and the timing
later, when the machine is quiet (the sweep does: bench only after every training).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isscli.api.benching import BenchRequest, BenchResult, bench
from isscli.api.common import PathLike
from isscli.api.pruning import CompactRequest, PruneRequest, compact, prune
from isscli.api.scoring import EvaluateRequest, EvaluateResult, evaluate
from isscli.atomic import atomic_write_text, output_lock
from isscli.checkpoint import load_checkpoint
from isscli.errors import IsscliError, OutputError
from isscli.observer import Observer, SilentObserver
from isscli.provenance import lineage, plain

RESULT_FILE = "shrink.json"
PRUNED, COMPACTED = "pruned.safetensors", "compact.safetensors"
#: The models ``evaluate`` may name: the baseline, the pruned (dense-shaped) and the compacted model.
ROLES = ("baseline", "pruned", "compact")
#: What the folder holds once every step is done.
RESULT_FILES = (RESULT_FILE, PRUNED, COMPACTED)


@dataclass(kw_only=True)
class ShrinkRequest:
    """Prune ``checkpoint`` (ISS learned), compact it, score the models in ``evaluate``, bench against ``baseline``."""

    checkpoint: PathLike
    folder: PathLike
    baseline: PathLike | None = None  # the dense model; None: the pruned model (same shape as the checkpoint)
    data: PathLike | None = None
    vocab: PathLike | None = None  # for evaluating checkpoints that carry no vocabulary (see EvaluateRequest)
    vocab_order: str | None = None
    group_threshold: float | None = None  # None: the training's weight threshold τ (its provenance), else 0
    evaluate: Sequence[str] = ("baseline", "compact")
    split: str = "test"
    bench: bool = True
    bench_repeats: int = 7
    device: str = "auto"
    resume: bool = False  # keep the results of steps already in FOLDER/shrink.json
    force: bool = False  # replace what FOLDER holds
    model: str | None = None  # the user's own class (file.py:Class): every step runs its forward on tensor `data`
    model_args: str | Mapping[str, Any] | Sequence[Any] | None = None
    objective: str | None = None  # tensor data: regression | classification | tagging
    split_rule: str | None = None

    def user_model(self) -> dict[str, Any]:
        """The fields every step's request shares when the model is the user's own class (none otherwise)."""
        return {"model": self.model, "model_args": self.model_args, "data": self.data} if self.model else {}


@dataclass
class ShrinkResult:
    folder: Path
    pruned: Path | None = None
    compacted: Path | None = None
    group_threshold: float | None = None
    hidden_sizes_before: list[list[int]] | None = None
    hidden_sizes_after: list[list[int]] | None = None
    parameters_before: int | None = None
    parameters_after: int | None = None
    max_output_difference: float | None = None
    evaluations: dict[str, EvaluateResult] = field(default_factory=dict)  # by role
    bench: BenchResult | None = None

    @property
    def speedup(self) -> float | None:
        return self.bench.speedup if self.bench else None

    def to_json(self) -> dict[str, Any]:
        report = {key: value for key, value in vars(self).items() if key not in ("evaluations", "bench")}
        report["evaluations"] = {role: result.to_json() for role, result in self.evaluations.items()}
        report["bench"] = self.bench.to_json() if self.bench else None
        return plain(report)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ShrinkResult:
        paths = {key: Path(raw[key]) if raw.get(key) else None for key in ("folder", "pruned", "compacted")}
        evaluations = {role: EvaluateResult(**value) for role, value in raw.get("evaluations", {}).items()}
        bench_report = BenchResult(**raw["bench"]) if raw.get("bench") else None
        rest = {key: raw.get(key) for key in ("group_threshold", "hidden_sizes_before", "hidden_sizes_after",
                                              "parameters_before", "parameters_after", "max_output_difference")}
        return cls(**paths, **rest, evaluations=evaluations, bench=bench_report)  # type: ignore[arg-type]


def training_threshold(path: Path) -> float:
    """τ of the run that trained this checkpoint (provenance), the natural group threshold of its prune step."""
    for record in lineage(load_checkpoint(path).provenance):
        settings = (record.get("parameters") or {}).get("settings") or {}
        if record.get("operation") in ("train", "finetune"):
            return float(settings.get("weight_threshold") or 0.0)
    return 0.0


def _start(request: ShrinkRequest) -> ShrinkResult:
    folder = Path(request.folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file", "give a folder for the results")
    saved = folder / RESULT_FILE
    if request.resume and saved.is_file():
        return ShrinkResult.from_json(json.loads(saved.read_text(encoding="utf-8")))
    existing = [name for name in (RESULT_FILE, PRUNED, COMPACTED) if (folder / name).exists()]
    if existing and not request.force:
        raise OutputError(f"{folder} already holds {', '.join(existing)}",
                          "pass `force` to replace them, `resume` to keep the finished steps, or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    return ShrinkResult(folder)


def shrink(request: ShrinkRequest, observer: Observer | None = None) -> ShrinkResult:
    """Prune → compact (verified) → evaluate → bench, each step once (see the module docstring).

    Args:
        request: the ISS-trained checkpoint, the results folder, the dense baseline, the corpus,
            which models to evaluate (``"baseline"``, ``"pruned"``, ``"compact"``), whether to bench.
        observer: told each step as it starts.

    Returns:
        A :class:`ShrinkResult`: paths, sizes and parameters before and after, the verified output
        difference, the evaluations by role, and the bench result (its ``speedup``).

    Example:
        >>> result = isscli.shrink(isscli.ShrinkRequest(checkpoint="iss.safetensors", folder="shrunk",
        ...                                             baseline="dense.safetensors", data="ptb/"))
        >>> result.hidden_sizes_after, result.speedup
    """
    observer = observer or SilentObserver()
    unknown = sorted(set(request.evaluate) - set(ROLES))
    if unknown:
        raise IsscliError(f"`evaluate` names unknown model(s) {', '.join(unknown)}", f"choose from {', '.join(ROLES)}")
    with output_lock(request.folder):  # one shrink at a time in a folder
        return _shrink(request, observer)


def _shrink(request: ShrinkRequest, observer: Observer) -> ShrinkResult:
    result = _start(request)
    folder = result.folder

    def save() -> None:
        atomic_write_text(folder / RESULT_FILE, json.dumps(result.to_json(), indent=2) + "\n")

    if result.compacted is None:
        checkpoint = Path(request.checkpoint)
        threshold = request.group_threshold if request.group_threshold is not None else training_threshold(checkpoint)
        observer.note(f"prune {checkpoint} (group norm ≤ {threshold:g})")
        pruned = prune(PruneRequest(checkpoint=checkpoint, group_threshold=threshold,
                                    output=folder / PRUNED, force=True, **request.user_model()))
        observer.note("compact (verified against the pruned model)")
        compacted = compact(CompactRequest(checkpoint=pruned.checkpoint, output=folder / COMPACTED,
                                           force=True, **request.user_model()), observer)
        result.pruned, result.compacted, result.group_threshold = pruned.output, compacted.output, threshold
        result.hidden_sizes_before = (pruned.checkpoint.config or {}).get("hidden_sizes") or \
            compacted.module_sizes_before
        result.hidden_sizes_after = compacted.hidden_sizes
        result.parameters_before, result.parameters_after = compacted.parameters_before, compacted.parameters_after
        result.max_output_difference = compacted.verification.max_output_difference \
            if compacted.verification else None
        save()
    models = {"baseline": Path(request.baseline) if request.baseline else result.pruned,
              "pruned": result.pruned, "compact": result.compacted}
    for role in request.evaluate:
        if role not in result.evaluations:
            observer.note(f"evaluate the {role} model on the {request.split} split")
            result.evaluations[role] = evaluate(EvaluateRequest(
                checkpoint=models[role], data=request.data, vocab=request.vocab, vocab_order=request.vocab_order,
                split=request.split, device=request.device, model=request.model, model_args=request.model_args,
                objective=request.objective, split_rule=request.split_rule))
            save()
    if request.bench and result.bench is None:
        observer.note(f"bench the compact model against {models['baseline']}")
        result.bench = bench(BenchRequest(checkpoint=result.compacted, against=models["baseline"],
                                          repeats=request.bench_repeats, **request.user_model()), observer)
        save()
    return result
