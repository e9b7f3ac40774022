"""Timing harness: interleaved repeats, robust statistics, CPU clocks and CUDA events.

Speed-ups are ratios of two noisy measurements. Timing the models interleaved (A, B, A, B, …)
exposes both to the same background load, so the ratio stays meaningful on a busy machine;
the median over repeats ignores the odd slow run. On CUDA, kernels run asynchronously: the
clock is a pair of CUDA events around the work, after a synchronisation so that nothing
queued earlier is counted, and CUDA graphs replay the whole step sequence with one launch.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject

Workload = Callable[[], object]
Clock = Callable[[Workload], float]


@dataclass(frozen=True)
class Timings:
    """Wall times of the repeats of one workload, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    def to_json(self) -> JSONObject:
        return {
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "samples_ms": list(self.samples_ms),
        }


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda[:N]`` or ``auto`` (CUDA when there is one); asking for CUDA where there is none is a
    user error, not a crash."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", built without CUDA")
            raise IsscliError(f"`device` {name} was asked but CUDA is not available ({build})",
                              "run on a machine with an NVIDIA GPU and a CUDA build of torch, or use `device`=cpu")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise IsscliError(f"`device` {name!r} is not a device name", "write cuda or cuda:0") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise IsscliError(f"`device` {name}: there are only {torch.cuda.device_count()} GPU(s)",
                              "pick an index below that, or plain `device`=cuda")
        return device
    raise IsscliError(f"unknown `device` {name!r}", "use cpu, cuda, cuda:N or auto")


def cpu_clock(workload: Workload) -> float:
    start = time.perf_counter()
    workload()
    return (time.perf_counter() - start) * 1e3


def cuda_clock(device: torch.device) -> Clock:
    """A clock made of two CUDA events; waits for earlier work before starting."""
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def clock(workload: Workload) -> float:
        torch.cuda.synchronize(device)
        start.record()
        workload()
        end.record()
        end.synchronize()
        elapsed: float = start.elapsed_time(end)
        return elapsed

    return clock


def clock_for(device: torch.device) -> Clock:
    return cuda_clock(device) if device.type == "cuda" else cpu_clock


def capture_cuda_graph(workload: Workload, device: torch.device, label: str) -> Workload:
    """Record ``workload`` (all its steps) into one CUDA graph; the result replays it.

    The workload must read only tensors that live as long as the graph (its inputs are
    built once, outside). Warm-up runs on a side stream first, as capture requires.
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.stream(side):
            for _ in range(3):
                workload()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.cuda.graph(graph):
            workload()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IsscliError(f"CUDA graph capture of {label} failed ({reason})",
                          "rerun without `cuda_graphs`") from None
    return graph.replay


def time_interleaved(
    workloads: Mapping[str, Workload], repeats: int, warmup: int, clock: Clock = cpu_clock
) -> dict[str, Timings]:
    """Run every workload ``warmup`` times, then time ``repeats`` rounds of A, B, A, B, ….

    The garbage collector is paused while timing so that a collection does not land in one
    model's sample only.
    """
    for _ in range(warmup):
        for workload in workloads.values():
            workload()
    samples: dict[str, list[float]] = {name: [] for name in workloads}
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, workload in workloads.items():
                samples[name].append(clock(workload))
    finally:
        if collecting:
            gc.enable()
    return {name: Timings(tuple(values)) for name, values in samples.items()}


def cpu_model() -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on: enough to tell two runs apart (field order: the report's)."""

    cpu: str
    logical_cpus: int | None
    threads: int  # torch.get_num_threads() while timing
    torch: str
    mkl: bool
    python: str
    platform: str
    device: str
    gpu: str | None  # the GPU's name when the device is CUDA
    cuda: str | None
    cudnn: int | None

    def to_json(self) -> JSONObject:
        return asdict(self)


def machine(device: torch.device) -> Machine:
    """This machine, timing on ``device``."""
    cuda = device.type == "cuda"
    return Machine(
        cpu=cpu_model(),
        logical_cpus=os.cpu_count(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        mkl=torch.backends.mkl.is_available(),
        python=platform.python_version(),
        platform=platform.platform(),
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if cuda else None,
        cuda=torch.version.cuda if cuda else None,
        cudnn=torch.backends.cudnn.version() if cuda else None,
    )
