"""``isscli sweep``: several λ values or size targets, one pipeline each; a table, a plot and the Pareto front."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, writes
from isscli.cli.options import option, renamed
from isscli.cli.output import Notes, console, emit, note, table
from isscli.io.atomic import Output
from isscli.io.errors import IsscliError

if TYPE_CHECKING:
    from isscli.api import Measured, Point, SweepResult

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
AXES = {"params": "parameters", "speed": "speedup"}
#: Flags the sweep sets itself for every point; passing them through would break the pipeline.
RESERVED = ("-o", "--output", "--json", "--data", "-d", "--lambda", "--target-hidden", "--target-params",
            "--target-speedup", "--force", "--resume", "--stop-after", "--preset", "-p")


def base_request(extra: list[str], checkpoint: Optional[Path], preset: Optional[str],
                 data: Optional[Path]) -> api.FinetuneRequest | api.TrainRequest:
    """The finetune (or train) request every point starts from, parsed from the pass-through options by that
    command's own parser."""
    from isscli.cli import runs

    for arg in extra:
        name = arg.split("=", 1)[0]
        if name in RESERVED:
            raise IsscliError(f"the sweep sets {name} itself for every point", f"drop {name} from the command")
    cls: type[api.FinetuneRequest] | type[api.TrainRequest]
    if checkpoint is not None:
        name, args, cls = "finetune", [str(checkpoint), *extra], api.FinetuneRequest
    else:
        name, args, cls = "train", ["--preset", str(preset), "-o", "point.safetensors", *extra], api.TrainRequest
    try:
        parsed = pass_through_command(name, getattr(runs, name)).make_context(name, list(args)).params
    except typer.Exit:
        raise IsscliError(f"the options passed on to {name} asked for help", f"see `isscli {name} --help`") from None
    except typer.TyperException as error:
        raise IsscliError(f"the options passed on to {name}: {error.format_message()}",
                          f"see `isscli {name} --help`") from None
    return runs.run_request(cls, {**parsed, "data": data, "preset": preset})


def pass_through_command(name: str, function: Callable[..., None]) -> typer.core.TyperCommand:
    """The command ``name`` (``isscli finetune``, ``isscli train``) alone, to parse the options a sweep passes on to
    it exactly as that command would."""
    single = typer.Typer()
    single.command(name)(function)
    command = typer.main.get_command(single)
    assert isinstance(command, typer.core.TyperCommand)  # one command and no callback: the command itself
    return command


def points_of(lambdas: Optional[str], hidden: list[str], params: list[str], speedups: Optional[str]) -> list[Point]:
    points = api.make_points(lambdas or [], hidden, params, speedups or [])
    if not points:
        raise IsscliError("no sweep points", "give --lambda 0.001,0.002 or one or more --target-* options")
    return points


def sweep(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[Path], typer.Argument(
        metavar="CKPT", help="The dense model each point fine-tunes (left untouched); omit with --from-scratch."),
    ] = None,
    *,
    output: Annotated[Path, option("output", "Folder of the sweep; rerunning resumes it.")],
    lambdas: Annotated[Optional[str], option("lambdas")] = None,
    target_hidden: Annotated[Optional[list[str]], option(
        "target_hidden", "A size target, units per ISS set, e.g. 100,80 (repeatable: one point each).")] = None,
    target_params: Annotated[Optional[list[str]], option(
        "target_params", "A parameter budget, e.g. 2M (repeatable: one point each).")] = None,
    target_speedup: Annotated[Optional[str], option(
        "target_speedup", "Speed-ups measured on this machine, comma-separated: one point each.")] = None,
    from_scratch: Annotated[bool, option("from_scratch")] = False,
    preset: Annotated[Optional[str], option("preset")] = None,
    data: Annotated[Optional[Path], option("data", "Corpus folder, as for train/finetune/eval.")] = None,
    jobs: Annotated[int, option("jobs")] = 1,
    group_threshold: Annotated[Optional[float], option(
        "group_threshold", "τ of each point's prune step (groups with norm ≤ τ). Default: the training's weight "
                           "threshold for λ points, 0 for targets and the dense point (already exact).")] = None,
    prune_threshold: Annotated[Optional[float], option("prune_threshold")] = None,
    bench_repeats: Annotated[int, option("bench_repeats", "Timed repeats of each point's bench.")] = 7,
    plot: Annotated[bool, option("plot")] = True,
    force: Annotated[bool, option("force", "Start over: discard what the sweep wrote in SWEEPDIR (never a file it did "
                                           "not write).")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
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
    group_threshold = renamed("prune_threshold", prune_threshold, "group_threshold", group_threshold)
    claim(writes(json_path, "json_path"), Output(output, folder=True, files=api.SWEEP_FILES, replace=True),
          reads=api.input_files(checkpoint=checkpoint, data=data), force=force)
    points = points_of(lambdas, target_hidden or [], target_params or [], target_speedup)
    request = api.SweepRequest(folder=output, base=base_request(extra, checkpoint, preset, data), points=points,
                               jobs=jobs, group_threshold=group_threshold, bench_repeats=bench_repeats, force=force)
    result = api.sweep(request, Notes(), plot=plot)
    report = result.to_json()
    emit(report, json_path, lambda: render(result))
    if result.plot:
        note(f"trade-off plot written to {result.plot}")
    if result.failed:
        raise IsscliError(f"point(s) {', '.join(result.failed)} failed (see their log.txt in {output}/points/)",
                          "fix the cause and rerun the same command: finished points are kept")


def render(result: SweepResult) -> None:
    metric = result.metric
    baseline = result.baseline
    entries: list[tuple[str, str, Measured | None]] = [(baseline.label, "ok", baseline)] if baseline else []
    entries += [(point.label, point.status, point.measured) for point in result.points]
    rows = []
    for label, status, measured in entries:
        sizes = measured.hidden_sizes if measured else None
        shown = " ".join("+".join(map(str, s)) for s in sizes) if sizes else "—"
        value = metric.value(measured) if measured else None
        score = "—" if value is None else metric.text(value)
        pareto = " ".join(axis for axis in ("params", "speed") if label in result.pareto[AXES[axis]])
        speed = measured.speedup if measured else None
        rows.append((label, shown, (measured.parameters if measured else None) or "—", score,
                     "—" if speed is None else f"{speed:.2f}×", status, pareto or ""))
    columns = ("point", "hidden", "params", metric.short, "speed-up", "status", "Pareto")
    console.print(table(f"sweep {result.folder}", columns, rows))
