"""``isscli shrink``: after learning ISS, prune → compact (verified) → evaluate → bench in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.cli.common import DeviceOption, ForceOption, claim_outputs, request_from
from isscli.cli.options import option
from isscli.cli.output import Notes, console, emit, table
from isscli.io.atomic import Output
from isscli.io.parsing import parse_list


def shrink(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="The model that learned ISS (left untouched)."),
    folder: Path = typer.Option(..., "-o", "--output", help="Folder for pruned/compact.safetensors and shrink.json."),
    baseline: Optional[Path] = option("baseline", "The dense model to evaluate and bench against (default: pruned)."),
    data: Optional[Path] = option("data"),
    vocab: Optional[Path] = option("vocab"),
    vocab_order: Optional[str] = option("vocab_order"),
    group_threshold: Optional[float] = option("group_threshold", "τ of the prune step (groups with norm ≤ τ). "
                                                                 "Default: the weight threshold CKPT trained with."),
    models: str = typer.Option(
        "baseline,compact", "--evaluate", help="Models to evaluate, comma-separated: baseline, pruned, compact."
    ),
    split: str = typer.Option("test", "--split", help="The split to evaluate on."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Time the compact model against the baseline."),
    bench_repeats: int = typer.Option(7, "--bench-repeats", min=1, help="Timed repeats of the bench step."),
    device: str = DeviceOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    objective: Optional[str] = option("objective"),
    split_rule: Optional[str] = option("split_rule"),
    resume: bool = typer.Option(False, "--resume", help="Keep the steps FOLDER/shrink.json says are done (refused "
                                                         "if they were made from other inputs)."),
    force: bool = ForceOption,
    json_path: Optional[Path] = option("json_path"),
) -> None:
    """Prune CKPT, compact it (verified exact), evaluate and bench it against the dense model: one table.

    With --model (your class) on tensor data (--data, --objective), every step runs your forward."""
    from isscli.api.pipeline import RESULT_FILES  # the library, and torch, only when the command runs
    from isscli.api.scoring import gate_metric

    claim_outputs(locals(), "json_path",
                  extra=[Output(folder, "folder", folder=True, files=RESULT_FILES, replace=force or resume)])
    roles = parse_list(models, str, "evaluate", "model names", "baseline,pruned,compact")
    result = api.shrink(request_from(api.ShrinkRequest, locals(), evaluate=roles), Notes())

    def render() -> None:
        sizes = {"baseline": result.hidden_sizes_before, "pruned": result.hidden_sizes_before,
                 "compact": result.hidden_sizes_after}
        rows = [(role, " × ".join(str(sum(layer)) for layer in sizes[role] or []), score.parameters,
                 float(f"{getattr(score, gate_metric(score)):.4g}")) for role, score in result.evaluations.items()]
        metric = next((gate_metric(score) for score in result.evaluations.values()), "perplexity")
        console.print(table(f"shrink {checkpoint} ({split} split)", ("model", "hidden", "parameters", metric), rows))
        if result.max_output_difference is not None:
            console.print(f"compaction verified: max |output difference| = {result.max_output_difference:.3g}")
        if result.bench is not None and result.speedup is not None:
            settings = result.bench.settings
            shape = f"batch {settings['batch']}" + (f" × {settings['steps']} steps" if settings["steps"] else "")
            console.print(f"compact vs baseline: [bold]{result.speedup:.2f}×[/] faster ({shape}, median "
                          f"of {bench_repeats})")

    emit(result.to_json(), json_path, render, "isscli.shrink/1")
