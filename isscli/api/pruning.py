"""``prune`` and ``compact``: zero whole ISS components, then remove them, verifying that nothing changed
(:mod:`isscli.iss.verification`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from isscli.api.common import (
    ConfigSource,
    OutputRequest,
    PathLike,
    SpecSource,
    as_checkpoint,
    checked_output,
    input_paths,
    model_overrides,
    path_text,
    request_inputs,
    resolve_spec,
    write_checkpoint,
)
from isscli.api.user_models import ModelChoice, example_input, model_spec, model_tensors_once, user_source
from isscli.api.validation import checked_arguments
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.parsing import parse_list
from isscli.io.provenance import check_provenance, operation_record, plain
from isscli.iss.spec import GroupSpec, IssSet
from isscli.iss.surgery import (
    SetChange,
    alive_components,
    compact as compact_tensors,
    group_norms,
    prune as prune_tensors,
)
from isscli.iss.verification import (
    CompactionMismatch as CompactionMismatch,  # its home before 0.3: still here
    Verification,
    verify,
)
from isscli.learn.controller.targets import targets_from_sizes
from isscli.live.model import layer_sizes, recurrent_modules
from isscli.live.usermodel import ModelSource, load_user_model
from isscli.models.checkpoint import Checkpoint
from isscli.models.registry import architecture_assumption, config_after_surgery, unknown_forward
from isscli.observer import Observer, SilentObserver

# -- prune ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PruneRequest(OutputRequest, ModelChoice):
    """Zero ISS components: those whose group norm is ≤ ``group_threshold``, or the weakest ones down to
    ``target_hidden`` units per set or to ``keep_fraction`` of each set's units (and weights < ``weight_threshold``).
    Give exactly one of the three."""

    output_tag: ClassVar[str] = "pruned"

    group_threshold: float | None = None
    target_hidden: str | Sequence[int] | None = None  # units per set to keep, in spec order
    keep_fraction: float | None = None  # the share of units every set keeps, in (0, 1]
    weight_threshold: float | None = None
    spec: SpecSource = None
    renames: Mapping[str, str] = field(default_factory=dict)
    data: PathLike | None = None  # with ``model``: tensor data whose rows the groups are traced on


@dataclass
class SetPruning:
    name: str
    components: int
    alive_before: int
    alive_after: int
    norm_min: float  # of the group norms ‖w_k‖ of the nonzero components before pruning: where a threshold bites
    norm_median: float


@dataclass
class PruneResult:
    checkpoint: Checkpoint  # the pruned model, same shapes as the input
    output: Path | None
    group_threshold: float | None
    weight_threshold: float | None
    sets: list[SetPruning]
    weight_sparsity_before: float
    weight_sparsity_after: float
    input_file: Path | None = None  # the checkpoint file read (None: in memory)

    def to_json(self) -> JSONObject:
        fields = {key: value for key, value in vars(self).items() if key not in ("checkpoint", "input_file")}
        report: JSONObject = plain({"checkpoint": self.input_file, **fields})
        return report


@checked_arguments
def prune(request: PruneRequest) -> PruneResult:
    """Zero whole ISS components (and optionally small single weights); the shapes stay as they are.

    Args:
        request: the checkpoint, ``group_threshold`` τ_g (components with ‖w_k‖ ≤ τ_g are zeroed),
            optionally ``weight_threshold`` (single weights with |w| below it), the spec
            (derived when None) and where to write the result.

    Returns:
        A :class:`PruneResult`: the pruned checkpoint, and per set how many components were
        nonzero before and after.

    Example::

        result = isscli.prune(isscli.PruneRequest(checkpoint="iss.safetensors", group_threshold=1e-4,
                                                  output="pruned.safetensors"))
        [(s.name, s.alive_after) for s in result.sets]
    """
    check_prune_request(request)
    output = checked_output(request.output, request_inputs(request), request.force)
    loaded = as_checkpoint(request.checkpoint)
    check_provenance(loaded.provenance, loaded.path)  # copied into the output's: a malformed one is refused first
    source = user_source(request)
    parameters: dict[str, Any] = {}
    if source is not None:  # the groups from the user's forward; a tied weight held once, as the model holds it
        model = load_user_model(source, loaded)
        example = example_input(request.data, request.input_shape)
        spec = model_spec(model, example, request.spec, request.renames)
        loaded = Checkpoint(model_tensors_once(model), loaded.config, loaded.provenance, loaded.path, loaded.sha256,
                            loaded.masks, loaded.mask_info, loaded.vocabulary)
        parameters = {**source.describe(), "inputs": example.description}
    else:
        spec = resolve_spec(loaded, request.spec, request.renames)
    cut = weakest_components(loaded.tensors, spec, request) if request.group_threshold is None else None
    pruned = prune_tensors(loaded.tensors, spec, request.group_threshold or 0.0, request.weight_threshold, cut)
    refuse_a_dead_model(loaded.tensors, spec, pruned.sets, request)
    parameters = {"group_threshold": request.group_threshold, "target_hidden": request.target_hidden,
                  "keep_fraction": request.keep_fraction, "weight_threshold": request.weight_threshold,
                  "spec": spec.to_json(), **parameters}
    checkpoint = Checkpoint(pruned.tensors, loaded.config, operation_record("prune", parameters, loaded),
                            masks=loaded.masks, mask_info=loaded.mask_info,  # same shapes: masks still fit
                            vocabulary=loaded.vocabulary)
    if output is not None:
        write_checkpoint(checkpoint, output, input_paths(loaded), request.force)
    norms = [alive_norms(loaded.tensors, iss) for iss in spec.sets]
    sets = [SetPruning(c.name, c.components, c.before, c.after, float(n.min()) if n.numel() else 0.0,
                       float(n.median()) if n.numel() else 0.0) for c, n in zip(pruned.sets, norms, strict=True)]
    return PruneResult(checkpoint, output, request.group_threshold, request.weight_threshold, sets,
                       pruned.sparsity_before, pruned.sparsity_after, loaded.path)


def check_prune_request(request: PruneRequest) -> None:
    ways = ("group_threshold", "target_hidden", "keep_fraction")
    given = [name for name in ways if getattr(request, name) is not None]
    if len(given) != 1:
        raise IsscliError(f"give one of `group_threshold`, `target_hidden` or `keep_fraction` (got {len(given)})",
                          "e.g. `group_threshold`=1e-4, or `target_hidden`=100,80 to keep the strongest units")
    for name in ("group_threshold", "weight_threshold"):
        value = getattr(request, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise IsscliError(f"`{name}` must be a number ≥ 0 (got {value})", f"give e.g. `{name}`=1e-4")
    if request.keep_fraction is not None and not 0 < request.keep_fraction <= 1:
        raise IsscliError(f"`keep_fraction` {request.keep_fraction} is outside (0, 1]", "give e.g. `keep_fraction`=0.5")


def refuse_a_dead_model(tensors: dict[str, torch.Tensor], spec: GroupSpec, changes: Sequence[SetChange],
                        request: PruneRequest) -> None:
    """Refuse, before anything is written, a prune that leaves a set with no unit: no model is left to compact or
    to run (a set that had none before is the input's own state, not this prune's doing)."""
    for iss, change in zip(spec.sets, changes, strict=True):
        if change.before > 0 and change.after == 0:
            largest = float(group_norms(tensors, iss).max())
            given = [f"`{name}` {getattr(request, name):g}" for name in ("group_threshold", "weight_threshold")
                     if getattr(request, name) is not None]
            raise IsscliError(f"{' and '.join(given)} would zero every one of the {change.before} nonzero components "
                              f"of set {iss.name!r} (its largest group norm is {largest:.3g}): the model would be dead",
                              f"give a `group_threshold` below {largest:.3g}, or a size with `target_hidden`")


def alive_norms(tensors: dict[str, torch.Tensor], iss: IssSet) -> torch.Tensor:
    """The group norms of a set's nonzero components."""
    return group_norms(tensors, iss)[alive_components(tensors, iss)]


def weakest_components(tensors: dict[str, torch.Tensor], spec: GroupSpec, request: PruneRequest) -> list[torch.Tensor]:
    """Per set, the components to zero: the weakest (smallest ‖w_k‖) beyond the units the request keeps."""
    if request.target_hidden is not None:
        sizes = parse_list(request.target_hidden, int, "target_hidden", "unit counts, one per ISS set", "100,80",
                           minimum=1)
        keep = targets_from_sizes(spec, sizes)
    else:
        keep = {iss.name: max(1, math.floor(float(request.keep_fraction or 1) * iss.components)) for iss in spec.sets}
    doomed = []
    for iss in spec.sets:
        norms = group_norms(tensors, iss)
        mask = torch.zeros(iss.components, dtype=torch.bool)
        if keep[iss.name] > iss.components:
            raise IsscliError(f"`target_hidden`: set {iss.name} has {iss.components} units, fewer than "
                              f"{keep[iss.name]}", f"give at most {iss.components}")
        mask[norms.argsort(descending=True, stable=True)[keep[iss.name]:]] = True
        doomed.append(mask)
    return doomed


# -- compact ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class CompactRequest(OutputRequest, ModelChoice):
    """Remove every ISS component whose receivers are all zero; the smaller model computes the same outputs.

    The check runs the model's forward: isscli's own family (the checkpoint's config, or ``arch``/``config``), or
    the user's class (``model``) on ``data``'s rows or an ``input_shape``. Without any of them nothing can be run:
    refused unless ``verify=False``."""

    output_tag: ClassVar[str] = "compact"

    spec: SpecSource = None
    renames: Mapping[str, str] = field(default_factory=dict)
    verify: bool = True  # run both models; refuse to write if their outputs differ
    arch: str | None = None
    config: ConfigSource = None
    data: PathLike | None = None  # with ``model``: tensor data whose first rows the check runs on


@dataclass
class SetCompaction:
    name: str
    components_before: int
    components_after: int
    kept: list[int]  # indices of the kept components


@dataclass
class CompactResult:
    checkpoint: Checkpoint  # the smaller model
    output: Path | None
    sets: list[SetCompaction]
    parameters_before: int
    parameters_after: int
    verification: Verification | None  # None: not verified (``verify=False``)
    assumption: str | None = None  # a checkpoint without a config run as one of isscli's families: said, recorded
    module_sizes: list[list[int]] | None = None  # the user's own model (``model``): its layers' sizes after …
    module_sizes_before: list[list[int]] | None = None  # … and before
    input_file: Path | None = None  # the checkpoint file read (None: in memory)
    model: ModelSource | None = None  # the user's own class and its arguments

    @property
    def hidden_sizes(self) -> list[list[int]] | None:
        """Units per layer and direction after compaction (of every recurrent module, for the user's own model)."""
        return self.checkpoint.config.hidden_sizes if self.checkpoint.config else self.module_sizes

    def to_json(self) -> JSONObject:
        check = self.verification
        return {"checkpoint": path_text(self.input_file), "output": path_text(self.output),
                "sets": [{"name": s.name, "components_before": s.components_before,
                          "components_after": s.components_after} for s in self.sets],
                "parameters_before": self.parameters_before, "parameters_after": self.parameters_after,
                "max_output_difference": check.max_output_difference if check else None,
                "verified_on": check.inputs if check else None,
                "relative_difference": check.relative if check else None, "assumption": self.assumption,
                "model": self.model.describe() if self.model else None}


@checked_arguments
def compact(request: CompactRequest, observer: Observer | None = None) -> CompactResult:
    """Remove the ISS components whose receivers are all zero, and check that the outputs did not change.

    Args:
        request: the pruned checkpoint, the spec (derived when None), where to write, and
            ``verify`` (default True): run both models on random inputs and refuse, with
            :class:`CompactionMismatch`, when their outputs differ by more than rounding.
        observer: told when a checkpoint without a config cannot be verified.

    Returns:
        A :class:`CompactResult`: the smaller checkpoint, units before/after per set, parameter
        counts and the verification's figures.

    Example::

        small = isscli.compact(isscli.CompactRequest(checkpoint="pruned.safetensors"))
        small.hidden_sizes, small.verification.max_output_difference
    """
    observer = observer or SilentObserver()
    output = checked_output(request.output, request_inputs(request), request.force)
    loaded = as_checkpoint(request.checkpoint)
    check_provenance(loaded.provenance, loaded.path)  # copied into the output's: a malformed one is refused first
    source = user_source(request, observer)
    if source is not None:
        return compact_user_model(request, source, loaded, output)
    spec = resolve_spec(loaded, request.spec, request.renames)
    result = compact_tensors(loaded.tensors, spec)
    new_config = config_after_surgery(loaded.config, result.tensors)
    overrides = model_overrides(request.config)
    verification = None
    assumption = architecture_assumption(loaded, request.arch, overrides)
    if request.verify:
        if loaded.config is None and request.arch is None and "family" not in (overrides or {}):
            error = unknown_forward(loaded)
            raise IsscliError(f"cannot verify the compaction: {error.message}",
                              f"{error.hint}; or `verify`=False to write it unverified")
        if assumption:
            observer.note(f"assumed: {assumption}", True)
        verification = verify(loaded, result.tensors, request.arch, overrides)
    else:
        observer.note("not verified (`verify`=False): the compacted model was not run", True)
    kept = {change.name: change.kept for change in result.sets}
    parameters = {"spec": spec.to_json(), "verify": request.verify}
    provenance = operation_record("compact", parameters, loaded, kept_units=kept, assumed=assumption,
                                  max_output_difference=verification and verification.max_output_difference)
    checkpoint = Checkpoint(result.tensors, new_config, provenance, vocabulary=loaded.vocabulary)
    if output is not None:
        write_checkpoint(checkpoint, output, input_paths(loaded), request.force)
    sets = [SetCompaction(c.name, c.components, c.after, c.kept) for c in result.sets]
    return CompactResult(checkpoint, output, sets, result.parameters_before, result.parameters_after, verification,
                         assumption, input_file=loaded.path)


def compact_user_model(request: CompactRequest, source: ModelSource, loaded: Checkpoint,
                       output: Path | None) -> CompactResult:
    """Compaction through the user's own class: its forward derives the groups (unless a spec is given) and checks
    the smaller model (:func:`~isscli.live.compact.compact_module`, always verified)."""
    from isscli.live.compact import TOLERANCE as MODULE_TOLERANCE, compact_module

    model = load_user_model(source, loaded)
    example = example_input(request.data, request.input_shape)
    spec = model_spec(model, example, request.spec, request.renames)
    compaction = compact_module(model, example.arguments, spec)
    tensors = model_tensors_once(compaction.model)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    verification = Verification(compaction.max_difference, 1.0, MODULE_TOLERANCE, dtype, example.description, True)
    kept = {change.name: change.kept for change in compaction.sets}
    parameters = {"spec": spec.to_json(), "verify": True, **source.describe(), "inputs": example.description}
    provenance = operation_record("compact", parameters, loaded, kept_units=kept,
                                  max_output_difference=compaction.max_difference)
    checkpoint = Checkpoint(tensors, config_after_surgery(loaded.config, tensors), provenance,
                            vocabulary=loaded.vocabulary)
    if output is not None:
        write_checkpoint(checkpoint, output, input_paths(loaded), request.force)
    sets = [SetCompaction(c.name, c.components, c.after, c.kept) for c in compaction.sets]
    return CompactResult(checkpoint, output, sets, compaction.parameters_before, compaction.parameters_after,
                         verification, module_sizes=all_layer_sizes(compaction.model),
                         module_sizes_before=all_layer_sizes(model), input_file=loaded.path,
                         model=source)


def all_layer_sizes(model: nn.Module) -> list[list[int]]:
    """Units per layer (and direction) of every recurrent module, in order."""
    return [size for module in recurrent_modules(model).values() for size in layer_sizes(module)]


