"""ISS × int8: isscli's models quantized for inference in torch and ONNX Runtime, benched, scored and exported."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from isscli.io.errors import IsscliError
from isscli.models import build_model
from isscli.models.config import ModelConfig
from isscli.runtime.quantize import LayerwiseStack, check_precision, quantize_torch, weight_bytes
from tests.conftest import tiny_config, write_model
from tests.strategies import architectures
from tests.test_bench import doc_json

FAST = ["--repeats", "1", "--warmup", "0", "--steps", "3", "--batch", "2"]


def outputs(model: nn.Module, config: dict, seed: int = 0) -> list[torch.Tensor]:
    """Logits of two chunks (an LM's state carried over), or of a padded classifier batch."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, config["vocab_size"], (5, 3), generator=generator)
    with torch.no_grad():
        if config["family"] == "classifier":
            return [model(tokens, torch.tensor([5, 3, 1])).float()]
        first, state = model(tokens)
        second, _ = model(tokens.flip(0), state)
        return [first.float(), second.float()]


@settings(max_examples=25, deadline=None)
@given(architectures(families=("lm", "classifier"), cells=("lstm", "gru")))
def test_the_layerwise_stack_computes_what_the_stack_computes(config: dict) -> None:
    torch.manual_seed(0)
    model = build_model(config).eval()
    expected = outputs(model, config)
    model.rnn = LayerwiseStack(model.rnn)  # one nn.LSTM/nn.GRU per layer-direction, each its own size
    for got, want in zip(outputs(model, config), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [tiny_config(vocab_size=40, hidden_sizes=[[9], [7]]),
                                    tiny_config(family="classifier", cell="gru", num_classes=3, vocab_size=40,
                                                hidden_sizes=[[6, 4], [5, 3]])])
def test_quantized_models_stay_close_to_fp32_and_leave_the_input_alone(config: dict) -> None:
    torch.manual_seed(0)
    model = build_model(config).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    expected = outputs(model, config)
    scale = max(float(out.abs().max()) for out in expected)
    for precision, tolerance in (("int8", 0.05), ("bf16", 0.02)):
        quantized = quantize_torch(model, precision)
        worst = max(float((got - want).abs().max()) for got, want in zip(outputs(quantized, config), expected))
        assert 0 < worst <= tolerance * scale, (precision, worst, scale)  # changed, and only by rounding
    int8 = quantize_torch(model, "int8")
    quantized = {name for name, module in int8.named_modules()
                 if type(module).__module__.startswith("torch.ao.nn.q") and "." not in name.removeprefix("rnn.layers.")}
    head = "decoder" if config["family"] == "lm" else "classifier"
    directions = sum(len(sizes) for sizes in config["hidden_sizes"])
    assert quantized == {"encoder", head, *(f"rnn.layers.{i}" for i in range(directions))}  # every weight matrix
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())


def test_what_has_no_int8_kernels_is_refused_by_name() -> None:
    with pytest.raises(IsscliError, match="rnn_tanh layers have no int8 kernels"):
        check_precision("int8", "torch", ModelConfig.from_dict(tiny_config(cell="rnn_tanh")))
    with pytest.raises(IsscliError, match="does not exist in onnxruntime"):
        check_precision("bf16", "onnxruntime")
    with pytest.raises(IsscliError, match="unknown `quantize` 'int4'"):
        check_precision("int4")
    check_precision("bf16", "torch", ModelConfig.from_dict(tiny_config(cell="rnn_tanh")))  # bf16 has kernels


def test_int8_weights_take_a_quarter_of_the_memory_and_a_little_more() -> None:
    config = ModelConfig.from_dict({**tiny_config(), "vocab_size": 10_000, "embedding_size": 1500,
                                    "hidden_sizes": [[1500], [1500]]})
    fp32, int8 = weight_bytes(config, None), weight_bytes(config, "int8")
    assert fp32 == 4 * 66_034_000 and 3.9 < fp32 / int8 < 4.0  # the paper's 66.0M parameters


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("quantize")
    small = write_model(folder / "small.safetensors", tiny_config(vocab_size=60, hidden_sizes=[[5], [4]]), seed=1)
    return small, write_model(folder / "dense.safetensors", tiny_config(vocab_size=60, hidden_sizes=[[12], [10]]))


def test_bench_times_every_combination_in_one_run(run_cli, pair: tuple[Path, Path]) -> None:  # noqa: ANN001
    pytest.importorskip("onnxruntime")
    small, dense = pair
    result = run_cli("bench", small, "--against", dense, "--quantize", "int8", *FAST, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, doc_json("JSON schema"))
    rows = {m["role"]: m for m in report["models"]}
    assert list(rows) == ["model", "model-int8", "baseline", "baseline-int8", "baseline-onnxruntime",
                          "model-int8-onnxruntime"]
    assert [(m["precision"], m["runtime"]) for m in rows.values()] == [
        ("fp32", "torch"), ("int8", "torch"), ("fp32", "torch"), ("int8", "torch"), ("fp32", "onnxruntime"),
        ("int8", "onnxruntime")]
    assert rows["model-int8"]["bytes"] < rows["model"]["bytes"] / 2 and rows["model"]["hidden_sizes"] == [[5], [4]]
    assert set(rows["baseline-onnxruntime"]["timings"]) == {"full", "latency"}  # whole models only
    assert rows["model-int8-onnxruntime"]["onnx_max_output_difference"] < 0.1
    compared = report["comparison"]
    assert set(compared["speedups"]) == set(rows) - {"baseline"}
    assert compared["against_onnxruntime_fp32"]["baseline-onnxruntime"] == pytest.approx(1.0)
    timing = {role: m["timings"]["full"]["median_ms"] for role, m in rows.items()}
    assert compared["speedups"]["model-int8"]["full"] == pytest.approx(timing["baseline"] / timing["model-int8"])
    assert report["settings"]["quantize"] == "int8"
    refused = run_cli("bench", small, "--against", dense, "--quantize", "int8", "--runtime", "onnxruntime")
    assert refused.code == 2 and "--quantize does not combine with --runtime" in refused.stderr


def test_eval_scores_the_quantized_model_and_gates_it_against_fp32(run_cli, dense: Path, corpus: Path) -> None:  # noqa: ANN001
    fp32 = json.loads(run_cli("eval", dense, "--data", corpus, "--json", "-").stdout)
    scores = {}
    for precision in ("int8", "bf16"):
        result = run_cli("eval", dense, "--data", corpus, "--quantize", precision, "--json", "-")
        assert result.code == 0, result.stderr
        scores[precision] = json.loads(result.stdout)
        assert scores[precision]["precision"] == precision
        assert scores[precision]["perplexity"] == pytest.approx(fp32["perplexity"], rel=0.02)
    assert scores["int8"]["perplexity"] != fp32["perplexity"]  # it did run quantized
    gate = run_cli("eval", dense, "--data", corpus, "--quantize", "int8", "--baseline", dense, "--max-loss", "0.02",
                   "--json", "-")
    assert gate.code == 0 and json.loads(gate.stdout)["gate"]["baseline"] == pytest.approx(fp32["perplexity"])
    strict = run_cli("eval", dense, "--data", corpus, "--quantize", "int8", "--baseline", dense, "--max-loss", "0")
    assert strict.code == (0 if scores["int8"]["perplexity"] <= fp32["perplexity"] else 1)


def test_export_writes_a_smaller_int8_graph_checked_against_fp32(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    onnxruntime = pytest.importorskip("onnxruntime")
    config = tiny_config(vocab_size=300, embedding_size=32, hidden_sizes=[[48], [40]])
    dense = write_model(tmp_path / "dense.safetensors", config)  # large enough for the weights to dominate the file
    output = tmp_path / "dense.int8.onnx"
    result = run_cli("export", dense, "--quantize", "int8", "-o", output, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["precision"] == "int8" and report["file_bytes"] == output.stat().st_size
    assert report["file_bytes"] < report["fp32_file_bytes"] / 3 and report["tolerance"] == pytest.approx(0.1)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert any(node.op_type == "DynamicQuantizeLSTM" for node in __import__("onnx").load(str(output)).graph.node)
    model = build_model(config)
    model.load_state_dict(__import__("isscli").load(dense).tensors)
    tokens = torch.randint(0, 300, (6, 2))
    feeds = {"tokens": tokens.numpy(), **{i.name: torch.zeros(1, 2, i.shape[2]).numpy()
                                           for i in session.get_inputs() if i.name != "tokens"}}
    with torch.no_grad():
        expected = model.eval()(tokens)[0]
    logits = torch.from_numpy(session.run(["logits"], feeds)[0])
    assert float((logits - expected).abs().max()) <= 0.1 * max(1.0, float(expected.abs().max()))
    refused = run_cli("export", dense, "--quantize", "bf16", "-o", tmp_path / "x.onnx")
    assert refused.code == 2 and "does not exist in onnxruntime" in refused.stderr
    assert not (tmp_path / "x.onnx").exists()
