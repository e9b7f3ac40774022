"""``isscli eval``: perplexity of a language model (accuracy of a classifier) on one split of a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.cli.common import ArchOption, ConfigOption, DeviceOption, ReportForceOption, claim_outputs, request_from
from isscli.cli.options import option
from isscli.cli.output import Notes, console, emit, note, table
from isscli.io.errors import GateFailed


def evaluate(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to score."),
    data: Optional[Path] = option("data"),
    vocab: Optional[Path] = option("vocab"),
    vocab_order: Optional[str] = option("vocab_order"),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    batch_size: int = typer.Option(10, "--batch-size", help="Streams (LM) or sentences (classifier) per batch."),
    bptt: int = typer.Option(35, "--bptt", help="Steps per chunk for LMs (the state is carried across chunks)."),
    seed: int = typer.Option(0, "--seed", help="Seed of MR's 90/10 split (classifiers)."),
    device: str = DeviceOption,
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    objective: Optional[str] = option("objective"),
    split_rule: Optional[str] = option("split_rule"),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="int8 or bf16: score the model quantized (torch; int8 on the CPU). --baseline is "
                                 "scored as given, in fp32: gate int8 against fp32 with --baseline CKPT."),
    fail_above: Optional[float] = option("fail_above", "Quality gate: exit 1 if the perplexity (LMs) or the loss "
                                                       "(--objective regression) is above this."),
    fail_below: Optional[float] = option("fail_below"),
    baseline: Optional[Path] = option("baseline"),
    max_loss: Optional[float] = option("max_loss"),
    json_path: Optional[Path] = option("json_path"),
    force: bool = ReportForceOption,
) -> None:
    """Perplexity of a language model (accuracy of a classifier) on one split of a corpus; optionally a CI gate.

    With --model, your own class is scored on tensor data (--data FILE.safetensors|.npz, --objective): the loss
    (MSE for regression) or the accuracy, gated with --fail-above (loss) or --fail-below (accuracy)."""
    claim_outputs(locals(), "json_path")
    result = api.evaluate(request_from(api.EvaluateRequest, locals()), Notes())

    def render() -> None:
        items = {None: "tokens", "regression": "samples", "classification": "sequences", "tagging": "steps"}
        count = items.get(result.objective, "items") if result.accuracy is None or result.objective else "sentences"
        if result.accuracy is not None:
            columns = ("data", "split", count, "loss", "accuracy")
            row = (result.data, result.split, result.count, result.loss, f"{result.accuracy:.2%}")
        elif result.objective is not None:
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
        if result.gate is not None:
            against = f" (baseline {result.gate['baseline']:.4g})" if result.gate["baseline"] is not None else ""
            limits = ", ".join(f"{limit:.4g}" for limit in result.gate["limits"].values())
            verdict = "passed" if result.gate["passed"] else "[bold red]FAILED[/]"
            console.print(f"quality gate: {result.gate['metric']} {result.gate['value']:.4g} against {limits}"
                          f"{against}: {verdict}")

    emit(result.to_json(), json_path, render, "isscli.eval/1")
    if result.warning:
        note(f"warning: {result.warning}", warning=True)
    gate = result.gate
    if gate is not None and not gate["passed"]:
        limits = ", ".join(f"--{name.replace('_', '-')} → {limit:.4g}" for name, limit in gate["limits"].items())
        raise GateFailed(f"{gate['metric']} {gate['value']:.4g} misses the gate ({limits})",
                               "the model is not good enough; see the report")
