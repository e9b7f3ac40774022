"""``isscli bench``: timing harness, CSR path and the CLI on tiny models (fast settings only)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from isscli.api.benching import BenchRequest, bench
from isscli.io.errors import IsscliError
from isscli.iss.accounting import multiply_adds_per_step, parameter_count
from isscli.models import ModelConfig, build_model
from isscli.runtime.benchmark import from_shapes, unstructured_twin
from isscli.runtime.report import BenchResult, SpeedupGate
from isscli.runtime.timing import Timings, resolve_device, time_interleaved
from isscli.runtime.unstructured import csr_model, nonzero_counts, scatter_like, stored_bytes
from tests.conftest import write_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench.md"
FAST = ("--repeats", "2", "--warmup", "0", "--steps", "3", "--batch", "3")
DENSE = {"family": "lm", "vocab_size": 40, "embedding_size": 12, "hidden_sizes": [[16], [16]], "cell": "lstm"}
SMALL = {**DENSE, "hidden_sizes": [[7], [5]]}


def doc_json(heading: str) -> Any:
    """The first JSON code block under ``## heading`` in docs/bench.md."""
    section = DOC.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    match = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert match, f"no JSON block under '## {heading}'"
    return json.loads(match.group(1))


@pytest.fixture(autouse=True)
def keep_threads():
    """`--threads` changes a process-wide setting: put it back for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bench")
    return write_model(folder / "small.safetensors", SMALL, seed=1), write_model(folder / "dense.safetensors", DENSE)


def bench_json(run_cli, *args: Any) -> dict[str, Any]:
    result = run_cli("bench", *args, *FAST, "--json", "-")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result, code: int, *words: str) -> None:
    """Exit ``code`` and one ``error:`` line, the last on stderr (after any progress notes)."""
    assert result.code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], result.stderr
    assert lines[-1].startswith("error:") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[-1], lines[-1]


# --- timing harness -------------------------------------------------------------------------

def test_interleaved_order_and_statistics() -> None:
    calls: list[str] = []
    timings = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert {name: len(t.samples_ms) for name, t in timings.items()} == {"a": 3, "b": 3}
    stats = Timings((3.0, 1.0, 2.0, 10.0))
    assert (stats.median_ms, stats.min_ms, stats.max_ms) == (2.5, 1.0, 10.0)


def test_cuda_device_without_cuda_is_a_user_error() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(IsscliError, match="use cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(IsscliError, match="CUDA is not available"):
            resolve_device("cuda")


# --- CSR path -------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    DENSE,
    {**DENSE, "cell": "gru", "embedding_size": 16, "tie_weights": True},
    {"family": "classifier", "vocab_size": 30, "embedding_size": 6, "hidden_sizes": [[9, 8], [5, 6]],
     "cell": "rnn_tanh", "num_classes": 3, "pooling": "last"},
])
def test_csr_model_equals_the_dense_masked_model(config: dict[str, Any]) -> None:
    torch.manual_seed(0)
    dense = build_model(config).eval()
    smaller = build_model({**config, "tie_weights": False,
                           "hidden_sizes": [[max(1, h // 3) for h in layer] for layer in config["hidden_sizes"]]})
    masked = scatter_like(dense, smaller, seed=3)
    assert nonzero_counts(masked) == nonzero_counts(smaller)
    sparse = csr_model(masked)
    tokens = torch.randint(1, config["vocab_size"], (7, 4))
    with torch.inference_mode():
        if config["family"] == "lm":
            (expected, expected_state), (actual, actual_state) = masked(tokens), sparse(tokens)
            torch.testing.assert_close(actual_state, expected_state, rtol=0, atol=1e-5)
        else:
            lengths = torch.tensor([7, 3, 5, 1])
            expected, actual = masked(tokens, lengths), sparse(tokens, lengths)
    assert (actual - expected).abs().max() <= 1e-5


def test_csr_model_of_a_given_masked_model_is_smaller() -> None:
    """The path for unstructured-pruned checkpoints: any model with zeros, timed through CSR."""
    torch.manual_seed(0)
    model = build_model(DENSE).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter[parameter.abs() < 0.9 * parameter.abs().max()] = 0.0
    sparse = csr_model(model)
    tokens = torch.randint(0, 40, (5, 2))
    with torch.inference_mode():
        assert (sparse(tokens)[0] - model(tokens)[0]).abs().max() <= 1e-5
    assert stored_bytes(sparse) < sum(p.numel() * 4 for p in model.parameters())


def test_unstructured_twin_keeps_the_model_nonzeros() -> None:
    baseline, model = from_shapes("baseline", [[12], [12]]), from_shapes("model", [[4], [3]])
    twin = unstructured_twin(baseline, model)
    assert twin.csr and twin.details.max_output_difference <= 1e-5
    assert sum(nonzero_counts(twin.model).values()) == sum(nonzero_counts(model.model).values())


# --- the typed report -----------------------------------------------------------------------

def test_the_report_is_typed_and_reads_back_field_for_field() -> None:
    result = bench(BenchRequest(shapes="4,3", against_shapes="8,8", batch=2, steps=2, repeats=2, warmup=0,
                                fail_below=1e6))
    assert result.gate == SpeedupGate(1e6, result.speedup, False) and result.comparison is not None
    assert result.speedup == result.comparison.speedup == result.comparison.speedups["model"]["full"]
    assert result.median_ms("baseline") == result.model("baseline").timings["full"].median_ms
    assert result.settings.steps == 2 and result.machine.torch == torch.__version__
    text = json.dumps(result.to_json())
    report = json.loads(text)
    jsonschema.validate(report, doc_json("JSON schema"))
    assert json.dumps(BenchResult.from_json(report).to_json()) == text  # same fields, same order

    older = json.loads(text)  # version 2: no precision or runtime per model, no settings.quantize
    for entry in older["models"]:
        del entry["precision"], entry["runtime"]
    del older["settings"]["quantize"], older["comparison"]["against_onnxruntime_fp32"]
    assert BenchResult.from_json(older).to_json() == report

    report["models"][1]["timings"]["full"]["samples_ms"] = ["x"]
    with pytest.raises(IsscliError, match='report: field "models.1.timings.full.samples_ms" is not a list of numbers'):
        BenchResult.from_json(report)
    del older["comparison"]["speedup"]
    with pytest.raises(IsscliError, match='shrink.json: field "bench.comparison.speedup" is missing'):
        BenchResult.from_json(older, "shrink.json", "rerun", "bench")


# --- CLI ------------------------------------------------------------------------------------

def test_json_report_fields_and_schema(run_cli, pair: tuple[Path, Path]) -> None:
    small, dense = pair
    report = bench_json(run_cli, small, "--against", dense, "--threads", "1")
    jsonschema.validate(report, doc_json("JSON schema"))
    assert report["settings"] | {"device": "cpu"} == {
        "batch": 3, "latency_batch": 1, "steps": 3, "repeats": 2, "warmup": 0, "device": "cpu",
        "cuda_graphs": False, "seed": 0, "runtime": "torch", "quantize": None,
    }
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["threads"] == 1
    model, baseline = report["models"]
    assert (model["role"], baseline["role"]) == ("model", "baseline")
    for entry, config in ((model, SMALL), (baseline, DENSE)):
        parsed = ModelConfig.from_dict(config)
        assert entry["parameters"] == parameter_count(parsed)
        assert entry["bytes"] == 4 * parameter_count(parsed)
        assert entry["multiply_adds_per_step"] == multiply_adds_per_step(parsed)
        for timing in entry["timings"].values():
            assert len(timing["samples_ms"]) == 2
            assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"]
    compared = report["comparison"]
    full = baseline["timings"]["full"]["median_ms"] / model["timings"]["full"]["median_ms"]
    assert compared["speedup"] == pytest.approx(full)
    assert compared["multiply_add_reduction"] == pytest.approx(
        baseline["multiply_adds_per_step"] / model["multiply_adds_per_step"])
    assert report["gate"] is None


def test_table_and_json_file(run_cli, pair: tuple[Path, Path], tmp_path: Path) -> None:
    small, dense = pair
    result = run_cli("bench", small, "--against", dense, *FAST, "--json", tmp_path / "bench.json")
    assert result.code == 0, result.stderr
    assert "speed-up" in result.stdout and "multiply-add reduction" in result.stdout
    assert json.loads((tmp_path / "bench.json").read_text())["schema"] == "isscli.bench/3"


def test_single_model_has_no_comparison(run_cli, pair: tuple[Path, Path]) -> None:
    report = bench_json(run_cli, pair[0])
    assert [m["role"] for m in report["models"]] == ["model"] and report["comparison"] is None


def test_fail_below_gate(run_cli, pair: tuple[Path, Path], tmp_path: Path) -> None:
    small, dense = pair
    passed = run_cli("bench", small, "--against", dense, *FAST, "--fail-below", "0.001")
    assert passed.code == 0, passed.stderr
    out = tmp_path / "gate.json"
    failed = run_cli("bench", small, "--against", dense, *FAST, "--fail-below", "1000", "--json", out)
    assert_one_line_error(failed, 1, "below --fail-below 1000")
    gate = json.loads(out.read_text())["gate"]
    assert gate["fail_below"] == 1000 and gate["passed"] is False


def test_shapes_use_the_large_preset(run_cli) -> None:
    report = bench_json(run_cli, "--shapes", "6,5", "--against-shapes", "12,12")
    jsonschema.validate(report, doc_json("JSON schema"))
    model, baseline = report["models"]
    assert model["hidden_sizes"] == [[6], [5]] and baseline["hidden_sizes"] == [[12], [12]]
    assert (model["embedding_size"], model["vocab_size"]) == (1500, 10_000)
    assert model["source"] == {"shapes": [[6], [5]], "preset": "large"}
    sizes = {**DENSE, "vocab_size": 10_000, "embedding_size": 1500}
    assert model["parameters"] == parameter_count(ModelConfig.from_dict({**sizes, "hidden_sizes": [[6], [5]]}))


def test_unstructured_cli(run_cli, pair: tuple[Path, Path]) -> None:
    small, dense = pair
    report = bench_json(run_cli, small, "--against", dense, "--unstructured")
    jsonschema.validate(report, doc_json("JSON schema"))
    model, baseline, sparse = report["models"]
    assert sparse["role"] == "unstructured" and sparse["format"] == "csr"
    assert sparse["hidden_sizes"] == baseline["hidden_sizes"]
    assert sparse["nonzero_weights"] == model["nonzero_weights"]
    assert sparse["multiply_adds_per_step"] == model["multiply_adds_per_step"]
    assert sparse["max_output_difference"] <= 1e-5
    assert report["comparison"]["structured_over_unstructured"] > 0
    assert set(report["comparison"]["speedups"]) == {"model", "unstructured"}


def test_highway_network_is_timed(run_cli, tmp_path: Path) -> None:
    rhn = {"family": "rhn", "vocab_size": 30, "embedding_size": 6, "hidden_sizes": [[6]], "depth": 2}
    path = write_model(tmp_path / "rhn.safetensors", rhn)
    report = bench_json(run_cli, path)
    assert report["models"][0]["parameters"] == parameter_count(ModelConfig.from_dict(rhn))
    assert_one_line_error(run_cli("bench", path, "--against", path, "--unstructured", *FAST), 2, "CSR")


@pytest.mark.parametrize("args, words", [
    (["missing.safetensors"], ["not found"]),
    (["--shapes", "15x,3"], ["--shapes", "1500,1500"]),
    (["--shapes", "4,0"], ["positive"]),
    (["--shapes", "4", "--against-shapes", ""], ["--against-shapes"]),
    (["--shapes", "4", "--device", "tpu"], ["--device"]),
    (["--shapes", "4", "--cuda-graphs"], ["--cuda-graphs needs a CUDA --device"]),
    (["--shapes", "4", "--fail-below", "2"], ["needs a baseline"]),
    (["--shapes", "4", "--unstructured"], ["needs a baseline"]),
    (["--shapes", "4", "--against-shapes", "5", "--fail-below", "0"], ["positive"]),
    ([], ["checkpoint or --shapes"]),
    (["--shapes", "4", "--repeats", "0"], ["--repeats"]),
])
def test_bad_inputs_are_one_line_errors(run_cli, args: list[str], words: list[str]) -> None:
    assert_one_line_error(run_cli("bench", *args), 2, *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(run_cli, pair: tuple[Path, Path]) -> None:
    assert_one_line_error(run_cli("bench", pair[0], "--device", "cuda"), 2, "CUDA is not available", "--device=cpu")


def test_doc_example_matches_the_schema() -> None:
    jsonschema.validate(doc_json("Example report"), doc_json("JSON schema"))
