"""``isscli sweep``: several λ values or size targets, one pipeline each; a table, a plot and the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from isscli import api
from isscli.cli.common import claim_outputs
from isscli.cli.output import JSON_HELP, Notes, console, emit, note, table
from isscli.io.atomic import Output
from isscli.io.errors import IsscliError
from isscli.io.parsing import parse_list

if TYPE_CHECKING:
    from isscli.sweeping import Point, SweepResult

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
AXES = {"params": "parameters", "speed": "speedup"}
#: Flags the sweep sets itself for every point; passing them through would break the pipeline.
RESERVED = ("-o", "--output", "--json", "--data", "-d", "--lambda", "--target-hidden", "--target-params",
            "--target-speedup", "--force", "--resume", "--stop-after", "--preset", "-p")


def base_request(extra: list[str], checkpoint: Optional[Path], preset: Optional[str], data: Optional[Path]) -> Any:
    """The finetune (or train) request every point starts from, parsed from the pass-through options by that
    command's own parser."""
    from isscli.cli.main import app
    from isscli.cli.runs import run_request

    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in RESERVED:
            raise IsscliError(f"the sweep sets {name} itself for every point", f"drop {name} from the command")
    commands = getattr(typer.main.get_command(app), "commands", {})
    if checkpoint is not None:
        name, args, cls = "finetune", [str(checkpoint), *extra], api.FinetuneRequest
    else:
        name, args, cls = "train", ["--preset", str(preset), "-o", "point.safetensors", *extra], api.TrainRequest
    try:
        parsed = commands[name].make_context(name, list(args)).params
    except typer.Exit:
        raise IsscliError(f"the options passed on to {name} asked for help", f"see `isscli {name} --help`") from None
    except typer.TyperException as error:
        raise IsscliError(f"the options passed on to {name}: {error.format_message()}",
                          f"see `isscli {name} --help`") from None
    return run_request(cls, {**parsed, "data": data, "preset": preset})


def points_of(lambdas: Optional[str], hidden: list[str], params: list[str], speedups: Optional[str]) -> list[Point]:
    from isscli.sweeping import make_points

    lambda_values = parse_list(lambdas, float, "lambdas", "numbers ≥ 0", "0.001,0.002", 0) if lambdas else []
    speedup_values = parse_list(speedups, float, "target_speedup", "numbers", "4,8") if speedups else []
    points = make_points(lambda_values, hidden, params, speedup_values)
    if not points:
        raise IsscliError("no sweep points", "give --lambda 0.001,0.002 or one or more --target-* options")
    return points


def sweep(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Argument(
        None, metavar="CKPT", help="The dense model each point fine-tunes (left untouched); omit with --from-scratch."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Folder of the sweep; rerunning resumes it."),
    lambdas: Optional[str] = typer.Option(None, "--lambda", help="λ values, comma-separated: one point each."),
    target_hidden: list[str] = typer.Option(
        [], "--target-hidden", help="A size target, units per ISS set, e.g. 100,80 (repeatable: one point each)."
    ),
    target_params: list[str] = typer.Option(
        [], "--target-params", help="A parameter budget, e.g. 2M (repeatable: one point each)."
    ),
    target_speedup: Optional[str] = typer.Option(
        None, "--target-speedup", help="Speed-ups measured on this machine, comma-separated: one point each."
    ),
    from_scratch: bool = typer.Option(
        False, "--from-scratch", help="Train every point from scratch (train --preset P) instead of fine-tuning CKPT."
    ),
    preset: Optional[str] = typer.Option(
        None, "--preset", "-p", help="Recipe (and with --from-scratch, model) of every point."
    ),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Corpus folder, as for train/finetune/eval."),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1,
        help="Points trained at once, as worker processes sharing the CPU threads; benchmarks run one at a time.",
    ),
    group_threshold: Optional[float] = typer.Option(
        None, "--group-threshold",
        help="τ of each point's prune step (groups with norm ≤ τ). Default: the training's weight threshold for λ "
             "points, 0 for targets and the dense point (already exact).",
    ),
    prune_threshold: Optional[float] = typer.Option(None, "--prune-threshold", hidden=True,
                                                    help="Old name of --group-threshold."),
    bench_repeats: int = typer.Option(7, "--bench-repeats", min=1, help="Timed repeats of each point's bench."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Draw SWEEPDIR/tradeoff.png (needs matplotlib)."),
    force: bool = typer.Option(False, "--force", help="Start over: discard what the sweep wrote in SWEEPDIR (never a "
                                                      "file it did not write)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Run several λ values or size targets (finetune → prune → compact → eval → bench each); print the trade-off.

    Every sweep also fine-tunes the dense model with λ = 0 for as many epochs as its longest point (the point
    dense-lambda0), so that ISS is compared with a dense model trained as long. Other options are passed on to
    finetune (or train), e.g. --epochs 3 --max-batches 200. Finished points are not rerun;
    SWEEPDIR/points.jsonl and SWEEPDIR/tradeoff.png hold the results.
    """
    extra = list(ctx.args)
    if from_scratch and checkpoint is not None:  # with no CKPT, the first pass-through token lands there
        extra.insert(0, str(checkpoint))
        checkpoint = None
    if from_scratch and preset is None:
        raise IsscliError("--from-scratch needs --preset", "give e.g. --preset small")
    if not from_scratch and checkpoint is None:
        raise IsscliError("give the dense checkpoint to fine-tune, or --from-scratch --preset P",
                          "e.g. isscli sweep dense.safetensors --lambda 0.001,0.002 -o sweep")
    if prune_threshold is not None:
        note("--prune-threshold is now --group-threshold; the old name will go", warning=True)
        group_threshold = prune_threshold if group_threshold is None else group_threshold
    from isscli.sweeping import SweepRequest, run_sweep  # the library, and torch, only when the command runs
    from isscli.sweeping.plan import SWEEP_FILES

    claim_outputs(locals(), "json_path", extra=[Output(output, folder=True, files=SWEEP_FILES, replace=True)])
    points = points_of(lambdas, target_hidden, target_params, target_speedup)
    request = SweepRequest(output, base_request(extra, checkpoint, preset, data), points, jobs, group_threshold,
                           bench_repeats, force)
    result = run_sweep(request, Notes(), plot=plot)
    report = result.to_json()
    emit(report, json_path, lambda: render(result))
    if result.plot:
        note(f"trade-off plot written to {result.plot}")
    if result.failed:
        raise IsscliError(f"point(s) {', '.join(result.failed)} failed (see their log.txt in {output}/points/)",
                          "fix the cause and rerun the same command: finished points are kept")


def render(result: SweepResult) -> None:
    metric = result.metric
    rows = []
    for entry in ([result.baseline] if result.baseline else []) + result.points:
        sizes = entry.get("hidden_sizes")
        shown = " ".join("+".join(map(str, s)) for s in sizes) if sizes else "—"
        value = entry.get(metric)
        score = "—" if value is None else (f"{value:.2%}" if metric == "accuracy" else
                                          f"{value:.4g}" if metric == "loss" else f"{value:.2f}")
        pareto = " ".join(axis for axis in ("params", "speed") if entry["label"] in result.pareto[AXES[axis]])
        speed = entry.get("speedup")
        rows.append((entry["label"], shown, entry.get("parameters") or "—", score,
                     "—" if speed is None else f"{speed:.2f}×", entry.get("status", ""), pareto or ""))
    short = {"accuracy": "acc", "loss": "loss"}.get(metric, "ppl")
    columns = ("point", "hidden", "params", short, "speed-up", "status", "Pareto")
    console.print(table(f"sweep {result.folder}", columns, rows))
