"""``isscli bench``: time a model against a baseline and report the speed-up and what it costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from isscli import api
from isscli.cli.common import ArchOption, ConfigOption, ReportForceOption, claim_outputs, request_from
from isscli.cli.options import HELP, option
from isscli.cli.output import JSON_HELP, Notes, console, emit, safe, table
from isscli.io.errors import GateFailed

WORKLOAD_LABELS = {
    "full": "full, batch {batch}", "recurrent": "recurrent only, batch {batch}", "latency": "full, batch 1",
}


def milliseconds(timing: dict[str, float]) -> str:
    return f"{timing['median_ms']:.4g} ({timing['min_ms']:.4g}–{timing['max_ms']:.4g})"


def render(report: dict[str, Any]) -> None:
    settings, machine, models = report["settings"], report["machine"], report["models"]
    per_step = models[0]["multiply_adds_per_step"] is not None
    rows = [
        (m["role"], " ".join("+".join(map(str, s)) for s in m["hidden_sizes"]), m["parameters"],
         m["nonzero_weights"], round(m["bytes"] / 2**20, 1),
         m["multiply_adds_per_step"] if per_step else round(m["multiply_adds_per_sequence"]))
        for m in models
    ]
    columns = ("role", "hidden", "params", "nonzero", "MiB", "MACs/step" if per_step else "MACs/sequence")
    console.print(table("models", columns, rows))
    console.print(safe("; ".join(f"{m['role']}: {m['label']}" for m in models)), soft_wrap=False)
    if settings.get("inputs"):
        console.print(safe(f"inputs: {settings['inputs']}"), soft_wrap=False)
    for m in models:
        if m.get("assumption"):
            console.print(f"[yellow]assumed: {safe(m['assumption'])}[/]")
        if m.get("not_counted"):
            console.print(safe(f"{m['role']}: MACs leave out {', '.join(m['not_counted'])} (not recurrent or linear)"))
    compared = report["comparison"]
    timing_rows = []
    for workload, label in WORKLOAD_LABELS.items():
        if workload not in models[0]["timings"]:
            continue  # ONNX Runtime times whole models only
        row = [label.format(batch=settings["batch"]),
               *(milliseconds(m["timings"][workload]) if workload in m["timings"] else "—" for m in models)]
        if compared is not None:
            row.append(f"{compared['speedups']['model'][workload]:.2f}×")
        timing_rows.append(row)
    columns = ("workload", *(m["role"] for m in models), *(("speed-up",) if compared else ()))
    graphs = ", CUDA graphs" if settings["cuda_graphs"] else ""
    runtime = ", ONNX Runtime" if settings.get("runtime") == "onnxruntime" else ""
    what = f"{settings['steps']}-step inference" if settings["steps"] is not None else "inference"
    title = (f"ms per {what}, median (min–max) of {settings['repeats']} "
             f"interleaved repeats on {settings['device']}{graphs}{runtime}")
    console.print(table(title, columns, timing_rows))
    gpu = f", {machine['gpu']} (CUDA {machine['cuda']})" if machine["gpu"] else ""
    console.print(safe(f"machine: {machine['cpu']}, threads: {machine['threads']}, torch {machine['torch']}{gpu}"))
    if (report.get("noise") or {}).get("noisy"):
        console.print(f"[yellow]{safe(report['noise']['warning'])}[/]")
    if compared is None:
        return
    console.print(
        f"speed-up [bold]{compared['speedup']:.2f}×[/] over the baseline; multiply-add reduction "
        f"{compared['multiply_add_reduction']:.2f}×, {compared['parameter_reduction']:.2f}× fewer parameters"
    )
    if models[0]["format"] == "csr":
        console.print(f"the model runs through CSR kernels, its zeros where they are (outputs within "
                      f"{models[0]['max_output_difference']:.2g} of its dense self)")
    if len(compared["speedups"]) > 1 and settings.get("quantize"):
        render_quantized(models, compared)
    if compared["structured_over_unstructured"] is not None:
        sparse = compared["speedups"]["unstructured"]["full"]
        console.print(
            f"unstructured sparsity (CSR, same nonzeros): {sparse:.2f}× over the baseline; structured over "
            f"unstructured: {compared['structured_over_unstructured']:.2f}×"
        )
    if report.get("gate"):
        gate = report["gate"]
        console.print(f"gate --fail-below {gate['fail_below']:g}: {'passed' if gate['passed'] else 'FAILED'}")


def render_quantized(models: list[dict[str, Any]], compared: dict[str, Any]) -> None:
    """``--quantize``: every row against the dense fp32 model in torch (and ONNX Runtime's), ISS and bits apart."""
    against_ort = compared.get("against_onnxruntime_fp32") or {}
    rows = []
    for m in models:
        ratios = compared["speedups"].get(m["role"], {"full": 1.0, "latency": 1.0})
        rows.append((m["role"], m["precision"], m["runtime"], round(m["bytes"] / 2**20, 1),
                     milliseconds(m["timings"]["full"]), f"{ratios['full']:.2f}×", f"{ratios['latency']:.2f}×",
                     f"{against_ort[m['role']]:.2f}×" if m["role"] in against_ort else "—"))
    columns = ("role", "precision", "runtime", "MiB", "full ms", "vs baseline fp32", "batch 1", "vs ONNX Runtime fp32")
    console.print(table("speed-up over the dense fp32 model in torch", columns, rows))


def bench(
    checkpoint: Optional[Path] = typer.Argument(
        None, metavar="CKPT", help="The model to time (e.g. a compacted checkpoint)."
    ),
    against: Optional[Path] = typer.Option(None, "--against", help="The baseline checkpoint (e.g. the dense model)."),
    shapes: Optional[str] = typer.Option(
        None, "--shapes", help="Time a fresh model with these hidden sizes instead of CKPT, e.g. 373,315 "
        "(other sizes from the 'large' preset: embedding 1500, vocabulary 10,000)."
    ),
    against_shapes: Optional[str] = typer.Option(
        None, "--against-shapes", help="Baseline with these hidden sizes instead of --against, e.g. 1500,1500."
    ),
    batch: int = typer.Option(10, "--batch", min=1, help="Sequences per batch (the paper: 10)."),
    steps: int = typer.Option(30, "--steps", min=1, help="Time steps per inference (the paper: 30)."),
    repeats: int = typer.Option(7, "--repeats", min=1, help="Timed repeats per model; the median is reported."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed runs per model first."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option(
        "torch", "--runtime",
        help="torch (isscli's models) or onnxruntime: each model exported to ONNX, checked, and timed in ONNX Runtime "
             "(CPU; full inference and batch-1 latency).",
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (torch.set_num_threads)."),
    cuda_graphs: bool = typer.Option(
        False, "--cuda-graphs", help="Capture each inference in a CUDA graph (with --device cuda)."
    ),
    unstructured: bool = typer.Option(
        False, "--unstructured",
        help="Unstructured sparsity through CSR: a masked CKPT (or one of the baseline's shape) runs as CSR against "
             "the baseline, or its dense self without one; a compacted CKPT adds the baseline's shape with its "
             "nonzeros scattered at random.",
    ),
    fail_below: Optional[float] = typer.Option(
        None, "--fail-below", help="Exit 1 if the full-inference speed-up over the baseline is below this."
    ),
    quantize: Optional[str] = typer.Option(
        None, "--quantize",
        help="int8 or bf16: time each model's quantized twin too, in one interleaved run (int8: torch.ao dynamic "
             "quantization, and with ONNX Runtime installed the dense model in fp32 and the model in int8 there). "
             "Speed-ups stay over the dense fp32 model in torch.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of inputs, --shapes weights and the --unstructured scatter."),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    data: Optional[Path] = option("data", HELP["model_data"]),
    input_shape: Optional[str] = option("input_shape"),
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    force: bool = ReportForceOption,
) -> None:
    """Time full inference, the recurrent layers alone and batch-1 latency of a model (and a baseline), interleaved.

    With --model, CKPT and --against are checkpoints of your own class, timed through its forward on --data's first
    --batch rows (or --input-shape): whole inferences and batch-1 latency."""
    claim_outputs(locals(), "json_path")
    result = api.bench(request_from(api.BenchRequest, locals()), Notes())
    report = result.to_json()
    emit(report, json_path, lambda: render(report))
    if result.gate is not None and not result.gate["passed"]:
        raise GateFailed(f"speed-up {result.speedup:.2f}× is below --fail-below {fail_below:g}",
                               "the model is not fast enough on this machine; see the report for the timings")
