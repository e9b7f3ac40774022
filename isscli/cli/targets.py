"""``--target-hidden`` / ``--target-params`` / ``--target-speedup`` of ``train`` and ``finetune``.

The flags, their validation and the translation of a parameter budget or a speed-up into
units per ISS set; the controller itself is :mod:`isscli.controller`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import typer
from torch import nn

from isscli.cli.output import note
from isscli.controller import (
    ControllerSettings,
    IssController,
    check_layout,
    check_targets,
    parse_count,
    parse_sizes,
    sized_config,
    sizes_for_parameters,
    sizes_for_speedup,
    speedup_meter,
    targets_from_sizes,
    units_of,
)
from isscli.errors import IsscliError
from isscli.recipes import PAPER_THRESHOLD, TrainSettings
from isscli.runstate import load_run_state
from isscli.spec import GroupSpec

TargetHiddenOption = typer.Option(
    None, "--target-hidden",
    help="Learn ISS down to these units per ISS set, in spec order (one per direction of a bidirectional layer), "
         "e.g. 400,350: a controller steers λ per set and ends with exactly these sizes.",
)
TargetParamsOption = typer.Option(
    None, "--target-params",
    help="Learn ISS down to this many parameters after compaction (e.g. 20M, 1.5k): the same share of units is "
         "kept in every set, the largest that fits.",
)
TargetSpeedupOption = typer.Option(
    None, "--target-speedup",
    help="Learn ISS down to a model this many times faster than the dense one, as measured on this machine "
         "(bench harness, batch 10 × 30 steps): the same share of units is kept in every set.",
)
PruneEpochsOption = typer.Option(
    None, "--prune-epochs", help="With a target: epochs of the pruning phase (default: --epochs, else the recipe's)."
)
RecoverEpochsOption = typer.Option(
    None, "--recover-epochs",
    help="With a target: epochs of λ = 0 fine-tuning of the survivors after pruning (default: a quarter of "
         "--prune-epochs, at least 1).",
)

TARGET_FLAGS = ("--target-hidden", "--target-params", "--target-speedup")


@dataclass
class TargetRequest:
    """The target flags of one command line."""

    hidden: Optional[str] = None
    params: Optional[str] = None
    speedup: Optional[float] = None
    prune_epochs: Optional[int] = None
    recover_epochs: Optional[int] = None

    @property
    def flags(self) -> list[str]:
        given = (self.hidden is not None, self.params is not None, self.speedup is not None)
        return [flag for flag, present in zip(TARGET_FLAGS, given, strict=True) if present]

    @property
    def given(self) -> bool:
        return bool(self.flags)

    def check(self) -> TargetRequest:
        if len(self.flags) > 1:
            raise IsscliError(f"give one target, not {' and '.join(self.flags)}",
                              "choose --target-hidden, --target-params or --target-speedup")
        if not self.given and (self.prune_epochs is not None or self.recover_epochs is not None):
            raise IsscliError("--prune-epochs and --recover-epochs belong to a target run",
                              "add --target-hidden, --target-params or --target-speedup, or drop them")
        return self


def target_schedule(settings: TrainSettings, request: TargetRequest) -> TrainSettings:
    """With a target, the run is ``prune + recover`` epochs and τ defaults to the paper's 1e-4 even without λ."""
    if not request.given:
        return settings
    prune = request.prune_epochs if request.prune_epochs is not None else settings.epochs
    recover = request.recover_epochs if request.recover_epochs is not None else max(1, prune // 4)
    if prune < 1 or recover < 1:
        raise IsscliError("--prune-epochs and --recover-epochs must be ≥ 1",
                          "the survivors need at least one epoch with λ = 0 after pruning")
    request.prune_epochs, request.recover_epochs = prune, recover
    changes: dict[str, Any] = {"epochs": prune + recover}
    if settings.threshold is None:
        changes["threshold"] = PAPER_THRESHOLD
    return settings.updated(changes)


def saved_targets(resume_path: Path) -> Optional[dict[str, Any]]:
    """The controller settings of an interrupted run (so a resumed speed target is not re-measured)."""
    if not resume_path.is_file():
        return None
    return load_run_state(resume_path).info.get("hooks", {}).get("controller", {}).get("settings")


def make_controller(
    request: TargetRequest, model: nn.Module, spec: GroupSpec, settings: TrainSettings, device: torch.device,
    resume_path: Optional[Path] = None,
) -> IssController:
    """Targets per set from the request, checked against the model; printed, and the controller to reach them."""
    flag = request.flags[0]
    units = units_of(model, spec)
    current = [units[iss.name] for iss in spec.sets]
    config = model.config
    origin: dict[str, Any]
    saved = saved_targets(resume_path) if resume_path is not None and request.speedup is not None else None
    if saved is not None:
        targets, origin = dict(saved["targets"]), dict(saved["origin"])
    elif request.hidden is not None:
        sizes = parse_sizes(request.hidden)
        targets = targets_from_sizes(spec, sizes)
        origin = {"flag": flag, "value": request.hidden}
    elif request.params is not None:
        limit = parse_count(request.params)
        check_layout(config, spec, flag)
        sizes, count = sizes_for_parameters(config, limit, current)
        targets = targets_from_sizes(spec, sizes, flag)
        origin = {"flag": flag, "value": request.params, "limit": limit, "parameters": count}
    else:
        check_layout(config, spec, flag)
        speedup = float(request.speedup or 0)
        if speedup > 1:
            note(f"measuring candidate sizes against the dense model on {device} (random weights) …")
        sizes, measured = sizes_for_speedup(config, speedup, speedup_meter(config, device), current)
        targets = targets_from_sizes(spec, sizes, flag)
        origin = {"flag": flag, "value": speedup, "measured_speedup": measured, "device": str(device)}
    check_targets(spec, targets, units, flag)
    described = ", ".join(f"{name} {units[name]}→{size}" for name, size in targets.items())
    extra = ""
    if "parameters" in origin:
        extra = f" ({origin['parameters']:,} parameters after compaction, budget {origin['limit']:,})"
    elif "measured_speedup" in origin:
        extra = f" (measured here: {origin['measured_speedup']:.2f}× faster than the dense model)"
    else:
        try:
            check_layout(config, spec, flag)
            count = parameter_count_of(config, [targets[iss.name] for iss in spec.sets])
            extra = f" ({count:,} parameters after compaction)"
        except IsscliError:
            extra = ""
    note(f"targets: {described}{extra}; pruning {request.prune_epochs} epoch(s), "
         f"then {request.recover_epochs} with λ = 0")
    controller = ControllerSettings(
        targets, int(request.prune_epochs or 1), int(request.recover_epochs or 1),
        cap=settings.group_lasso or None, origin=origin,
    )
    return IssController(controller, announce=note)


def parameter_count_of(config: Any, sizes: list[int]) -> int:
    from isscli.accounting import parameter_count

    return parameter_count(sized_config(config, sizes))
