"""``shrink``: the steps after learning ISS — prune, compact (verified), evaluate, bench — in one call.

Every sweep point, the demo and the benchmark scripts end the same way, so they all call
this. The steps write into one folder (``pruned.safetensors``, ``compact.safetensors`` and
``shrink.json``, the result so far); with ``resume=True`` the steps whose results are in
``shrink.json`` are not run again, so a caller may run the cheap steps now and the timing
later, when the machine is quiet (the sweep does: bench only after every training).

``shrink.json`` records the fingerprints of what its results were made from (:func:`fingerprints`):
a resume with other inputs — another checkpoint, corpus, τ — is refused, naming what changed, never
answered with the old results. The folder's manifest (:mod:`isscli.io.manifest`) says which files isscli
wrote there: no other file is ever replaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict

from isscli.api.benching import BenchRequest, bench
from isscli.api.common import PathLike
from isscli.api.pruning import CompactRequest, PruneRequest, compact, prune
from isscli.api.scoring import (
    GATE_FIELDS,
    MODEL_FIELDS,
    VOCABULARY_FIELDS,
    EvaluateRequest,
    EvaluateResult,
    QualityGate,
    VocabularyRecord,
    evaluate,
)
from isscli.api.user_models import check_tensor_data
from isscli.api.validation import Checked, checked_arguments
from isscli.data.fingerprint import data_fingerprint
from isscli.data.resolve import resolve_data
from isscli.io import manifest
from isscli.io.atomic import atomic_write_text, output_lock
from isscli.io.errors import CheckpointError, IsscliError, OutputError
from isscli.io.jsonfile import JSONObject
from isscli.io.parsing import parse_list
from isscli.io.provenance import plain
from isscli.models.checkpoint import load_checkpoint
from isscli.observer import Observer, SilentObserver
from isscli.runtime.report import BenchResult

RESULT_FILE = "shrink.json"
RESULT_SCHEMA = "isscli.shrink/1"
PRUNED, COMPACTED = "pruned.safetensors", "compact.safetensors"
#: The models ``evaluate`` may name: the baseline, the pruned (dense-shaped) and the compacted model.
ROLES = ("baseline", "pruned", "compact")
#: What the folder holds once every step is done.
RESULT_FILES = (RESULT_FILE, PRUNED, COMPACTED)
#: The fields of ``shrink.json`` and their kinds (:func:`isscli.io.manifest.validated`), and of what it nests.
RECORD_FIELDS = {"schema": "string", "inputs": "object", "folder": "string", "pruned": "string?",
                 "compacted": "string?", "group_threshold": "number?", "hidden_sizes_before": "list?",
                 "hidden_sizes_after": "list?", "parameters_before": "integer?", "parameters_after": "integer?",
                 "max_output_difference": "number?", "evaluations": "object", "bench": "object?"}
EVALUATION_FIELDS = {"checkpoint": "string", "data": "string", "split": "string", "loss": "number",
                     "perplexity": "number?", "count": "integer", "parameters": "integer", "gate": "object?",
                     "unknown": "object?", "model": "object?", "vocabulary": "object?"}
#: The records an evaluation nests: its field, the type it is read into (None: the user model's own record) and
#: the kinds of the fields.
NESTED = (("gate", QualityGate, GATE_FIELDS), ("vocabulary", VocabularyRecord, VOCABULARY_FIELDS),
          ("model", None, MODEL_FIELDS))
BENCH_FIELDS = {"schema": "string", "settings": "object", "machine": "object", "models": "list",
                "comparison": "object?"}
RESUME_HINT = "run without `resume` (with `force` to replace the folder's results), or choose another folder"


class UserModel(TypedDict, total=False):
    """The fields every step's request shares when the model is the user's own class."""

    model: str | None
    model_args: str | Mapping[str, Any] | Sequence[Any] | None
    data: PathLike | None


@dataclass(kw_only=True)
class ShrinkRequest(Checked):
    """Prune ``checkpoint`` (ISS learned), compact it, score the models in ``evaluate``, bench against ``baseline``."""

    checkpoint: PathLike
    folder: PathLike
    baseline: PathLike | None = None  # the dense model; None: the pruned model (same shape as the checkpoint)
    data: PathLike | None = None
    vocab: PathLike | None = None  # for evaluating checkpoints that carry no vocabulary (see EvaluateRequest)
    vocab_order: str | None = None
    group_threshold: float | None = None  # None: the training's weight threshold τ (its provenance), else 0
    evaluate: str | Sequence[str] = ("baseline", "compact")  # or "baseline,pruned,compact"
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

    @property
    def roles(self) -> tuple[str, ...]:
        """The models ``evaluate`` names, as a tuple (a comma-separated string is split)."""
        if isinstance(self.evaluate, str):
            return tuple(parse_list(self.evaluate, str, "evaluate", "model names", "baseline,pruned,compact"))
        return tuple(self.evaluate)

    def user_model(self) -> UserModel:
        """The fields every step's request shares when the model is the user's own class (none otherwise)."""
        return UserModel(model=self.model, model_args=self.model_args, data=self.data) if self.model else UserModel()


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

    def to_json(self) -> JSONObject:
        report: JSONObject = plain({**vars(self), "evaluations": {role: result.to_json() for role, result
                                                                  in self.evaluations.items()},
                                    "bench": self.bench.to_json() if self.bench else None})
        return report

    @classmethod
    def from_json(cls, raw: JSONObject, folder: Path) -> ShrinkResult:
        """The result ``shrink.json`` records (validated by :func:`read_result`), its files in ``folder`` where it
        lies now (a folder may have been moved or copied since)."""
        return cls(folder, pruned=folder / PRUNED if raw.get("pruned") else None,
                   compacted=folder / COMPACTED if raw.get("compacted") else None,
                   group_threshold=raw.get("group_threshold"), hidden_sizes_before=raw.get("hidden_sizes_before"),
                   hidden_sizes_after=raw.get("hidden_sizes_after"), parameters_before=raw.get("parameters_before"),
                   parameters_after=raw.get("parameters_after"),
                   max_output_difference=raw.get("max_output_difference"),
                   evaluations={role: EvaluateResult.from_json(value) for role, value in raw["evaluations"].items()},
                   bench=BenchResult.from_json(raw["bench"]) if raw.get("bench") else None)


def read_result(path: Path) -> JSONObject:
    """``shrink.json``, checked field by field before anything in it is used: one line naming the field."""
    raw = manifest.read_record(path, "shrink record", RECORD_FIELDS, RESUME_HINT)
    where = f"shrink record {path}"
    if raw["schema"] != RESULT_SCHEMA:
        raise IsscliError(f'{where}: field "schema" is {raw["schema"][:40]!r}, not {RESULT_SCHEMA!r}', RESUME_HINT)
    for role, value in raw["evaluations"].items():
        if role not in ROLES:
            raise IsscliError(f'{where}: field "evaluations.{role[:40]}" is not one of {", ".join(ROLES)}',
                              RESUME_HINT)
        at = f"evaluations.{role}"
        manifest.validated(value, EVALUATION_FIELDS, where, RESUME_HINT, at)
        _fits(value, EvaluateResult, where, at)
        for name, cls, kinds in NESTED:
            if value.get(name) is not None:
                manifest.validated(value[name], kinds, where, RESUME_HINT, f"{at}.{name}")
                if cls is not None:
                    _fits(value[name], cls, where, f"{at}.{name}")
    if raw.get("bench") is not None:  # optional fields may be null or absent
        manifest.validated(raw["bench"], BENCH_FIELDS, where, RESUME_HINT, "bench")
        _fits(raw["bench"], BenchResult, where, "bench")
        BenchResult.from_json(raw["bench"], where, RESUME_HINT, "bench")  # and the fields it nests
    return raw


def _fits(value: JSONObject, cls: type, where: str, at: str) -> None:
    """``cls(**value)`` will work: no field it lacks, none it does not know (else one line naming the field)."""
    names = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    strange = sorted(set(value) - names) or [name for name in required if name not in value]
    if strange:
        verb = "is missing" if strange[0] in names else "is not a field it has"
        raise IsscliError(f'{where}: field "{at}.{strange[0][:40]}" {verb}', RESUME_HINT)


def training_threshold(path: Path) -> float:
    """τ of the run that trained this checkpoint (provenance), the natural group threshold of its prune step.

    The provenance is read like any file a user hands over: a record of the wrong shape, or a τ that is not
    a number ≥ 0, is one line naming the checkpoint and the field, not an error about `group_threshold`,
    which the user did not give."""
    provenance: object = load_checkpoint(path).provenance
    where, hint = "provenance", "give the prune step's threshold with `group_threshold`"
    while provenance is not None:
        if not isinstance(provenance, dict):
            raise CheckpointError(f"{path}: its {where} is not an object", hint)
        if provenance.get("operation") in ("train", "finetune"):
            parameters = provenance.get("parameters") or {}
            settings = parameters.get("settings") if isinstance(parameters, dict) else None
            if not isinstance(parameters, dict) or not isinstance(settings or {}, dict):
                name = "parameters" if not isinstance(parameters, dict) else "parameters.settings"
                raise CheckpointError(f"{path}: its {where}.{name} is not an object", hint)
            value = (settings or {}).get("weight_threshold")
            if value is None:
                return 0.0
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise CheckpointError(f"{path}: its {where}.parameters.settings.weight_threshold (the training's τ) "
                                      f"is {str(value)[:40]!r}, not a number ≥ 0", hint)
            return float(value)
        provenance, where = provenance.get("parent_provenance"), f"{where}.parent_provenance"
    return 0.0


def fingerprints(request: ShrinkRequest, threshold: float) -> JSONObject:
    """What the results depend on, by content (paths may change, files may be replaced): the checkpoint's and
    the baseline's sha256, the corpus's content when a step reads it, the vocabulary, τ, the models evaluated,
    the split and the user's model. ``device``, ``bench_repeats`` and ``bench`` are not in it: they change
    where and how long the steps run, not what they compute."""
    folder = Path(request.folder)
    baseline = Path(request.baseline) if request.baseline is not None else None
    if baseline is not None and os.path.abspath(baseline) == os.path.abspath(folder / PRUNED):
        baseline = None  # the folder's own pruned model, which is what no baseline means
    data = request.data
    reads_data = bool(request.roles) or request.model is not None
    if data is None and reads_data:
        data = resolve_data(None, download=False).path
    return {
        "checkpoint": manifest.file_fingerprint(request.checkpoint, "checkpoint"),
        "baseline": manifest.file_fingerprint(baseline, "baseline") if baseline is not None else None,
        "data": data_fingerprint(data) if reads_data and data is not None else None,
        "vocab": manifest.file_fingerprint(request.vocab, "vocabulary") if request.vocab is not None else None,
        "vocab_order": request.vocab_order,
        "group_threshold": threshold,
        "evaluate": sorted(request.roles),
        "split": request.split,
        "model": request.model,
        "model_args": plain(request.model_args),
        "objective": request.objective,
        "split_rule": request.split_rule,
    }


def _start(request: ShrinkRequest, inputs: JSONObject) -> ShrinkResult:
    """The result so far: the folder's, on a resume with the same inputs; else a new one (the folder checked)."""
    folder = Path(request.folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file", "give a folder for the results")
    saved = folder / RESULT_FILE
    if request.resume and saved.is_file():
        files = manifest.read_manifest(folder)
        if files is None:  # an older isscli's folder, or not isscli's: nothing in it is trusted
            manifest.check(folder, RESULT_FILES)
        try:
            raw = read_result(saved)
        except IsscliError as error:
            if manifest.owns(folder, RESULT_FILE):
                raise
            raise IsscliError(f"{error.message}, and it was changed since isscli wrote it",
                              manifest.NOT_OURS_HINT) from None
        changed = manifest.changes(raw["inputs"], inputs)
        if changed:
            raise IsscliError(f"{saved} holds results of other inputs (changed: {', '.join(changed)})", RESUME_HINT)
        manifest.check(folder, RESULT_FILES)
        result = ShrinkResult.from_json(raw, folder)
        missing = [path.name for path in (result.pruned, result.compacted) if path and not path.is_file()]
        if missing:
            raise IsscliError(f"{saved} records {missing[0]}, which is not in {folder}", RESUME_HINT)
        return result
    manifest.check(folder, RESULT_FILES)
    existing = [name for name in RESULT_FILES if (folder / name).exists()]
    if existing and not request.force:
        raise OutputError(f"{folder} already holds {', '.join(existing)}",
                          "pass `force` to replace them, `resume` to keep the finished steps, or choose another folder")
    manifest.remove(folder, [RESULT_FILE])  # replaced: no record of the old results is left to mix with the new
    folder.mkdir(parents=True, exist_ok=True)
    return ShrinkResult(folder)


@checked_arguments
def shrink(request: ShrinkRequest, observer: Observer | None = None) -> ShrinkResult:
    """Prune → compact (verified) → evaluate → bench, each step once (see the module docstring).

    Args:
        request: the ISS-trained checkpoint, the results folder, the dense baseline, the corpus,
            which models to evaluate (``"baseline"``, ``"pruned"``, ``"compact"``), whether to bench.
        observer: told each step as it starts.

    Returns:
        A :class:`ShrinkResult`: paths, sizes and parameters before and after, the verified output
        difference, the evaluations by role, and the bench result (its ``speedup``).

    Example::

        result = isscli.shrink(isscli.ShrinkRequest(checkpoint="iss.safetensors", folder="shrunk",
                                                    baseline="dense.safetensors", data="ptb/"))
        result.hidden_sizes_after, result.speedup
    """
    observer = observer or SilentObserver()
    unknown = sorted(set(request.roles) - set(ROLES))
    if unknown:
        raise IsscliError(f"`evaluate` names unknown model(s) {', '.join(unknown)}", f"choose from {', '.join(ROLES)}")
    if request.roles:  # the steps that score read the data as the objective says: checked before any step
        check_tensor_data(request)
    with output_lock(request.folder):  # one shrink at a time in a folder
        return _shrink(request, observer)


def _shrink(request: ShrinkRequest, observer: Observer) -> ShrinkResult:
    checkpoint = Path(request.checkpoint)
    threshold = request.group_threshold if request.group_threshold is not None else training_threshold(checkpoint)
    inputs = fingerprints(request, threshold)
    result = _start(request, inputs)
    folder = result.folder

    def save() -> None:
        with manifest.writing(folder, RESULT_FILE):
            atomic_write_text(folder / RESULT_FILE, json.dumps(
                {"schema": RESULT_SCHEMA, "inputs": inputs, **result.to_json()}, indent=2) + "\n")

    pruned, compacted = result.pruned, result.compacted
    if pruned is None or compacted is None:
        pruned, compacted = _prune_and_compact(request, result, threshold, observer)
        save()
    models = {"baseline": Path(request.baseline) if request.baseline else pruned, "pruned": pruned,
              "compact": compacted}
    for role in request.roles:
        if role not in result.evaluations:
            observer.note(f"evaluate the {role} model on the {request.split} split")
            result.evaluations[role] = evaluate(EvaluateRequest(
                checkpoint=models[role], data=request.data, vocab=request.vocab, vocab_order=request.vocab_order,
                split=request.split, device=request.device, model=request.model, model_args=request.model_args,
                objective=request.objective, split_rule=request.split_rule))
            save()
    if request.bench and result.bench is None:
        observer.note(f"bench the compact model against {models['baseline']}")
        result.bench = bench(BenchRequest(checkpoint=compacted, against=models["baseline"],
                                          repeats=request.bench_repeats, **request.user_model()), observer)
        save()
    return result


def _prune_and_compact(request: ShrinkRequest, result: ShrinkResult, threshold: float,
                       observer: Observer) -> tuple[Path, Path]:
    """The first step: the pruned and the compacted model (verified) in the folder, their sizes in ``result``."""
    checkpoint, folder = Path(request.checkpoint), result.folder
    observer.note(f"prune {checkpoint} (group norm ≤ {threshold:g})")
    try:
        with manifest.writing(folder, PRUNED):
            pruned = prune(PruneRequest(checkpoint=checkpoint, group_threshold=threshold,
                                        output=folder / PRUNED, force=True, **request.user_model()))
    except IsscliError as error:
        if request.group_threshold is None:  # τ came from the file, not from the caller: say so
            error.message = f"τ = {threshold:g}, the weight threshold in {checkpoint}'s provenance: {error.message}"
        raise
    observer.note("compact (verified against the pruned model)")
    try:
        with manifest.writing(folder, COMPACTED):
            compacted = compact(CompactRequest(checkpoint=pruned.checkpoint, output=folder / COMPACTED,
                                               force=True, **request.user_model()), observer)
    except IsscliError:
        manifest.remove(folder, [PRUNED])  # the step did not finish: leave none of it behind
        raise
    result.pruned, result.compacted, result.group_threshold = folder / PRUNED, folder / COMPACTED, threshold
    result.hidden_sizes_before = (pruned.checkpoint.config.hidden_sizes if pruned.checkpoint.config else None) or \
        compacted.module_sizes_before
    result.hidden_sizes_after = compacted.hidden_sizes
    result.parameters_before, result.parameters_after = compacted.parameters_before, compacted.parameters_after
    result.max_output_difference = compacted.verification.max_output_difference \
        if compacted.verification else None
    return result.pruned, result.compacted
