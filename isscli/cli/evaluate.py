"""``isscli eval``: perplexity of a language model (accuracy of a classifier) on one split of a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.cli.common import ArchOption, ConfigOption, DeviceOption, request_from
from isscli.cli.output import JSON_HELP, Notes, console, emit, note, table
from isscli.cli.runs import DataOption, VocabOption, VocabOrderOption
from isscli.errors import IsscliError


class QualityBelowGate(IsscliError):
    """The score misses ``--fail-above``/``--fail-below``/``--max-loss``: a failed check, not a bad input."""

    exit_code = 1


def evaluate(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to score."),
    data: Optional[Path] = DataOption,
    vocab: Optional[Path] = VocabOption,
    vocab_order: Optional[str] = VocabOrderOption,
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    batch_size: int = typer.Option(10, "--batch-size", help="Streams (LM) or sentences (classifier) per batch."),
    bptt: int = typer.Option(35, "--bptt", help="Steps per chunk for LMs (the state is carried across chunks)."),
    seed: int = typer.Option(0, "--seed", help="Seed of MR's 90/10 split (classifiers)."),
    device: str = DeviceOption,
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    fail_above: Optional[float] = typer.Option(
        None, "--fail-above", help="Quality gate of an LM: exit 1 if the perplexity is above this."),
    fail_below: Optional[float] = typer.Option(
        None, "--fail-below", help="Quality gate of a classifier: exit 1 if the accuracy (e.g. 0.75) is below this."),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", help="Quality gate against a model (e.g. the dense one), scored on the same split …"),
    max_loss: Optional[float] = typer.Option(
        None, "--max-loss", help="… exit 1 if the perplexity exceeds (1 + this) × the baseline's (0.05: 5% worse), "
                                 "or the accuracy is more than this below the baseline's."),
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Perplexity of a language model (accuracy of a classifier) on one split of a corpus; optionally a CI gate."""
    result = api.evaluate(request_from(api.EvaluateRequest, locals()), Notes())

    def render() -> None:
        if result.accuracy is None:
            columns = ("data", "split", "tokens", "loss", "perplexity")
            row = (result.data, result.split, result.count, result.loss, result.perplexity)
        else:
            columns = ("data", "split", "sentences", "loss", "accuracy")
            row = (result.data, result.split, result.count, result.loss, f"{result.accuracy:.2%}")
        console.print(table(f"eval {checkpoint}", columns, [row]))
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
        raise QualityBelowGate(f"{gate['metric']} {gate['value']:.4g} misses the gate ({limits})",
                               "the model is not good enough; see the report")
