"""The CPU-side parts of the GPU work: the whole-tensor regularizer path a GPU takes, bf16 training with fp32 ISS
decisions, and benchmarks/gpu_table1.sh run end to end on the CPU at tiny sizes (so the first GPU run cannot fail
on a typo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

import isscli
from isscli.iss import regularizer
from isscli.iss.spec import derive_spec
from isscli.models import build_model, model_tensors

ROOT = Path(__file__).resolve().parents[1]


@given(rows=st.integers(1, 40), columns=st.integers(1, 40), dim=st.sampled_from([0, 1]),
       kind=st.sampled_from(["square", "abs"]), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_whole_tensor_line_sums_equal_the_chunked_ones(rows: int, columns: int, dim: int, kind: str, seed: int) -> None:
    weight = torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed))
    chunked = regularizer.reduce_lines(weight, dim, kind, chunk=7)
    whole = regularizer.reduce_lines(weight, dim, kind, chunk=None)
    assert torch.allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_the_gpu_path_thresholds_and_regularizes_as_the_cpu_path(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": 40, "embedding_size": 12, "hidden_sizes": [[20], [16]]})
    spec = derive_spec(model_tensors(model))
    results = []
    for chunking in (regularizer.chunk_size, lambda weight: None):  # as on a CPU, then as on a GPU
        monkeypatch.setattr(regularizer, "chunk_size", chunking)
        parameters = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
        group_lasso = regularizer.GroupLasso(spec, parameters)
        for parameter in parameters.values():
            parameter.grad = torch.zeros_like(parameter)
        group_lasso.add_gradient_(0.01)
        group_lasso.threshold_(0.05)
        results.append(({n: p.grad.clone() for n, p in parameters.items()},
                        {n: p.detach().clone() for n, p in parameters.items()}, group_lasso.norms()))
    (grads_a, weights_a, norms_a), (grads_b, weights_b, norms_b) = results
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)  # the same weights zeroed
    assert all(torch.allclose(grads_a[name], grads_b[name], atol=1e-7) for name in grads_a)
    assert torch.allclose(norms_a, norms_b, rtol=1e-6)


def test_bf16_training_keeps_fp32_weights_and_decisions(dense: Path, corpus: Path, tmp_path: Path) -> None:
    quick = {"epochs": 1, "batch_size": 4, "bptt": 8, "max_batches": 10, "eval_batch_size": 4, "group_lasso": 0.02}
    runs = {}
    for precision in ("fp32", "bf16"):
        runs[precision] = isscli.finetune(isscli.FinetuneRequest(
            checkpoint=dense, data=corpus, device="cpu", output=tmp_path / f"{precision}.safetensors",
            settings={**quick, "precision": precision}))
    tensors = isscli.load(tmp_path / "bf16.safetensors").tensors
    assert all(tensor.dtype == torch.float32 for tensor in tensors.values())  # weights stay fp32
    assert runs["bf16"].settings.precision == "bf16"
    fp32, bf16 = runs["fp32"].test.perplexity, runs["bf16"].test.perplexity
    assert abs(bf16 / fp32 - 1) < 0.05  # bf16's rounding moves the result a little, no more
    with pytest.raises(isscli.IsscliError, match="unknown `precision`"):
        isscli.finetune(isscli.FinetuneRequest(checkpoint=dense, data=corpus, settings={"precision": "fp8"},
                                               output=tmp_path / "x.safetensors"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="the script is bash")
def test_the_gpu_script_runs_end_to_end_on_the_cpu_at_tiny_sizes(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "table1"
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[12], [10]]}), encoding="utf-8")
    environment = {
        **os.environ, "DEVICE": "cpu", "PRESET": "tiny", "DATA": str(corpus), "OUT": str(out), "REPEATS": "1",
        "SHAPES": "3,2", "AGAINST": "4,4", "PYTHON": sys.executable, "PRECISION": "bf16", "OMP_NUM_THREADS": "1",
        "TRAIN_FLAGS": f"--epochs 2 --max-batches 3 --batch-size 4 --bptt 8 --eval-batch-size 4 --config {config}",
    }
    first = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_table1.sh")], env={**environment, "STOP_AFTER": "1"},
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "run the script again to continue" in first.stdout
    second = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_table1.sh")], env=environment,
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "done in" in second.stdout
    for name in ("bench-b10.json", "bench-b1.json", "steps.json", "train.json", "shrink.json", "compact.safetensors",
                 "bench-trained.json"):
        assert (out / name).exists(), name
    train = json.loads((out / "train.json").read_text())
    assert train["resumed_from_epoch"] == 1 and train["settings"]["precision"] == "bf16"
