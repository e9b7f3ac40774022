"""``isscli shrink``: after learning ISS, prune → compact (verified) → evaluate → bench in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, writes
from isscli.cli.options import option
from isscli.cli.output import Notes, console, emit, table
from isscli.io.atomic import Output


def shrink(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="The model that learned ISS (left untouched).")],
    folder: Annotated[Path, option("folder")],
    baseline: Annotated[Optional[Path], option("baseline", "The dense model to evaluate and bench against (default: "
                                                           "pruned).")] = None,
    data: Annotated[Optional[Path], option("data")] = None,
    vocab: Annotated[Optional[Path], option("vocab")] = None,
    vocab_order: Annotated[Optional[str], option("vocab_order")] = None,
    group_threshold: Annotated[Optional[float], option("group_threshold", "τ of the prune step (groups with norm ≤ "
                                                       "τ). Default: the weight threshold CKPT trained with.")] = None,
    evaluate: Annotated[str, option("evaluate")] = "baseline,compact",
    split: Annotated[str, option("split", "The split to evaluate on.")] = "test",
    bench: Annotated[bool, option("bench")] = True,
    bench_repeats: Annotated[int, option("bench_repeats")] = 7,
    device: Annotated[str, option("device")] = "auto",
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    objective: Annotated[Optional[str], option("objective")] = None,
    split_rule: Annotated[Optional[str], option("split_rule")] = None,
    resume: Annotated[bool, option("resume", "Keep the steps FOLDER/shrink.json says are done (refused if they were "
                                             "made from other inputs).")] = False,
    force: Annotated[bool, option("force")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
) -> None:
    """Prune CKPT, compact it (verified exact), evaluate and bench it against the dense model: one table.

    With --model (your class) on tensor data (--data, --objective), every step runs your forward."""
    from isscli.api.pipeline import RESULT_FILES  # the library, and torch, only when the command runs

    request = api.ShrinkRequest(
        checkpoint=checkpoint, folder=folder, baseline=baseline, data=data, vocab=vocab, vocab_order=vocab_order,
        group_threshold=group_threshold, split=split, bench=bench, bench_repeats=bench_repeats, device=device,
        resume=resume, force=force, model=model, model_args=model_args, objective=objective, split_rule=split_rule,
        evaluate=evaluate)
    folder_output = Output(folder, "folder", folder=True, files=RESULT_FILES, replace=force or resume)
    claim(writes(json_path, "json_path"), folder_output, reads=reads_of(request), force=force)
    result = api.shrink(request, Notes())

    def render() -> None:
        sizes = {"baseline": result.hidden_sizes_before, "pruned": result.hidden_sizes_before,
                 "compact": result.hidden_sizes_after}
        rows = [(role, " × ".join(str(sum(layer)) for layer in sizes[role] or []), score.parameters,
                 float(f"{score.metric.value(score):.4g}")) for role, score in result.evaluations.items()]
        metric = next((score.metric.name for score in result.evaluations.values()), "perplexity")
        console.print(table(f"shrink {checkpoint} ({split} split)", ("model", "hidden", "parameters", metric), rows))
        if result.max_output_difference is not None:
            console.print(f"compaction verified: max |output difference| = {result.max_output_difference:.3g}")
        if result.bench is not None and result.speedup is not None:
            settings = result.bench.settings
            shape = f"batch {settings.batch}" + (f" × {settings.steps} steps" if settings.steps else "")
            console.print(f"compact vs baseline: [bold]{result.speedup:.2f}×[/] faster ({shape}, median "
                          f"of {bench_repeats})")

    emit(result.to_json(), json_path, render, "isscli.shrink/1")
