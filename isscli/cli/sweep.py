"""``isscli sweep``: several λ values or size targets, one pipeline each; a table, a plot and the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from isscli.cli.output import JSON_HELP, console, emit, note, table
from isscli.errors import IsscliError
from isscli.sweep import RESERVED, Plan, load_plan, make_points, prepare, run_sweep, train_point

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
AXES = {"params": "parameters", "speed": "speedup"}


def split_floats(text: Optional[str], option: str) -> list[float]:
    if text is None:
        return []
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise IsscliError(f"{option} {text!r} is not a comma-separated list of numbers ≥ 0",
                          f"write e.g. {option} 0.001,0.002,0.004")
    return values


def check_train_args(extra: list[str], checkpoint: Optional[Path], preset: Optional[str]) -> None:
    """The pass-through flags must be options of finetune (or train) that the sweep does not set itself."""
    from isscli.cli.main import app

    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in RESERVED:
            raise IsscliError(f"the sweep sets {name} itself for every point", f"drop {name} from the command")
    commands = getattr(typer.main.get_command(app), "commands", {})
    if checkpoint is not None:
        name, args = "finetune", [str(checkpoint), *extra]
    else:
        name, args = "train", ["--preset", str(preset), "-o", "x.safetensors", *extra]
    command = commands[name]
    try:
        command.make_context(name, list(args))
    except typer.Exit:
        return
    except typer.TyperException as error:
        raise IsscliError(f"the options passed on to {name}: {error.format_message()}",
                          f"see `isscli {name} --help`") from None


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
        help="Points trained at once, as separate processes sharing the CPU threads; benchmarks run one at a time.",
    ),
    prune_threshold: Optional[float] = typer.Option(
        None, "--prune-threshold",
        help="τ of each point's prune step (groups with norm ≤ τ). Default: the training τ for λ points, "
             "0 for targets (already exact).",
    ),
    bench_repeats: int = typer.Option(7, "--bench-repeats", min=1, help="Timed repeats of each point's bench."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Draw SWEEPDIR/tradeoff.png (needs matplotlib)."),
    force: bool = typer.Option(False, "--force", help="Start over: discard the points SWEEPDIR already holds."),
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Run several λ values or size targets (finetune → prune → compact → eval → bench each); print the trade-off.

    Other options are passed on to finetune (or train), e.g. --epochs 3 --max-batches 200. Finished points
    are not rerun; SWEEPDIR/points.jsonl and SWEEPDIR/tradeoff.png hold the results.
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
    if checkpoint is not None and not checkpoint.is_file():
        raise IsscliError(f"checkpoint {checkpoint} not found", "check the path")
    speedups = split_floats(target_speedup, "--target-speedup")
    points = make_points(split_floats(lambdas, "--lambda"), target_hidden, target_params, speedups)
    if not points:
        raise IsscliError("no sweep points", "give --lambda 0.001,0.002 or one or more --target-* options")
    check_train_args(extra, checkpoint, preset)
    plan = prepare(Plan(output, checkpoint, preset, data, extra, prune_threshold, bench_repeats, points), force)
    report = run_sweep(plan, jobs, notify=note)
    picture = output / "tradeoff.png"
    drawn = [r for r in report["points"] if r.get("status") == "ok"]
    report["plot"] = None
    if plot and drawn:
        from isscli.sweep import draw

        draw(report, picture)
        report["plot"] = str(picture)
    emit(report, json_path, lambda: render(report))
    if report["plot"]:
        note(f"trade-off plot written to {picture}")
    failed = [r["label"] for r in report["points"] if r.get("status") == "failed"]
    if failed:
        raise IsscliError(f"point(s) {', '.join(failed)} failed (see their log.txt in {output}/points/)",
                          "fix the cause and rerun the same command: finished points are kept")


def render(report: dict[str, Any]) -> None:
    metric = report["metric"]
    rows = []
    entries = ([report["baseline"]] if report["baseline"] else []) + report["points"]
    for entry in entries:
        sizes = entry.get("hidden_sizes")
        shown = " ".join("+".join(map(str, s)) for s in sizes) if sizes else "—"
        value = entry.get(metric)
        score = "—" if value is None else (f"{value:.2%}" if metric == "accuracy" else value)
        pareto = " ".join(axis for axis in ("params", "speed") if entry["label"] in report["pareto"][AXES[axis]])
        speed = entry.get("speedup")
        rows.append((entry["label"], shown, entry.get("parameters") or "—", score,
                     "—" if speed is None else f"{speed:.2f}×", entry.get("status", ""), pareto or ""))
    short = "acc" if metric == "accuracy" else "ppl"
    columns = ("point", "hidden", "parameters", f"test {short}", "speed-up", "status", "Pareto")
    result = table(f"sweep {report['folder']}", columns, rows)
    result.columns[0].no_wrap = True
    console.print(result)


def sweep_point(
    folder: Path = typer.Argument(..., help="The sweep folder."),
    label: str = typer.Argument(..., help="The point to train."),
) -> None:
    """Train, prune, compact and evaluate one point of a sweep (what `sweep --jobs N` runs in each process)."""
    plan = load_plan(folder)
    status = train_point(plan, plan.point(label))
    if status != "ok":
        raise typer.Exit(3 if status == "diverged" else 1)
