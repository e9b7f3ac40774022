"""The scripts in examples/ run end to end at their --tiny size and report what they promise: exact unit targets,
the user's own class, outputs equal to the pruned model, ONNX equal to PyTorch, a round trip through safetensors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ["forecaster", "gru_classifier", "tagger_onnx", "seq2seq", "word_lm_roundtrip"]


def load(name: str) -> ModuleType:
    """The script as a module, imported by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"isscli_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, out: Path) -> dict:
    """``main(["--tiny", "--out", out])``; the figures it returns are the ones it wrote to ``out/NAME.json``."""
    figures = load(name).main(["--tiny", "--out", str(out)])
    assert json.loads((out / f"{name}.json").read_text()) == json.loads(json.dumps(figures))
    return figures


def lstm_parameters(inputs: int, hidden: int, gates: int = 4) -> int:
    """One layer-direction: weight_ih, weight_hh and both biases."""
    return gates * hidden * (inputs + hidden + 2)


def test_forecaster_hits_its_targets_and_stays_within_2x_of_the_dense_mse(tmp_path: Path) -> None:
    figures = run("forecaster", tmp_path)
    assert figures["units"] == {"lstm.l0": 10, "lstm.l1": 6}
    assert figures["compact_class"] == "Forecaster" and figures["lstm_sizes"] == [[10], [6]]
    assert figures["max_difference"] <= 1e-5
    assert figures["parameters_compact"] == lstm_parameters(8, 10) + lstm_parameters(10, 6) + 6 + 1
    assert figures["parameters_dense"] == lstm_parameters(8, 24) + lstm_parameters(24, 24) + 24 + 1
    assert figures["compact_valid_mse"] == pytest.approx(figures["iss_valid_mse"], rel=1e-5)
    assert figures["mse_ratio"] <= 2.0, figures  # 1.03–1.38 over seeds 0–9
    assert figures["dense_valid_mse"] < 0.15  # the target's variance is ~0.48: the dense model learned the task


def test_gru_classifier_compacts_its_own_class_and_keeps_its_accuracy(tmp_path: Path) -> None:
    figures = run("gru_classifier", tmp_path)
    assert figures["units"] == {"gru.l0": 8} and figures["gru_sizes"] == [[8]] and figures["head_in_features"] == 8
    assert figures["compact_class"] == "Classifier" and figures["max_difference"] <= 1e-5
    assert figures["parameters_compact"] == 40 * 32 + lstm_parameters(32, 8, gates=3) + 8 * 4 + 4
    assert figures["compact_accuracy"] == figures["iss_accuracy"]
    assert figures["dense_accuracy"] >= 0.75 and figures["compact_accuracy"] >= 0.6  # chance: 0.25


def test_tagger_has_a_size_per_direction_and_onnxruntime_equals_pytorch(tmp_path: Path) -> None:
    figures = run("tagger_onnx", tmp_path)
    assert figures["units"] == {"lstm.l0": 10, "lstm.l0_reverse": 6, "lstm.l1": 8, "lstm.l1_reverse": 4}
    assert figures["lstm_sizes"] == [[10, 6], [8, 4]] and figures["head_in_features"] == 8 + 4
    assert figures["compact_class"] == "Tagger" and figures["max_difference"] <= 1e-5
    assert figures["parameters_compact"] == (32 * 24 + lstm_parameters(24, 10) + lstm_parameters(24, 6)
                                             + lstm_parameters(16, 8) + lstm_parameters(16, 4) + 12 * 4 + 4)
    assert figures["onnx_vs_compact"] <= 1e-5 and figures["onnx_vs_pruned"] <= 1e-5
    assert figures["onnx_file"] == str(tmp_path / "tagger.onnx") and (tmp_path / "tagger.onnx").stat().st_size > 0
    assert figures["compact_accuracy"] == figures["iss_accuracy"] >= 0.85  # the commonest tag: ~0.3


def test_seq2seq_encoder_and_decoder_layers_share_one_set_and_one_size(tmp_path: Path) -> None:
    figures = run("seq2seq", tmp_path)
    assert figures["sets"] == ["encoder.l0+decoder.l0", "encoder.l1+decoder.l1"]
    assert figures["units"] == {"encoder.l0+decoder.l0": 12, "encoder.l1+decoder.l1": 8}
    assert figures["encoder_sizes"] == figures["decoder_sizes"] == [[12], [8]]
    assert figures["compact_class"] == "Seq2Seq" and figures["max_difference"] <= 1e-5
    decoder = lstm_parameters(9, 12) + lstm_parameters(12, 8)
    assert figures["parameters_compact"] == lstm_parameters(8, 12) + lstm_parameters(12, 8) + decoder + 8 * 8 + 8
    assert figures["same_greedy_decoding"] is True  # the user's generate() carries the ragged state unchanged
    assert figures["compact_accuracy"] == figures["iss_accuracy"] >= 0.5  # chance: 0.125


def test_word_lm_round_trip_through_safetensors_keeps_perplexity_and_ties(tmp_path: Path) -> None:
    figures = run("word_lm_roundtrip", tmp_path)
    assert figures["units"] == {"rnn.l0": 10, "rnn.l1": 6} and figures["rnn_sizes"] == [[10], [6]]
    assert figures["compact_class"] == figures["reloaded_class"] == "RNNModel" and figures["max_difference"] <= 1e-5
    assert figures["still_tied"] and figures["reloaded_still_tied"] and figures["embedding_dim"] == 6
    vocabulary = figures["vocabulary"]
    rnn = lstm_parameters(6, 10) + lstm_parameters(10, 6)
    assert figures["parameters_compact"] == vocabulary * 6 + rnn + vocabulary  # the tied embedding counted once
    assert figures["reload_relative_difference"] <= 1e-6
    assert figures["compact_test_ppl"] == pytest.approx(figures["iss_test_ppl"], rel=1e-5)
    assert figures["dense_test_ppl"] < 8 and figures["iss_test_ppl"] < 10  # a unigram model: ~21
    assert (tmp_path / "lm.safetensors").stat().st_size == figures["file_bytes"]


def test_every_script_runs_as_a_script_and_is_in_the_index() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert sorted(path.stem for path in EXAMPLES.glob("*.py")) == sorted(NAMES)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in NAMES:
        assert f"examples/{name}.py" in readme, name
        done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True,
                              text=True, env=environment, cwd=EXAMPLES.parent)
        assert done.returncode == 0 and "--tiny" in done.stdout and "--out" in done.stdout, done.stderr
