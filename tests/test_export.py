"""Export: ONNX Runtime and the plain-PyTorch loader must compute what isscli's compacted models compute."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import isscli  # noqa: E402 - only where onnx and onnxruntime are installed
from isscli.io.errors import IsscliError, OutputError  # noqa: E402
from isscli.iss.spec import derive_spec  # noqa: E402
from isscli.iss.surgery import zero_components  # noqa: E402
from isscli.models import build_model, load_model, model_tensors  # noqa: E402
from isscli.models.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from isscli.runtime.benchmark import inference  # noqa: E402
from isscli.runtime.export import (  # noqa: E402
    ExportMismatch,
    export_onnx,
    initial_feeds,
    onnx as onnx_export,  # noqa: E402
    onnx_session,
    onnx_workload,
    state_names,
    to_onnx,
    verify_onnx,
)
from isscli.runtime.export.plain_lm import PlainLM  # noqa: E402
from tests import strategies  # noqa: E402
from tests.conftest import file_state  # noqa: E402

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
#: float32 bound for these tiny models: the compaction check's, tighter than the export's 1e-4
TIGHT = 1e-5
PLAIN_LM = Path(onnx_export.__file__).with_name("plain_lm.py")


def compacted(config: dict, removed: list[list[int]], seed: int = 0) -> Checkpoint:
    """``config``'s model with ``removed[i]`` units of layer-direction i zeroed, then compacted by isscli."""
    torch.manual_seed(seed)
    model = build_model(config)
    tensors = model_tensors(model)
    for iss, units in zip(derive_spec(tensors).sets, removed):
        mask = torch.zeros(iss.components, dtype=torch.bool)
        mask[units] = True
        zero_components(tensors, iss, mask)
    return isscli.compact(isscli.CompactRequest(checkpoint=Checkpoint(tensors, model.config.to_dict()))).checkpoint


def lm_checkpoint(cell: str = "lstm", tied: bool = False) -> Checkpoint:
    """A 2-layer LM compacted from 9 and 7 units to 7 and 5 (tied: the embedding shrinks with the last layer)."""
    config = {"family": "lm", "vocab_size": 40, "embedding_size": 7 if tied else 6, "hidden_sizes": [[9], [7]],
              "cell": cell, "tie_weights": tied}
    checkpoint = compacted(config, [[0, 4], [1, 6]])
    assert checkpoint.config.hidden_sizes == [[7], [5]]
    return checkpoint


def padded_batch(lengths: list[int], vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    steps = max(lengths)
    tokens = torch.randint(1, vocab_size, (steps, len(lengths)), generator=torch.Generator().manual_seed(seed))
    lengths_tensor = torch.tensor(lengths)
    tokens[torch.arange(steps).unsqueeze(1) >= lengths_tensor.unsqueeze(0)] = 0
    return tokens, lengths_tensor


def flat(state: list[list]) -> list[torch.Tensor]:
    entries = [entry for layer in state for entry in layer]
    return [tensor for entry in entries for tensor in (entry if isinstance(entry, tuple) else (entry,))]


# -- language models --------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_language_model_streams_in_onnx_runtime_as_in_pytorch(cell: str, tied: bool) -> None:
    model = load_model(lm_checkpoint(cell, tied))
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    session = onnx_session(proto)
    names = state_names(model.config)
    kinds = ["h", "c"] if cell == "lstm" else ["h"]
    assert [i.name for i in session.get_inputs()] == ["tokens", *(f"{k}_l{layer}" for layer in (0, 1) for k in kinds)]
    assert [o.name for o in session.get_outputs()][1:] == [output for _, output, _ in names]
    generator = torch.Generator().manual_seed(1)
    state, carried = None, {}
    with torch.no_grad():
        for steps in (5, 8):  # the state carried across chunks of different lengths, batch 3
            tokens = torch.randint(0, 40, (steps, 3), generator=generator)
            logits, state = model(tokens, state)
            ran = session.run(None, {**initial_feeds(model.config, tokens), **carried})
            carried = {name: value for (name, _, _), value in zip(names, ran[1:])}
            assert ran[0].shape == (steps, 3, 40)
            for expected, actual in zip([logits, *flat(state)], ran):
                assert float((expected - torch.from_numpy(actual)).abs().max()) <= TIGHT
    for steps, batch, seed in ((12, 4, 0), (1, 1, 2), (17, 6, 3)):
        difference, scale = verify_onnx(model, proto, steps, batch, seed)
        assert difference <= TIGHT * max(1.0, scale) and scale > 0


def test_tied_decoder_is_stored_once() -> None:
    tied, untied = (to_onnx(load_model(lm_checkpoint(tied=tied))) for tied in (True, False))
    assert "decoder.weight" not in {t.name for t in tied.graph.initializer}
    assert "decoder.weight" in {t.name for t in untied.graph.initializer}


# -- classifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("pooling", ["max", "mean", "last"])
def test_bidirectional_classifier_pools_padded_batches_as_in_pytorch(pooling: str, cell: str) -> None:
    config = {"family": "classifier", "vocab_size": 30, "embedding_size": 8, "hidden_sizes": [[6, 5], [5, 4]],
              "num_classes": 3, "pooling": pooling, "cell": cell}
    checkpoint = compacted(config, [[0], [1, 2], [3], []])
    assert checkpoint.config.hidden_sizes == [[5, 3], [4, 4]]
    model = load_model(checkpoint)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    recurrent = [node for node in proto.graph.node if node.op_type in ("LSTM", "GRU", "RNN")]
    attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} for node in recurrent]
    assert [(a["direction"], a["hidden_size"]) for a in attributes] == [
        (b"forward", 5), (b"reverse", 3), (b"forward", 4), (b"reverse", 4)]
    tokens, lengths = padded_batch([9, 1, 4, 9, 2], 30)
    (logits,) = onnx_session(proto).run(["logits"], initial_feeds(model.config, tokens, lengths))
    with torch.no_grad():
        expected = model(tokens, lengths)
    assert logits.shape == (5, 3)
    assert float((expected - torch.from_numpy(logits)).abs().max()) <= TIGHT
    difference, scale = verify_onnx(model, proto, steps=7, batch=6, seed=4)
    assert difference <= TIGHT * max(1.0, scale)


def architectures() -> st.SearchStrategy[dict]:
    return strategies.architectures(families=("lm", "classifier"), cells=CELLS, vocab_size=13)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=architectures(), steps=st.integers(1, 9), batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_any_sizes_export_exactly(config: dict, steps: int, batch: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model(config)
    difference, scale = verify_onnx(model, to_onnx(model), steps, batch, seed)
    assert difference <= TIGHT * max(1.0, scale)


# -- export_onnx: checked, atomic, refusing ---------------------------------------------------


def test_export_writes_a_verified_file_with_the_config(tmp_path: Path) -> None:
    checkpoint = lm_checkpoint("gru")
    source = save_checkpoint(tmp_path / "small.safetensors", checkpoint.tensors, checkpoint.config)
    result = export_onnx(isscli.load(source), tmp_path / "small.onnx")
    assert result.output == tmp_path / "small.onnx"
    assert result.inputs == ["tokens", "h_l0", "h_l1"]
    assert result.outputs == ["logits", "h_out_l0", "h_out_l1"]
    assert result.hidden_sizes == [[7], [5]]
    assert result.tolerance == pytest.approx(1e-4 * max(1.0, result.output_scale))
    assert 0 <= result.max_output_difference <= result.tolerance
    assert result.to_json()["output"] == str(tmp_path / "small.onnx")
    saved = onnx.load(str(result.output))
    properties = {p.key: p.value for p in saved.metadata_props}
    assert json.loads(properties["isscli.config"]) == load_model(checkpoint).config.to_dict()
    assert properties["isscli.version"] == isscli.__version__ == saved.producer_version
    assert verify_onnx(load_model(checkpoint), saved)[0] <= TIGHT
    with pytest.raises(OutputError, match="already exists"):
        export_onnx(isscli.load(source), tmp_path / "small.onnx")
    with pytest.raises(OutputError, match="is the input file"):
        export_onnx(isscli.load(source), source, force=True)
    assert export_onnx(isscli.load(source), tmp_path / "small.onnx", force=True).output.is_file()


def test_a_wrong_weight_is_refused_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = lm_checkpoint()
    source = save_checkpoint(tmp_path / "small.safetensors", checkpoint.tensors, checkpoint.config)
    before = file_state(tmp_path)

    def wrong_to_onnx(model: torch.nn.Module, opset: int = 17) -> onnx.ModelProto:
        proto = to_onnx(model, opset)
        recurrent = next(t for t in proto.graph.initializer if t.name == "R_l1")
        values = onnx.numpy_helper.to_array(recurrent).copy()
        values[0, 3, 2] += 0.05  # one recurrent weight of layer 1's output gate
        recurrent.CopyFrom(onnx.numpy_helper.from_array(values, "R_l1"))
        return proto

    model = load_model(checkpoint)
    difference, scale = verify_onnx(model, wrong_to_onnx(model))
    assert 1e-4 * max(1.0, scale) < difference < 1.0
    monkeypatch.setattr(onnx_export, "to_onnx", wrong_to_onnx)
    with pytest.raises(ExportMismatch, match=r"ONNX Runtime's outputs differ from PyTorch's by .* nothing was written"):
        export_onnx(isscli.load(source), tmp_path / "small.onnx")
    assert ExportMismatch.exit_code == 1
    assert file_state(tmp_path) == before


def test_nan_weights_fail_verification(tmp_path: Path) -> None:
    checkpoint = lm_checkpoint()
    checkpoint.tensors["rnn.weight_hh_l1"][2, 0] = math.nan
    model = load_model(checkpoint)
    difference, scale = verify_onnx(model, to_onnx(model))
    assert difference == math.inf and math.isfinite(scale)
    source = save_checkpoint(tmp_path / "nan.safetensors", checkpoint.tensors, checkpoint.config)
    with pytest.raises(ExportMismatch, match=r"not finite \(NaN or inf\)") as error:
        export_onnx(isscli.load(source), tmp_path / "nan.onnx")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "nan.onnx").exists()


def test_rhn_models_are_not_exportable(tmp_path: Path) -> None:
    config = {"family": "rhn", "vocab_size": 17, "embedding_size": 4, "hidden_sizes": [[4]], "depth": 2}
    with pytest.raises(IsscliError) as error:
        to_onnx(build_model(config))
    assert str(error.value) == (
        "RHN models cannot be exported to ONNX, which has no recurrent highway operator — export an LSTM, GRU or "
        "RNN model (family `lm` or `classifier`), or run the RHN in PyTorch"
    )
    source = save_checkpoint(tmp_path / "rhn.safetensors", model_tensors(build_model(config)), config)
    with pytest.raises(IsscliError, match="RHN models cannot be exported"):
        export_onnx(isscli.load(source), tmp_path / "rhn.onnx")
    assert not (tmp_path / "rhn.onnx").exists()


def test_bad_opset_and_missing_packages_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(lm_checkpoint())
    latest = onnx.defs.onnx_opset_version()
    with pytest.raises(IsscliError, match=f"^`opset` 12 is outside 13–{latest} — give e.g. `opset`=17$"):
        to_onnx(model, opset=12)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if it were not installed
    with pytest.raises(IsscliError) as error:
        to_onnx(model)
    assert str(error.value) == "ONNX export needs the onnx and onnxruntime packages — pip install 'isscli[export]'"


def test_a_graph_onnx_runtime_cannot_load_is_an_isscli_error() -> None:
    proto = to_onnx(load_model(lm_checkpoint()))
    proto.graph.initializer.remove(next(t for t in proto.graph.initializer if t.name == "W_l0"))
    with pytest.raises(IsscliError, match=r"^ONNX Runtime \S+ cannot load the exported graph \(.*\) — export with"):
        onnx_session(proto)


# -- bench --runtime onnxruntime --------------------------------------------------------------


@pytest.mark.parametrize("family", ["lm", "classifier"])
def test_onnx_workload_runs_the_pytorch_workload_s_inputs(family: str) -> None:
    if family == "lm":
        model = load_model(lm_checkpoint("lstm"))
    else:
        model = build_model({"family": "classifier", "vocab_size": 30, "embedding_size": 8,
                             "hidden_sizes": [[6, 4]], "num_classes": 3, "pooling": "last"}).eval()
    session = onnx_session(to_onnx(model), threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    run = onnx_workload(session, model.config, "full", batch=3, steps=6, seed=5)
    with torch.no_grad():
        expected = inference(model, "full", 3, 6, torch.device("cpu"), 5)()
    expected = expected[0] if family == "lm" else expected
    assert float((expected - torch.from_numpy(run()[0])).abs().max()) <= TIGHT
    with pytest.raises(IsscliError, match="not the `recurrent` part"):
        onnx_workload(session, model.config, "recurrent", batch=3, steps=6, seed=5)


# -- the plain-PyTorch loader -----------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_plain_lm_reproduces_the_compacted_model(cell: str, tied: bool, tmp_path: Path) -> None:
    checkpoint = lm_checkpoint(cell, tied)
    source = save_checkpoint(tmp_path / "small.safetensors", checkpoint.tensors, checkpoint.config)
    model, plain = load_model(isscli.load(source)), PlainLM.from_file(source)
    assert [layer.hidden_size for layer in plain.layers] == [7, 5]
    assert (plain.decoder.weight is plain.encoder.weight) == tied
    generator = torch.Generator().manual_seed(0)
    state = plain_state = None
    with torch.no_grad():
        for steps in (6, 4):
            tokens = torch.randint(0, 40, (steps, 3), generator=generator)
            logits, state = model(tokens, state)
            plain_logits, plain_state = plain(tokens, plain_state)
            assert float((logits - plain_logits).abs().max()) <= 1e-6
            ours = flat([[entry] for entry in plain_state])
            assert max(float((a - b).abs().max()) for a, b in zip(flat(state), ours)) <= 1e-6


def test_plain_lm_refuses_a_classifier(tmp_path: Path) -> None:
    config = {"family": "classifier", "vocab_size": 30, "embedding_size": 8, "hidden_sizes": [[6, 4]],
              "num_classes": 3}
    source = save_checkpoint(tmp_path / "classifier.safetensors", model_tensors(build_model(config)), config)
    with pytest.raises(ValueError, match="is not an isscli checkpoint of a unidirectional language model"):
        PlainLM.from_file(source)


def test_plain_lm_runs_as_a_copied_file_without_isscli(tmp_path: Path) -> None:
    checkpoint = lm_checkpoint("lstm", tied=True)
    source = save_checkpoint(tmp_path / "small.safetensors", checkpoint.tensors, checkpoint.config)
    shutil.copy(PLAIN_LM, tmp_path / "service_lm.py")
    tokens = torch.randint(0, 40, (5, 2), generator=torch.Generator().manual_seed(0))
    torch.save(tokens, tmp_path / "tokens.pt")
    script = (
        "import json, sys, torch, service_lm\n"
        "model = service_lm.PlainLM.from_file('small.safetensors')\n"
        "with torch.no_grad():\n"
        "    torch.save(model(torch.load('tokens.pt'))[0], 'logits.pt')\n"
        "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] == 'isscli')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
    with torch.no_grad():
        expected, _ = load_model(isscli.load(source))(tokens)
    assert float((expected - torch.load(tmp_path / "logits.pt")).abs().max()) <= 1e-6
