"""Benchmark models side by side: what is timed, on which inputs, and the report.

Each model is timed on three workloads, the models interleaved within each:

* ``full``: a whole ``steps``-step inference of a batch — embedding, recurrent layers and the
  output layer (the paper's Table 1 setting is batch 10, 30 steps);
* ``recurrent``: the recurrent layers alone on the same, pre-embedded batch;
* ``latency``: the full inference of a single sequence (batch 1).

The ``model`` is compared with the ``baseline`` (speed-up = baseline time / model time); an
optional ``unstructured`` model is the baseline's shape with the model's nonzeros scattered at
random and multiplied through CSR kernels. An unstructured-sparse checkpoint (masked, or of the
baseline's shape) is instead timed itself through CSR, against the baseline or its dense self
(:func:`unstructured_contenders`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from isscli.io.jsonfile import JSONObject
from isscli.iss.accounting import multiply_adds_per_step, parameter_count
from isscli.iss.equivalence import max_output_difference
from isscli.live import cost
from isscli.live.model import layer_sizes, recurrent_modules
from isscli.models import build_model, load_model, preset_config
from isscli.models.checkpoint import Checkpoint
from isscli.models.registry import family_config
from isscli.runtime import unstructured
from isscli.runtime.export.onnx import to_onnx, verify_onnx
from isscli.runtime.export.runtime import onnx_session, onnx_workload
from isscli.runtime.quantize import weight_bytes
from isscli.runtime.report import SCHEMA, BenchResult, BenchSettings, Comparison, Details, Noise, TimedModel
from isscli.runtime.timing import Timings, Workload, capture_cuda_graph, clock_for, machine, time_interleaved

SHAPES_PRESET = "large"
LATENCY_BATCH = 1
#: workload name → (part of the model, batch size; ``None`` = the chosen batch)
WORKLOADS: dict[str, tuple[str, int | None]] = {"full": ("full", None), "recurrent": ("recurrent", None),
                                                 "latency": ("full", LATENCY_BATCH)}
RUNTIMES = ("torch", "onnxruntime")
#: Repeats whose (max − min) exceeds this share of their median make a figure noise, and the report says so.
NOISY_SPREAD = 0.5


@dataclass(frozen=True)
class Settings:
    batch: int = 10
    steps: int = 30
    repeats: int = 7
    warmup: int = 2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cuda_graphs: bool = False
    seed: int = 0
    runtime: str = "torch"  # or onnxruntime: each model exported to ONNX and run in ONNX Runtime (CPU)
    threads: int | None = None

    inputs: str | None = None  # the user's own models: what their forward runs on (no steps of isscli's choosing)
    quantize: str | None = None  # int8 | bf16: the contenders include quantized twins

    @property
    def workloads(self) -> dict[str, tuple[str, int | None]]:
        """ONNX Runtime and the user's own forward run whole models only: no ``recurrent`` workload there."""
        whole = self.runtime != "torch" or self.inputs is not None
        return {k: v for k, v in WORKLOADS.items() if not whole or v[0] == "full"}


@dataclass
class Contender:
    """One model in the race, with where it came from (for the report)."""

    role: str
    label: str
    model: nn.Module
    source: JSONObject  # as the report shows it
    csr: bool = False
    details: Details = field(default_factory=Details)  # what the report adds, e.g. a check's result
    masked: bool = False  # a checkpoint with weight masks (SET, magnitude pruning): unstructured sparsity
    session: Any = None  # its ONNX Runtime session, with ``runtime="onnxruntime"``
    inputs: tuple[torch.Tensor, ...] | None = None  # the user's own model (``model``): what its forward runs on
    precision: str = "fp32"  # or int8, bf16 (:mod:`isscli.runtime.quantize`)
    counted: nn.Module | None = None  # a quantized twin's fp32 model, whose weights are counted


def from_shapes(role: str, sizes: list[list[int]], seed: int = 0) -> Contender:
    """A freshly initialised model of the ``large`` preset (embedding 1500, vocabulary 10,000) with these layers."""
    torch.manual_seed(seed)
    model = build_model({**preset_config(SHAPES_PRESET), "hidden_sizes": sizes}).eval()
    return Contender(role, f"{SHAPES_PRESET} preset", model, {"shapes": sizes, "preset": SHAPES_PRESET})


def from_checkpoint(
    role: str, checkpoint: Checkpoint, arch: str | None = None, overrides: Mapping[str, Any] | None = None
) -> Contender:
    model = load_model(checkpoint, arch, overrides)
    label = checkpoint.path.name if checkpoint.path else f"{role} (in memory)"
    return Contender(role, label, model, {"checkpoint": str(checkpoint.path) if checkpoint.path else None,
                                          "sha256": checkpoint.sha256}, masked=bool(checkpoint.masks))


def from_user_model(role: str, checkpoint: Checkpoint, model: nn.Module, inputs: tuple[torch.Tensor, ...],
                    source: JSONObject) -> Contender:
    """The user's own class holding ``checkpoint``, timed on ``inputs`` (whole inferences: its forward)."""
    label = checkpoint.path.name if checkpoint.path else f"{role} (in memory)"
    return Contender(role, label, model.eval(), {"checkpoint": str(checkpoint.path) if checkpoint.path else None,
                                                 "sha256": checkpoint.sha256, **source}, inputs=inputs)


def unstructured_twin(baseline: Contender, structured: Contender, seed: int = 0) -> Contender:
    """The baseline's shape with ``structured``'s nonzeros at random places, through CSR.

    Its report carries the largest output difference between the CSR model and the dense
    masked model it came from: a check that the sparse path computes the same function.
    """
    unstructured.check_csr_supported(baseline.model)
    masked = unstructured.scatter_like(baseline.model, structured.model, seed)
    twin = unstructured.csr_model(masked)
    difference = max_output_difference(masked, twin, family_config(masked))
    source = {"scattered_into": baseline.label, "nonzeros_of": structured.label, "seed": seed}
    return Contender("unstructured", f"{baseline.label} as CSR", twin, source, csr=True,
                     details=Details(max_output_difference=difference))


def as_csr(contender: Contender) -> Contender:
    """The model itself through CSR kernels, its zeros where they are, checked against its dense self."""
    unstructured.check_csr_supported(contender.model)
    sparse = unstructured.csr_model(contender.model)
    difference = max_output_difference(contender.model, sparse, family_config(contender.model))
    return Contender(contender.role, f"{contender.label} as CSR", sparse, contender.source, csr=True,
                     details=Details(max_output_difference=difference), masked=contender.masked)


def weight_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(matrix.shape) for name, matrix in unstructured.weight_matrices(model).items()}


def unstructured_contenders(model: Contender, baseline: Contender | None, seed: int = 0) -> list[Contender]:
    """``--unstructured``: what to time, model first.

    * an unstructured model (masked, or with the baseline's weight shapes, or with no baseline):
      the model itself as CSR, against the baseline or, without one, against its dense self;
    * a structured (compacted) model: the model, the baseline, and the baseline's shape with the
      model's nonzeros scattered at random, as CSR (:func:`unstructured_twin`).
    """
    if baseline is None:
        return [as_csr(model), Contender("baseline", f"{model.label} (dense)", model.model, model.source)]
    if model.masked or weight_shapes(model.model) == weight_shapes(baseline.model):
        return [as_csr(model), baseline]
    return [model, baseline, unstructured_twin(baseline, model, seed)]


def quantized_contenders(contenders: list[Contender], precision: str, threads: int | None) -> list[Contender]:
    """``quantize``: every model and its quantized twin in torch, and for int8, with ONNX Runtime installed, the
    reference of the dense model in ONNX Runtime (fp32) and the model quantized there (int8); model rows first.

    Speed-ups stay over the baseline in torch fp32 (the paper's comparison); the report adds each row's ratio
    against ONNX Runtime's fp32 baseline.
    """
    from isscli.runtime.quantize import quantize_torch

    twins = [Contender(f"{c.role}-{precision}", c.label, quantize_torch(c.model, precision), c.source,
                       precision=precision, counted=c.model) for c in contenders]
    rows = [item for pair in zip(contenders, twins) for item in pair]
    if precision != "int8" or not onnxruntime_installed():
        return rows
    reference = contenders[-1]  # the baseline when there is one
    rows.append(in_onnxruntime_as(reference, f"{reference.role}-onnxruntime", None, threads))
    rows.append(in_onnxruntime_as(contenders[0], f"{contenders[0].role}-int8-onnxruntime", "int8", threads))
    return rows


def onnxruntime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def in_onnxruntime_as(contender: Contender, role: str, precision: str | None, threads: int | None) -> Contender:
    """The model exported to ONNX (quantized when ``precision`` is int8), checked against its torch self, with an
    ONNX Runtime session."""
    from isscli.runtime.quantize import INT8_TOLERANCE, quantize_onnx

    proto = to_onnx(contender.model)
    if precision == "int8":
        proto = quantize_onnx(proto)
    difference, scale = verify_onnx(contender.model, proto)
    if precision == "int8" and not difference <= INT8_TOLERANCE * max(1.0, scale):
        from isscli.runtime.export.onnx import ExportMismatch

        raise ExportMismatch(f"the int8 graph of {contender.label} differs from its fp32 model by {difference:.3g} "
                             f"(> {INT8_TOLERANCE:g} × {max(1.0, scale):.3g})", "report this as an isscli bug")
    return Contender(role, contender.label, contender.model, contender.source,
                     details=Details(onnx_max_output_difference=difference), session=onnx_session(proto, threads),
                     precision=precision or "fp32")


def user_inference(contender: Contender, batch: int, device: torch.device) -> Workload:
    """The user's forward on the first ``batch`` rows of its inputs (moved to the device once, not timed)."""
    inputs = tuple(argument[:batch].to(device) for argument in contender.inputs or ())
    return lambda: contender.model(*inputs)


def inference(model: nn.Module, part: str, batch: int, steps: int, device: torch.device, seed: int) -> Workload:
    """A closure running one whole inference; its inputs are made once, here, so they are not timed."""
    config = family_config(model)
    generator = torch.Generator().manual_seed(seed)
    classifier = config.family == "classifier"
    tokens = torch.randint(int(classifier), config.vocab_size, (steps, batch), generator=generator).to(device)
    arguments = (torch.full((batch,), steps, dtype=torch.long, device=device),) if classifier else ()
    if part == "full":
        return lambda: model(tokens, *arguments)
    recurrent = model.get_submodule(unstructured.recurrent_part_name(model))
    embedded = model.get_submodule("encoder")(tokens)
    return lambda: recurrent(embedded, None, *arguments)


def time_contenders(contenders: list[Contender], settings: Settings) -> dict[str, dict[str, Timings]]:
    """Timings by role and workload; each workload times all models interleaved."""
    clock = clock_for(settings.device)
    results: dict[str, dict[str, Timings]] = {c.role: {} for c in contenders}
    for workload, (part, batch) in settings.workloads.items():
        runs = {}
        size = batch or settings.batch
        for contender in contenders:
            if contender.session is not None and part != "full":
                continue  # ONNX Runtime runs whole models only
            if contender.inputs is not None:
                run = user_inference(contender, size, settings.device)
            elif contender.session is not None:
                run = onnx_workload(contender.session, family_config(contender.model), part, size, settings.steps,
                                    settings.seed)
            else:
                run = inference(contender.model, part, size, settings.steps, settings.device, settings.seed)
            if settings.cuda_graphs:
                run = capture_cuda_graph(run, settings.device, f"{contender.role} ({workload})")
            runs[contender.role] = run
        for role, timings in time_interleaved(runs, settings.repeats, settings.warmup, clock).items():
            results[role][workload] = timings
    return results


def describe_user_model(contender: Contender) -> TimedModel:
    """Size and cost of the user's own model, counted on one run of its forward (:mod:`isscli.live.cost`)."""
    model, inputs = contender.model, contender.inputs or ()
    multiply_adds, not_counted = cost.multiply_adds(model, inputs)
    batch = int(inputs[0].shape[0]) if inputs else 1
    return TimedModel(
        role=contender.role, label=contender.label, source=contender.source, format="dense", precision="fp32",
        runtime="torch", family=None, cell=None, vocab_size=None, embedding_size=None,
        hidden_sizes=[sizes for module in recurrent_modules(model).values() for sizes in layer_sizes(module)],
        parameters=cost.parameter_count(model),
        nonzero_weights=sum(int((p != 0).sum()) for p in model.parameters()),
        bytes=cost.parameter_bytes(model),
        multiply_adds_per_step=None,
        multiply_adds_per_sequence=multiply_adds / batch,
        not_counted=not_counted,
        details=contender.details,
    )


def describe(contender: Contender) -> TimedModel:
    """Size and cost of a model: dense ones from their config, CSR ones from their nonzeros."""
    if contender.inputs is not None:
        return describe_user_model(contender)
    model, config = contender.model, family_config(contender.model)
    nonzeros = sum(unstructured.nonzero_counts(contender.counted or model).values())
    return TimedModel(
        role=contender.role,
        label=contender.label,
        source=contender.source,
        format="csr" if contender.csr else "dense",
        precision=contender.precision,
        runtime="onnxruntime" if contender.session is not None else "torch",
        family=config.family,
        cell=config.cell,
        vocab_size=config.vocab_size,
        embedding_size=config.embedding_size,
        hidden_sizes=config.hidden_sizes,
        parameters=unstructured.nonzero_parameters(model) if contender.csr else parameter_count(config),
        nonzero_weights=nonzeros,
        bytes=unstructured.stored_bytes(model) if contender.csr else weight_bytes(config, precision_of(contender)),
        multiply_adds_per_step=(
            unstructured.nonzero_multiply_adds_per_step(model) if contender.csr else multiply_adds_per_step(config)
        ),
        details=contender.details,
    )


def precision_of(contender: Contender) -> str | None:
    return None if contender.precision == "fp32" else contender.precision


def speedups(baseline: dict[str, Timings], other: dict[str, Timings]) -> dict[str, float]:
    """Per workload both timed: baseline median / other median."""
    return {workload: baseline[workload].median_ms / other[workload].median_ms for workload in baseline
            if workload in other}


def in_onnxruntime(contenders: list[Contender], threads: int | None) -> None:
    """Export every model to ONNX, check it against PyTorch, and give it an ONNX Runtime session."""
    for contender in contenders:
        proto = to_onnx(contender.model)
        contender.details.onnx_max_output_difference = verify_onnx(contender.model, proto)[0]
        contender.session = onnx_session(proto, threads)


def noise(timings: dict[str, dict[str, Timings]]) -> Noise:
    """The widest spread of repeats, (max − min) / median, and whether it makes the figures noise."""
    spread, role, workload = max((t.max_ms / t.median_ms - t.min_ms / t.median_ms, r, w)
                                 for r, by_workload in timings.items() for w, t in by_workload.items())
    if spread <= NOISY_SPREAD:
        return Noise(spread, role, workload, noisy=False)
    return Noise(spread, role, workload, noisy=True,
                 warning=f"the figures are noise: the {role}'s repeats ({workload}) vary by {spread:.0%} of their "
                         "median — rerun with more repeats on a quieter machine")


def comparison(entries: dict[str, TimedModel], timings: dict[str, dict[str, Timings]]) -> Comparison | None:
    """Ratios of the model (and the unstructured model) against the baseline."""
    if "baseline" not in entries:
        return None
    model, baseline = entries["model"], entries["baseline"]
    ratios = {role: speedups(timings["baseline"], timings[role]) for role in entries if role != "baseline"}
    reference = next((role for role in entries if role.endswith("-onnxruntime") and "int8" not in role), None)
    return Comparison(
        speedup=ratios["model"]["full"],
        speedups=ratios,
        against_onnxruntime_fp32=None if reference is None else
        {role: speedups(timings[reference], timings[role])["full"] for role in entries},
        multiply_add_reduction=baseline.multiply_adds / max(model.multiply_adds, 1e-30),
        parameter_reduction=baseline.parameters / model.parameters,
        structured_over_unstructured=(
            speedups(timings["unstructured"], timings["model"])["full"] if "unstructured" in timings else None
        ),
    )


def reported(settings: Settings) -> BenchSettings:
    """The settings as the report gives them: the user's own models run on their data's length, not ``steps``."""
    return BenchSettings(
        batch=settings.batch, latency_batch=LATENCY_BATCH,
        steps=settings.steps if settings.inputs is None else None, repeats=settings.repeats,
        warmup=settings.warmup, device=str(settings.device), cuda_graphs=settings.cuda_graphs, seed=settings.seed,
        runtime=settings.runtime, quantize=settings.quantize, inputs=settings.inputs,
    )


def run(contenders: list[Contender], settings: Settings) -> BenchResult:
    """Move the models to the device, time them, and build the report (schema in docs/bench.md)."""
    if settings.runtime == "onnxruntime":
        in_onnxruntime(contenders, settings.threads)
    entries = {c.role: describe(c) for c in contenders}
    for contender in contenders:
        contender.model.to(settings.device)
    with torch.inference_mode():
        timings = time_contenders(contenders, settings)
    for role, entry in entries.items():
        entry.timings = timings[role]
    return BenchResult(SCHEMA, reported(settings), machine(settings.device), list(entries.values()),
                       comparison(entries, timings), noise(timings))
