"""``isscli bench``: time a model against a baseline and report the speed-up and what it costs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from isscli import api
from isscli.cli.common import claim, reads_of, writes
from isscli.cli.options import MODEL_DATA, REPORT_FORCE, option
from isscli.cli.output import Notes, console, emit, safe, table
from isscli.io.errors import GateFailed

if TYPE_CHECKING:
    from isscli.runtime.report import BenchResult, Comparison, TimedModel
    from isscli.runtime.timing import Timings

WORKLOAD_LABELS = {
    "full": "full, batch {batch}", "recurrent": "recurrent only, batch {batch}", "latency": "full, batch 1",
}


def milliseconds(timing: Timings) -> str:
    return f"{timing.median_ms:.4g} ({timing.min_ms:.4g}–{timing.max_ms:.4g})"


def render(result: BenchResult) -> None:
    settings, machine, models = result.settings, result.machine, result.models
    per_step = models[0].multiply_adds_per_step is not None
    rows = [
        (m.role, " ".join("+".join(map(str, s)) for s in m.hidden_sizes), m.parameters, m.nonzero_weights,
         round(m.bytes / 2**20, 1), m.multiply_adds if per_step else round(m.multiply_adds))
        for m in models
    ]
    columns = ("role", "hidden", "params", "nonzero", "MiB", "MACs/step" if per_step else "MACs/sequence")
    console.print(table("models", columns, rows))
    console.print(safe("; ".join(f"{m.role}: {m.label}" for m in models)), soft_wrap=False)
    if settings.inputs:
        console.print(safe(f"inputs: {settings.inputs}"), soft_wrap=False)
    for m in models:
        if m.details.assumption:
            console.print(f"[yellow]assumed: {safe(m.details.assumption)}[/]")
        if m.not_counted:
            console.print(safe(f"{m.role}: MACs leave out {', '.join(m.not_counted)} (not recurrent or linear)"))
    compared = result.comparison
    timing_rows = []
    for workload, label in WORKLOAD_LABELS.items():
        if workload not in models[0].timings:
            continue  # ONNX Runtime times whole models only
        row = [label.format(batch=settings.batch),
               *(milliseconds(m.timings[workload]) if workload in m.timings else "—" for m in models)]
        if compared is not None:
            row.append(f"{compared.speedups['model'][workload]:.2f}×")
        timing_rows.append(row)
    columns = ("workload", *(m.role for m in models), *(("speed-up",) if compared else ()))
    graphs = ", CUDA graphs" if settings.cuda_graphs else ""
    runtime = ", ONNX Runtime" if settings.runtime == "onnxruntime" else ""
    what = f"{settings.steps}-step inference" if settings.steps is not None else "inference"
    title = (f"ms per {what}, median (min–max) of {settings.repeats} "
             f"interleaved repeats on {settings.device}{graphs}{runtime}")
    console.print(table(title, columns, timing_rows))
    gpu = f", {machine.gpu} (CUDA {machine.cuda})" if machine.gpu else ""
    console.print(safe(f"machine: {machine.cpu}, threads: {machine.threads}, torch {machine.torch}{gpu}"))
    if result.noise is not None and result.noise.warning is not None:  # a warning exactly when the figures are noise
        console.print(f"[yellow]{safe(result.noise.warning)}[/]")
    if compared is None:
        return
    console.print(
        f"speed-up [bold]{compared.speedup:.2f}×[/] over the baseline; multiply-add reduction "
        f"{compared.multiply_add_reduction:.2f}×, {compared.parameter_reduction:.2f}× fewer parameters"
    )
    if models[0].format == "csr":
        console.print(f"the model runs through CSR kernels, its zeros where they are (outputs within "
                      f"{models[0].details.max_output_difference:.2g} of its dense self)")
    if len(compared.speedups) > 1 and settings.quantize:
        render_quantized(models, compared)
    if compared.structured_over_unstructured is not None:
        sparse = compared.speedups["unstructured"]["full"]
        console.print(
            f"unstructured sparsity (CSR, same nonzeros): {sparse:.2f}× over the baseline; structured over "
            f"unstructured: {compared.structured_over_unstructured:.2f}×"
        )
    if result.gate:
        gate = result.gate
        console.print(f"gate --fail-below {gate.fail_below:g}: {'passed' if gate.passed else 'FAILED'}")


def render_quantized(models: list[TimedModel], compared: Comparison) -> None:
    """``--quantize``: every row against the dense fp32 model in torch (and ONNX Runtime's), ISS and bits apart."""
    against_ort = compared.against_onnxruntime_fp32 or {}
    rows = []
    for m in models:
        ratios = compared.speedups.get(m.role, {"full": 1.0, "latency": 1.0})
        rows.append((m.role, m.precision, m.runtime, round(m.bytes / 2**20, 1),
                     milliseconds(m.timings["full"]), f"{ratios['full']:.2f}×", f"{ratios['latency']:.2f}×",
                     f"{against_ort[m.role]:.2f}×" if m.role in against_ort else "—"))
    columns = ("role", "precision", "runtime", "MiB", "full ms", "vs baseline fp32", "batch 1", "vs ONNX Runtime fp32")
    console.print(table("speed-up over the dense fp32 model in torch", columns, rows))


def bench(
    checkpoint: Annotated[Optional[Path], typer.Argument(metavar="CKPT", help="The model to time (e.g. a compacted "
                                                                              "checkpoint).")] = None,
    against: Annotated[Optional[Path], option("against")] = None,
    shapes: Annotated[Optional[str], option("shapes")] = None,
    against_shapes: Annotated[Optional[str], option("against_shapes")] = None,
    batch: Annotated[int, option("batch")] = 10,
    steps: Annotated[int, option("steps")] = 30,
    repeats: Annotated[int, option("repeats")] = 7,
    warmup: Annotated[int, option("warmup")] = 2,
    device: Annotated[str, option("device", "cpu, cuda or cuda:N.")] = "cpu",
    runtime: Annotated[str, option("runtime")] = "torch",
    threads: Annotated[Optional[int], option("threads")] = None,
    cuda_graphs: Annotated[bool, option("cuda_graphs")] = False,
    unstructured: Annotated[bool, option("unstructured")] = False,
    fail_below: Annotated[Optional[float], option("fail_below", "Exit 1 if the full-inference speed-up over the "
                                                                "baseline is below this.")] = None,
    quantize: Annotated[Optional[str], option(
        "quantize", "int8 or bf16: time each model's quantized twin too, in one interleaved run (int8: torch.ao "
                    "dynamic quantization, and with ONNX Runtime installed the dense model in fp32 and the model in "
                    "int8 there). Speed-ups stay over the dense fp32 model in torch.")] = None,
    seed: Annotated[int, option("seed", "Seed of inputs, --shapes weights and the --unstructured scatter.")] = 0,
    arch: Annotated[Optional[str], option("arch")] = None,
    config: Annotated[Optional[str], option("config")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    data: Annotated[Optional[Path], option("data", MODEL_DATA)] = None,
    input_shape: Annotated[Optional[str], option("input_shape")] = None,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
    force: Annotated[bool, option("force", REPORT_FORCE)] = False,
) -> None:
    """Time full inference, the recurrent layers alone and batch-1 latency of a model (and a baseline), interleaved.

    With --model, CKPT and --against are checkpoints of your own class, timed through its forward on --data's first
    --batch rows (or --input-shape): whole inferences and batch-1 latency."""
    request = api.BenchRequest(checkpoint=checkpoint, shapes=shapes, against=against, against_shapes=against_shapes,
                               batch=batch, steps=steps, repeats=repeats, warmup=warmup, device=device,
                               threads=threads, cuda_graphs=cuda_graphs, runtime=runtime, unstructured=unstructured,
                               fail_below=fail_below, seed=seed, arch=arch, config=config, data=data,
                               quantize=quantize, model=model, model_args=model_args, input_shape=input_shape)
    claim(writes(json_path, "json_path"), reads=reads_of(request), force=force)
    result = api.bench(request, Notes())
    emit(result.to_json(), json_path, lambda: render(result))
    if result.gate is not None and not result.gate.passed:
        raise GateFailed(f"speed-up {result.speedup:.2f}× is below --fail-below {fail_below:g}",
                               "the model is not fast enough on this machine; see the report for the timings")
