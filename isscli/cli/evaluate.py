"""``isscli eval``: perplexity of a language model (accuracy of a classifier) on one split of a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from isscli import api
from isscli.cli.common import ArchOption, ConfigOption, DeviceOption, request_from
from isscli.cli.output import JSON_HELP, Notes, console, emit, note, table
from isscli.cli.runs import DataOption, VocabOption, VocabOrderOption


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
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Perplexity of a language model (accuracy of a classifier) on one split of a corpus."""
    result = api.evaluate(request_from(api.EvaluateRequest, locals()), Notes())

    def render() -> None:
        if result.accuracy is None:
            columns = ("data", "split", "tokens", "loss", "perplexity")
            row = (result.data, result.split, result.count, result.loss, result.perplexity)
        else:
            columns = ("data", "split", "sentences", "loss", "accuracy")
            row = (result.data, result.split, result.count, result.loss, f"{result.accuracy:.2%}")
        console.print(table(f"eval {checkpoint}", columns, [row]))

    emit(result.to_json(), json_path, render)
    if result.warning:
        note(f"warning: {result.warning}", warning=True)
