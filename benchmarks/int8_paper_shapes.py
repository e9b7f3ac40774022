"""ISS × int8 on the paper's shapes: the compact (373, 315) LM against the dense 2×1500 one, fp32 and int8, in torch
and ONNX Runtime — then the same compact int8 model beside plain ``torch.ao`` dynamic int8 of the same shapes, and
the files on disk.

    python benchmarks/int8_paper_shapes.py [--repeats 7] [--threads 2] [--runs 3] [--json out.json]

Part 1 is ``isscli bench --shapes 373,315 --against-shapes 1500,1500 --quantize int8`` through the library (six
rows, one interleaved run each time; batch 10 × 30 steps and batch 1). Part 2 times, interleaved, isscli's int8
compact model (in torch and in ONNX Runtime) and a plain-PyTorch model of the same shapes (``nn.Embedding`` →
``nn.LSTM`` → ``nn.LSTM`` → ``nn.Linear``) quantized by ``torch.ao.quantization.quantize_dynamic`` as a user
would (LSTM and Linear in int8; the embedding as it is, and with int8 rows too). Part 3 writes the dense fp32
checkpoint, the compact fp32 and int8 ONNX files and reports their sizes. Weights are random (seeded): speed and
size do not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import isscli
from isscli.runtime.benchmark import inference
from isscli.runtime.export.onnx import to_onnx
from isscli.runtime.export.runtime import onnx_session, onnx_workload
from isscli.runtime.quantize import quantize_onnx, quantize_torch
from isscli.runtime.timing import machine, time_interleaved

COMPACT, DENSE = [373, 315], [1500, 1500]


class PlainLM(nn.Module):
    """What a user writes: one nn.LSTM per layer (the sizes differ), time-major."""

    def __init__(self, sizes: list[int], vocab: int = 10_000, embedding: int = 1500) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embedding)
        widths = [embedding, *sizes]
        self.layers = nn.ModuleList(nn.LSTM(widths[i], widths[i + 1]) for i in range(len(sizes)))
        self.decoder = nn.Linear(sizes[-1], vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(tokens)
        for layer in self.layers:
            hidden = layer(hidden)[0]
        return self.decoder(hidden)


def plain_int8(embedding_too: bool) -> nn.Module:
    from torch.ao.quantization import float_qparams_weight_only_qconfig, quantize_dynamic

    torch.manual_seed(0)
    specs: dict[Any, Any] = {nn.LSTM, nn.Linear}
    if embedding_too:
        specs = {nn.LSTM: torch.ao.quantization.default_dynamic_qconfig,
                 nn.Linear: torch.ao.quantization.default_dynamic_qconfig,
                 nn.Embedding: float_qparams_weight_only_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(PlainLM(COMPACT).eval(), specs, dtype=torch.qint8)


def bench_rows(repeats: int, threads: int) -> dict[str, Any]:
    """One interleaved run of the six rows: per role its medians, its speed-ups over dense fp32 and its bytes."""
    result = isscli.bench(isscli.BenchRequest(shapes=COMPACT, against_shapes=DENSE, quantize="int8", repeats=repeats,
                                              threads=threads))
    same = {"full": 1.0, "latency": 1.0}  # the baseline against itself
    assert result.comparison is not None  # a baseline was given
    speedups = result.comparison.speedups
    return {m.role: {"full_ms": m.timings["full"].median_ms, "latency_ms": m.timings["latency"].median_ms,
                     "speedup": speedups.get(m.role, same)["full"],
                     "speedup_batch1": speedups.get(m.role, same)["latency"],
                     "bytes": m.bytes} for m in result.models}


def beside_plain(repeats: int, threads: int) -> dict[str, float]:
    """isscli's int8 compact model in torch and in ONNX Runtime, and plain torch.ao int8 of the same shapes, timed
    interleaved (batch 10 × 30 steps)."""
    torch.manual_seed(0)
    compact = build_compact()
    ours = quantize_torch(compact, "int8")
    session = onnx_session(quantize_onnx(to_onnx(compact)), threads)
    tokens = torch.randint(0, 10_000, (30, 10), generator=torch.Generator().manual_seed(0))
    runs = {"isscli int8 (torch)": inference(ours, "full", 10, 30, torch.device("cpu"), 0),
            "isscli int8 (ONNX Runtime)": onnx_workload(session, compact.config, "full", 10, 30, 0),
            "torch.ao int8 (LSTM, Linear)": (lambda model: lambda: model(tokens))(plain_int8(False)),
            "torch.ao int8 (+ embedding rows)": (lambda model: lambda: model(tokens))(plain_int8(True))}
    with torch.inference_mode():
        timings = time_interleaved(runs, repeats, 2)
    return {name: t.median_ms for name, t in timings.items()}


def build_compact() -> nn.Module:
    from isscli.models import build_model, preset_config

    return build_model({**preset_config("large"), "hidden_sizes": [[size] for size in COMPACT]}).eval()


def file_sizes(folder: Path) -> dict[str, int]:
    dense = isscli.save(isscli.init("large"), folder / "dense.safetensors")
    compact = isscli.save(isscli.init("large", changes={"hidden_sizes": [[s] for s in COMPACT]}),
                          folder / "compact.safetensors")
    int8 = isscli.export(isscli.ExportRequest(checkpoint=compact, output=folder / "compact.int8.onnx",
                                              quantize="int8"))
    fp32 = isscli.export(isscli.ExportRequest(checkpoint=compact, output=folder / "compact.onnx"))
    return {"dense_fp32_safetensors": dense.stat().st_size, "compact_fp32_safetensors": compact.stat().st_size,
            "compact_fp32_onnx": fp32.file_bytes, "compact_int8_onnx": int8.file_bytes,
            "int8_max_output_difference": int8.max_output_difference, "int8_output_scale": int8.output_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    runs = [bench_rows(arguments.repeats, arguments.threads) for _ in range(arguments.runs)]
    for number, run in enumerate(runs, start=1):
        print(f"run {number}: " + ", ".join(f"{role} {row['full_ms']:.3g} ms ({row['speedup']:.2f}×, batch 1 "
                                             f"{row['speedup_batch1']:.2f}×)" for role, row in run.items()
                                             if not role.startswith("_")))
    roles = [role for role in runs[0] if not role.startswith("_")]
    medians = {role: statistics.median(run[role]["speedup"] for run in runs) for role in roles}
    print("median speed-ups over dense fp32 (torch): " + ", ".join(f"{r} {v:.2f}×" for r, v in medians.items()))
    plain = [beside_plain(arguments.repeats, arguments.threads) for _ in range(arguments.runs)]
    for timing in plain:
        print("beside plain torch.ao: " + ", ".join(f"{name} {ms:.3g} ms" for name, ms in timing.items()))
    with tempfile.TemporaryDirectory() as folder:
        sizes = file_sizes(Path(folder))
    ratio = sizes["dense_fp32_safetensors"] / sizes["compact_int8_onnx"]
    print(f"files: dense fp32 {sizes['dense_fp32_safetensors'] / 2**20:.1f} MiB, compact int8 ONNX "
          f"{sizes['compact_int8_onnx'] / 2**20:.1f} MiB ({ratio:.1f}× smaller); compact fp32 ONNX "
          f"{sizes['compact_fp32_onnx'] / 2**20:.1f} MiB")
    if arguments.json is not None:
        report = {"machine": machine(torch.device("cpu")).to_json(), "bench": runs, "median_speedups": medians,
                  "beside_plain_torch_ao": plain, "files": sizes}
        arguments.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
