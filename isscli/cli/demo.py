"""``isscli demo``: the whole pipeline on an embedded default, in a few minutes on two CPU cores.

It runs the same commands a user would type — train, finetune, prune, compact, eval, bench —
printing each command line first, then one summary table. Data: ``--data``, else the usual
search (``$ISSCLI_DATA``, ``../shared/data/ptb``, the cache, a download, and, offline, the
small public-domain corpus that ships with isscli).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.rule import Rule

from isscli.cli.output import console, note, table
from isscli.data.resolve import resolve_data

#: A model small enough to train in a minute here: the ``tiny`` preset (2×64 LSTM).
PRESET = "tiny"
#: Batches per epoch: enough to learn something, few enough for a demo.
BATCHES = 400
#: λ, and τ for single weights and for whole groups, that remove many of the tiny model's units
#: in two short epochs (τ must exceed the ±lr·λ/sqrt(group length) jitter of plain SGD).
LAMBDA = 0.05
THRESHOLD = 1e-3


def _run(step: int, total: int, title: str, args: list[Any]) -> None:
    """Run one isscli command in-process, after showing it; a failure ends the demo with its exit code."""
    from isscli.cli.main import main

    command = ["isscli", *[str(a) for a in args]]
    console.print(Rule(f"step {step}/{total}: {title}"))
    console.print(f"[bold]$ {' '.join(command)}[/]")
    main([str(a) for a in args])


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def demo(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Corpus folder (PTB format). Default: searched."),
    output: Path = typer.Option(Path("demo-out"), "-o", "--output", help="Folder for the demo outputs."),
    batches: int = typer.Option(BATCHES, "--batches", help="Training batches per epoch (fewer: faster, worse)."),
    group_lasso: float = typer.Option(LAMBDA, "--lambda", help="Group-Lasso strength of the fine-tuning step."),
) -> None:
    """Train a small LM, learn ISS with group Lasso, prune, compact, evaluate and bench it; print one summary."""
    source = resolve_data(data)
    if source.note:
        note(f"[yellow]{source.note}[/]")
    note(f"data: {source.path} ({source.origin}); outputs in {output}/ (replaced on every run)")
    output.mkdir(parents=True, exist_ok=True)
    files = {name: output / f"{name}.safetensors" for name in ("dense", "iss", "pruned", "compact")}
    reports = {name: output / f"{name}.json" for name in
               ("train", "finetune", "compact", "eval-dense", "eval-pruned", "eval-compact", "bench")}
    quick = ["--max-batches", batches, "--data", source.path, "--force", "--device", "cpu"]
    steps: list[tuple[str, list[Any]]] = [
        ("train a dense 2×64 LSTM language model",
         ["train", "--preset", PRESET, "-o", files["dense"], "--epochs", 2, *quick, "--json", reports["train"]]),
        ("learn ISS: fine-tune with group Lasso (paper Eq. 2–4)",
         ["finetune", files["dense"], "--lambda", group_lasso, "--threshold", THRESHOLD, "-o", files["iss"],
          "--epochs", 2, "--keep", "last", *quick, "--json", reports["finetune"]]),
        ("prune: zero the groups whose norm is ≤ τ",
         ["prune", files["iss"], "--threshold", THRESHOLD, "-o", files["pruned"], "--force"]),
        ("compact: remove the zero groups (verified to give the same outputs)",
         ["compact", files["pruned"], "-o", files["compact"], "--force", "--json", reports["compact"]]),
    ]
    for name in ("dense", "pruned", "compact"):
        steps.append((f"eval the {name} model on the test split",
                      ["eval", files[name], "--data", source.path, "--device", "cpu",
                       "--json", reports[f"eval-{name}"]]))
    steps.append(("bench: compact vs dense, batch 10 × 30 steps",
                  ["bench", files["compact"], "--against", files["dense"], "--repeats", 5,
                   "--json", reports["bench"]]))
    for index, (title, args) in enumerate(steps, start=1):
        _run(index, len(steps), title, args)
    summarize(files, reports, source.origin)


def summarize(files: dict[str, Path], reports: dict[str, Path], origin: str) -> None:
    """One table: hidden sizes, parameters, perplexity and measured speed of each model."""
    compact_report, bench_report = _json(reports["compact"]), _json(reports["bench"])
    sizes_before = [s["components_before"] for s in compact_report["sets"]]
    sizes_after = [s["components_after"] for s in compact_report["sets"]]
    timings = {m["role"]: m["timings"]["full"]["median_ms"] for m in bench_report["models"]}
    shapes = {
        "dense": " × ".join(map(str, sizes_before)),
        "pruned": " × ".join(map(str, sizes_before)) + f" ({' × '.join(map(str, sizes_after))} kept)",
        "compact": " × ".join(map(str, sizes_after)),
    }
    rows = []
    for key, label, role in (("dense", "dense", "baseline"), ("pruned", "ISS, pruned", None),
                             ("compact", "ISS, compact", "model")):
        evaluation = _json(reports[f"eval-{key}"])
        milliseconds = timings.get(role) if role else None
        speedup = f"{timings['baseline'] / milliseconds:.2f}×" if milliseconds else "—"
        rows.append((label, shapes[key], evaluation["parameters"], round(evaluation["perplexity"], 2),
                     f"{milliseconds:.2f}" if milliseconds else "—", speedup))
    console.print(Rule("summary"))
    title = f"isscli demo ({origin} data; test perplexity; inference of batch 10 × 30 steps on this CPU)"
    columns = ("model", "hidden sizes", "parameters", "test ppl", "ms", "speed-up")
    console.print(table(title, columns, rows))
    console.print(f"checkpoints and JSON reports: {files['dense'].parent}/")
