"""``bench``: time a model against a baseline, interleaved, and report the speed-up and what it costs."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from isscli.api.common import CheckpointSource, ConfigSource, PathLike, as_checkpoint, model_overrides
from isscli.api.user_models import ExampleInput, ModelChoice, example_input, resized, user_source
from isscli.api.validation import checked_arguments
from isscli.io.atomic import first_line
from isscli.io.errors import IsscliError
from isscli.io.parsing import (
    MAX_BATCH,
    MAX_REPEATS,
    MAX_SEED,
    MAX_STEPS,
    MAX_THREADS,
    MAX_UNITS,
    check_bounds,
    parse_list,
)
from isscli.live.usermodel import load_user_model, model_source
from isscli.models.registry import architecture_assumption, family_config
from isscli.observer import Observer, SilentObserver
from isscli.runtime import benchmark
from isscli.runtime.quantize import check_precision
from isscli.runtime.report import BenchResult, SpeedupGate
from isscli.runtime.timing import resolve_device

#: Fewer timed repeats than this give rough medians (said in a note).
RECOMMENDED_REPEATS = 5

Shapes = str | Sequence[int]


@dataclass(kw_only=True)
class BenchRequest(ModelChoice):
    """Time ``checkpoint`` (or a fresh model of ``shapes``) against ``against`` (or ``against_shapes``)."""

    checkpoint: CheckpointSource | None = None
    shapes: Shapes | None = None  # hidden sizes of a fresh model of the 'large' preset, e.g. "373,315"
    against: CheckpointSource | None = None
    against_shapes: Shapes | None = None
    batch: int = 10  # the paper's Table 1: batch 10, 30 steps
    steps: int = 30
    repeats: int = 7
    warmup: int = 2
    device: str = "cpu"
    threads: int | None = None
    cuda_graphs: bool = False
    runtime: str = "torch"  # or onnxruntime: each model exported to ONNX (checked) and timed in ONNX Runtime, CPU
    unstructured: bool = False  # CSR kernels for unstructured sparsity (see ``isscli bench --help``)
    fail_below: float | None = None  # the gate: ``result.gate.passed`` is False below this speed-up
    seed: int = 0
    arch: str | None = None
    config: ConfigSource = None
    data: PathLike | None = None  # with ``model``: tensor data whose first ``batch`` rows the models run on
    quantize: str | None = None  # int8 | bf16: each model's quantized twin too (:mod:`isscli.runtime.quantize`)


def check(request: BenchRequest) -> None:
    if (request.checkpoint is None) == (request.shapes is None):
        raise IsscliError("give either a checkpoint or `shapes` (not both, not neither)",
                          "e.g. `isscli bench compact.safetensors --against dense.safetensors` or --shapes 373,315")
    if request.against is not None and request.against_shapes is not None:
        raise IsscliError("give either `against` or `against_shapes`, not both", "drop one of them")
    has_baseline = request.against is not None or request.against_shapes is not None
    against_itself = request.unstructured and request.checkpoint is not None
    if not has_baseline and not against_itself and (request.fail_below is not None or request.unstructured):
        name = "fail_below" if request.fail_below is not None else "unstructured"
        raise IsscliError(f"`{name}` needs a baseline", "add `against`=DENSE.safetensors or `against_shapes`=1500,1500")
    if request.fail_below is not None and not (request.fail_below > 0 and math.isfinite(request.fail_below)):
        raise IsscliError(f"`fail_below` {request.fail_below:g} is not a positive speed-up",
                          "give e.g. `fail_below`=7.48")
    if request.runtime not in benchmark.RUNTIMES:
        raise IsscliError(f"unknown `runtime` {request.runtime!r}", f"use {' or '.join(benchmark.RUNTIMES)}")
    on_cpu = request.device == "cpu" and not request.cuda_graphs
    if request.runtime == "onnxruntime" and (request.unstructured or not on_cpu):
        raise IsscliError("`runtime`=onnxruntime runs dense models on the CPU",
                          "drop `unstructured`, `cuda_graphs` and `device`, or use `runtime`=torch")
    if request.model is not None:
        given = [name for name in ("shapes", "against_shapes") if getattr(request, name) is not None]
        if given or request.unstructured or request.runtime != "torch" or request.cuda_graphs:
            name = given[0] if given else ("unstructured" if request.unstructured else
                                           "cuda_graphs" if request.cuda_graphs else "runtime")
            raise IsscliError(f"`{name}` times isscli's own models, not the one `model` names",
                              "time checkpoints of your model (`checkpoint`, `against`) in torch, or drop `model`")
    if request.quantize is not None:
        check_precision(request.quantize)
        other = ("model" if request.model is not None else "unstructured" if request.unstructured else
                 "runtime" if request.runtime != "torch" else "device" if request.device != "cpu" else None)
        if other is not None:
            raise IsscliError(f"`quantize` does not combine with `{other}`",
                              "`quantize` times isscli's models on the CPU, in torch and (int8) ONNX Runtime both; "
                              f"drop `{other}`")
    bounds = {"batch": (1, MAX_BATCH), "steps": (1, MAX_STEPS), "repeats": (1, MAX_REPEATS),
              "warmup": (0, MAX_REPEATS), "threads": (1, MAX_THREADS), "seed": (0, MAX_SEED)}
    for name, (low, high) in bounds.items():
        check_bounds(getattr(request, name), name, low, high)


@contextmanager
def memory_guard(request: BenchRequest) -> Iterator[None]:
    """A model or a workload too large for this machine's memory is a one-line error, not a crash."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:  # torch: "can't allocate memory", CUDA out of memory
        text = str(error)
        if not isinstance(error, MemoryError) and "allocate" not in text and "out of memory" not in text:
            raise
        raise IsscliError(f"the models or the workload (`batch` {request.batch} × `steps` {request.steps}) do not "
                          f"fit in memory ({first_line(text, 'out of memory')[:160]})",
                          "give a smaller `batch`, `steps` or `shapes`") from None


def contender(role: str, source: CheckpointSource | None, shapes: Shapes | None, request: BenchRequest,
              name: str, example: ExampleInput | None = None) -> benchmark.Contender:
    if source is not None and example is not None:
        loaded = as_checkpoint(source)
        user = model_source(request.model, request.model_args)
        assert user is not None
        return benchmark.from_user_model(role, loaded, load_user_model(user, loaded), example.arguments,
                                         user.describe())
    if source is not None:
        loaded = as_checkpoint(source)
        found = benchmark.from_checkpoint(role, loaded, request.arch, model_overrides(request.config))
        assumption = architecture_assumption(loaded, request.arch, model_overrides(request.config))
        if assumption:
            found.details.assumption = assumption
        return found
    sizes = parse_list(shapes or "", int, name, "positive hidden sizes", "1500,1500", minimum=1, maximum=MAX_UNITS)
    return benchmark.from_shapes(role, [[size] for size in sizes], request.seed)


@checked_arguments
def bench(request: BenchRequest, observer: Observer | None = None) -> BenchResult:
    """Time full inference, the recurrent layers alone and batch-1 latency of a model and a baseline, interleaved.

    Args:
        request: what to time (checkpoints or hidden sizes), the workload (batch 10 × 30 steps by
            default, the paper's Table 1), repeats, device, and an optional ``fail_below`` gate.
        observer: told when the repeats are too few for a good median.

    Returns:
        A :class:`BenchResult`: per model its sizes, parameters, multiply-adds and timings; the
        speed-ups against the baseline; the gate's verdict (never raised here: the CLI exits 1).

    Example::

        isscli.bench(isscli.BenchRequest(checkpoint="compact.safetensors", against="dense.safetensors")).speedup
    """
    check(request)
    device = resolve_device(request.device)
    if request.cuda_graphs and device.type != "cuda":
        raise IsscliError("`cuda_graphs` needs a CUDA `device`", "add `device`=cuda or drop `cuda_graphs`")
    if request.threads is not None:
        torch.set_num_threads(request.threads)
    if request.repeats < RECOMMENDED_REPEATS:
        (observer or SilentObserver()).note(f"only {request.repeats} repeats: medians of fewer than "
                                            f"{RECOMMENDED_REPEATS} are rough")
    observer = observer or SilentObserver()
    example = None
    if user_source(request, observer) is not None:
        example = resized(example_input(request.data, request.input_shape, request.batch, request.seed),
                          request.batch)
        observer.note(f"timing the models' own forward: {example.description}")
    with memory_guard(request):
        contenders = [contender("model", request.checkpoint, request.shapes, request, "shapes", example)]
        has_baseline = request.against is not None or request.against_shapes is not None
        if has_baseline:
            contenders.append(contender("baseline", request.against, request.against_shapes, request,
                                        "against_shapes", example))
        for found in contenders:
            if found.details.assumption is not None:
                observer.note(f"assumed: {found.details.assumption}", True)
        if request.quantize is not None:
            for found in contenders:
                check_precision(request.quantize, "torch", family_config(found.model))
            contenders = benchmark.quantized_contenders(contenders, request.quantize, request.threads)
        if request.unstructured:
            contenders = benchmark.unstructured_contenders(contenders[0], contenders[1] if has_baseline else None,
                                                          request.seed)
        settings = benchmark.Settings(request.batch, request.steps, request.repeats, request.warmup, device,
                                      request.cuda_graphs, request.seed, request.runtime, request.threads,
                                      example.description if example is not None else None, request.quantize)
        result = benchmark.run(contenders, settings)
    if request.fail_below is not None:
        speedup = result.speedup
        result.gate = SpeedupGate(request.fail_below, speedup, speedup is not None and speedup >= request.fail_below)
    return result
