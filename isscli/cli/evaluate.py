"""``isscli eval``: perplexity of a language model (accuracy of a classifier) on one split of a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, writes
from isscli.cli.options import REPORT_FORCE, option
from isscli.cli.output import Notes, console, emit, note, table
from isscli.io.errors import GateFailed


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint to score.")],
    data: Annotated[Optional[Path], option("data")] = None,
    vocab: Annotated[Optional[Path], option("vocab")] = None,
    vocab_order: Annotated[Optional[str], option("vocab_order")] = None,
    split: Annotated[str, option("split")] = "test",
    batch_size: Annotated[int, option("batch_size", "Streams (LM) or sentences (classifier) per batch.")] = 10,
    bptt: Annotated[int, option("bptt", "Steps per chunk for LMs (the state is carried across chunks).")] = 35,
    seed: Annotated[int, option("seed", "Seed of MR's 90/10 split (classifiers).")] = 0,
    device: Annotated[str, option("device")] = "auto",
    arch: Annotated[Optional[str], option("arch")] = None,
    config: Annotated[Optional[str], option("config")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    objective: Annotated[Optional[str], option("objective")] = None,
    split_rule: Annotated[Optional[str], option("split_rule")] = None,
    quantize: Annotated[Optional[str], option(
        "quantize", "int8 or bf16: score the model quantized (torch; int8 on the CPU). --baseline is scored as given, "
                    "in fp32: gate int8 against fp32 with --baseline CKPT.")] = None,
    fail_above: Annotated[Optional[float], option("fail_above")] = None,
    fail_below: Annotated[Optional[float], option("fail_below")] = None,
    baseline: Annotated[Optional[Path], option("baseline")] = None,
    max_loss: Annotated[Optional[float], option("max_loss")] = None,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
    force: Annotated[bool, option("force", REPORT_FORCE)] = False,
) -> None:
    """Perplexity of a language model (accuracy of a classifier) on one split of a corpus; optionally a CI gate.

    With --model, your own class is scored on tensor data (--data FILE.safetensors|.npz, --objective): the loss
    (MSE for regression) or the accuracy, gated with --fail-above (loss) or --fail-below (accuracy)."""
    request = api.EvaluateRequest(checkpoint=checkpoint, data=data, vocab=vocab, vocab_order=vocab_order, split=split,
                                  batch_size=batch_size, bptt=bptt, seed=seed, device=device, arch=arch, config=config,
                                  fail_above=fail_above, fail_below=fail_below, baseline=baseline, max_loss=max_loss,
                                  model=model, model_args=model_args, objective=objective, split_rule=split_rule,
                                  quantize=quantize)
    claim(writes(json_path, "json_path"), reads=reads_of(request), force=force)
    result = api.evaluate(request, Notes())

    def render() -> None:
        items = {None: "tokens", "regression": "samples", "classification": "sequences", "tagging": "steps"}
        count = items.get(result.objective, "items") if result.accuracy is None or result.objective else "sentences"
        metric = result.metric
        columns: tuple[str, ...]
        row: tuple[object, ...]
        if metric.name == "accuracy" and result.accuracy is not None:
            columns = ("data", "split", count, "loss", "accuracy")
            row = (result.data, result.split, result.count, result.loss, metric.text(result.accuracy))
        elif metric.name == "loss":
            columns = ("data", "split", count, "loss (MSE)")
            row = (result.data, result.split, result.count, result.loss)
        else:
            columns = ("data", "split", count, "loss", "perplexity")
            row = (result.data, result.split, result.count, result.loss, result.perplexity)
        precision = f" ({result.precision})" if result.precision != "fp32" else ""
        console.print(table(f"eval {checkpoint}{precision}", columns, [row]))
        if result.split_rule:
            console.print(f"data: {result.split_rule}")
        if result.assumption:
            console.print(f"[yellow]assumed: {result.assumption}[/]")
        gate = result.gate
        if gate is not None:
            against = f" (baseline {gate.baseline:.4g})" if gate.baseline is not None else ""
            limits = ", ".join(f"{limit:.4g}" for limit in gate.limits.values())
            verdict = "passed" if gate.passed else "[bold red]FAILED[/]"
            console.print(f"quality gate: {gate.metric} {gate.value:.4g} against {limits}{against}: {verdict}")

    emit(result.to_json(), json_path, render, "isscli.eval/1")
    if result.warning:
        note(f"warning: {result.warning}", warning=True)
    gate = result.gate
    if gate is not None and not gate.passed:
        limits = ", ".join(f"--{name.replace('_', '-')} → {limit:.4g}" for name, limit in gate.limits.items())
        raise GateFailed(f"{gate.metric} {gate.value:.4g} misses the gate ({limits})",
                               "the model is not good enough; see the report")
