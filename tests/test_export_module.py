"""Export of the user's own nn.Module: the file must compute what *their* forward computes, at any batch and time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

import isscli  # noqa: E402 - only where onnx and onnxruntime are installed
import isscli.nn  # noqa: E402
from isscli.io.errors import IsscliError, OutputError  # noqa: E402
from isscli.runtime.export import module as module_export  # noqa: E402
from isscli.runtime.export.module import export_module, variant_sizes  # noqa: E402
from isscli.runtime.export.onnx import TOLERANCE, VERSION_KEY, ExportMismatch  # noqa: E402

# -- the user's models, written as a user would --------------------------------------------------------------------


class Forecaster(nn.Module):
    """nn.LSTM(batch_first) → dropout → Linear on the last step; float x [B, T, F]."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 8, num_layers=2, batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(self.dropout(out[:, -1]))


class MeanPoolClassifier(nn.Module):
    """Embeddings → GRU → the mean over time (the model's own pooling) → classes; int x [B, T]."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 6)
        self.rnn = nn.GRU(6, 7, batch_first=True)
        self.head = nn.Linear(7, 4)

    def steps(self, x: Tensor) -> Tensor:
        return self.rnn(self.embedding(x))[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.steps(x).mean(dim=1))


class Tagger(nn.Module):
    """A bidirectional LSTM with a class per step [B, T, C]; ``rnn`` may be isscli's ragged drop-in."""

    def __init__(self, rnn: nn.Module | None = None, features: int = 10) -> None:
        super().__init__()
        self.rnn = rnn or nn.LSTM(5, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(features, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, object]:
        out, (h_n, _) = self.rnn(x)
        return self.head(out), h_n


class LastValidStep(nn.Module):
    """Takes (x, lengths) and reads each row's output at its own last valid step."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        last = out[torch.arange(x.size(0)), lengths - 1]
        return self.head(last)


# -- helpers -------------------------------------------------------------------------------------------------------


def ort_outputs(path: Path, *inputs: Tensor) -> list[np.ndarray]:
    """Run the written file in a fresh ONNX Runtime session, as a service would."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    return session.run(None, {name: tensor.numpy() for name, tensor in zip(names, inputs)})


def flat(result: object) -> list[Tensor]:
    if isinstance(result, Tensor):
        return [result]
    return [tensor for entry in result for tensor in flat(entry)]


def assert_file_matches(path: Path, model: nn.Module, *inputs: Tensor) -> None:
    """The file's outputs equal the module's (eval mode) on inputs of a size the export never saw."""
    model.eval()
    with torch.no_grad():
        expected = flat(model(*inputs))
    got = ort_outputs(path, *inputs)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert mine.shape == tuple(theirs.shape)
        assert np.abs(mine - theirs.numpy()).max() <= TOLERANCE * max(1.0, float(theirs.abs().max()))


def dims(path: Path) -> dict[str, list[object]]:
    """Each graph input's and output's dims: a name where dynamic, a size where static."""
    graph = onnx.load(str(path)).graph
    return {value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
            for value in [*graph.input, *graph.output]}


# -- 1-5: models that export --------------------------------------------------------------------------------------


def test_forecaster_exports_in_eval_mode_and_keeps_the_users_mode(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Forecaster().train()
    model.head.eval()  # mixed modes come back exactly as they were
    output = tmp_path / "forecaster.onnx"
    result = export_module(model, (torch.randn(3, 5, 3),), output, metadata={"task": "forecast"})
    assert model.training and model.rnn.training and not model.head.training
    assert (result.output, result.inputs, result.outputs) == (output, ["x"], ["output"])
    assert result.hidden_sizes == [[8], [8]]
    assert result.max_output_difference <= result.tolerance == TOLERANCE * max(1.0, result.output_scale)
    assert dims(output) == {"x": ["batch", "time", 3], "output": ["batch", 2]}
    props = {entry.key: entry.value for entry in onnx.load(str(output)).metadata_props}
    assert props == {"task": "forecast", VERSION_KEY: isscli.__version__}
    assert_file_matches(output, model, torch.randn(7, 11, 3))
    assert [path.name for path in tmp_path.iterdir()] == ["forecaster.onnx"]  # no temp file left


def test_mean_pooling_is_the_models_own(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = MeanPoolClassifier()
    output = tmp_path / "classifier.onnx"
    export_module(model, (torch.randint(0, 20, (4, 6)),), output)
    assert dims(output) == {"x": ["batch", "time"], "output": ["batch", 4]}
    tokens = torch.randint(0, 20, (5, 9))
    assert_file_matches(output, model, tokens)
    with torch.no_grad():
        max_pooled = model.head(model.steps(tokens).max(dim=1).values)
    (got,) = ort_outputs(output, tokens)
    assert np.abs(got - max_pooled.numpy()).max() > 1e-2  # not some other pooling


def test_bidirectional_tagger_with_batch_equal_to_time(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = Tagger()
    output = tmp_path / "tagger.onnx"
    result = export_module(model, (torch.randn(4, 4, 5),), output)  # batch == time: the axes must still be right
    assert result.outputs == ["output_0", "output_1"]
    assert dims(output)["output_0"] == ["batch", "time", 3]
    assert dims(output)["output_1"] == [4, "batch", 5]
    assert result.hidden_sizes == [[5, 5], [5, 5]]
    assert_file_matches(output, model, torch.randn(6, 9, 5))
    assert_file_matches(output, model, torch.randn(1, 2, 5))


def test_ragged_drop_in_tagger(tmp_path: Path) -> None:
    torch.manual_seed(3)
    rnn = isscli.nn.LSTM(5, hidden_size=[(6, 4), 5], bidirectional=True, batch_first=True)
    model = Tagger(rnn, features=10)
    output = tmp_path / "ragged.onnx"
    result = export_module(model, (torch.randn(2, 7, 5),), output)
    assert result.hidden_sizes == [[6, 4], [5, 5]]
    assert result.outputs == [f"output_{index}" for index in range(5)]  # logits, then h_n's four [B, H_i]
    assert [dims(output)[name] for name in result.outputs] == [["batch", "time", 3], ["batch", 6], ["batch", 4],
                                                               ["batch", 5], ["batch", 5]]
    assert_file_matches(output, model, torch.randn(5, 3, 5))


def test_lengths_input_is_used(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = LastValidStep()
    output = tmp_path / "lengths.onnx"
    result = export_module(model, (torch.randn(3, 6, 3), torch.tensor([6, 2, 5])), output)
    assert result.inputs == ["x", "lengths"]
    assert dims(output) == {"x": ["batch", "time", 3], "lengths": ["batch"], "output": ["batch", 2]}
    assert "time 5" in result.checked_on  # time cut below a length (6): they were clamped, not out of range
    x, lengths = torch.randn(5, 10, 3), torch.tensor([10, 1, 7, 3, 9])
    assert_file_matches(output, model, x, lengths)
    (shorter,) = ort_outputs(output, x, torch.tensor([9, 1, 7, 3, 9]))
    (full,) = ort_outputs(output, x, lengths)
    assert np.abs(shorter[0] - full[0]).max() > 1e-4 and np.allclose(shorter[1:], full[1:])


@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (1, 2), (2, 2), (3, 1), (4, 5), (5, 4), (2, 4)])
def test_check_sizes_change_one_thing_then_both(batch: int, steps: int) -> None:
    only_batch, only_time, both = variant_sizes(batch, steps)
    assert only_batch[0] != batch and only_batch[1] == steps
    assert only_time[0] == batch and only_time[1] != steps
    assert both[0] != batch and both[1] != steps and both[0] != both[1]


# -- 6: errors: one line, and nothing written ---------------------------------------------------------------------


def one_line(error: IsscliError) -> str:
    text = str(error)
    assert "\n" not in text and error.hint
    return text


def test_existing_output_needs_force(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    output.write_bytes(b"keep me")
    before = os.stat(output).st_mtime_ns
    with pytest.raises(OutputError, match="already exists"):
        export_module(Forecaster(), (torch.randn(2, 3, 3),), output)
    assert output.read_bytes() == b"keep me" and os.stat(output).st_mtime_ns == before
    export_module(Forecaster(), (torch.randn(2, 3, 3),), output, force=True)
    assert onnx.load(str(output)).graph.output[0].name == "output"


class Eigen(nn.Module):
    """An operator torch.onnx has no ONNX translation for."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.linalg.eigh(x @ x.transpose(-1, -2)).eigenvalues


def test_unexportable_forward_is_one_clear_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "eigen.onnx"
    with pytest.raises(IsscliError) as caught:
        export_module(Eigen(), (torch.randn(2, 3, 3),), output)
    text = one_line(caught.value)
    assert text.startswith("torch.onnx.export failed: Exporting the operator 'aten::linalg_eigh'")
    assert "ONNX cannot express this forward" in text
    assert capfd.readouterr().out == ""  # torch's IR dump never reaches stdout (it may carry --json)
    assert list(tmp_path.iterdir()) == []


class FixedBatch(nn.Module):
    """Turns the batch size into a Python int: the trace bakes the example's batch into a Reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return out.reshape(int(out.shape[0]), -1)


def test_graph_fixed_to_the_example_batch_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "fixed.onnx"
    with pytest.raises(ExportMismatch) as caught:
        export_module(FixedBatch(), (torch.randn(2, 4, 3),), output)
    text = one_line(caught.value)
    assert "nothing was written" in text and "batch 3" in text
    assert "test_export_module.py" in text  # the hint points at the line the trace could not record
    assert list(tmp_path.iterdir()) == []


class SignBranch(nn.Module):
    """Python control flow on a tensor value: the trace records only the branch the example took."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 3, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return out * 2 if x.sum() > 0 else out


def test_check_inputs_catch_a_branch_the_trace_fixed(tmp_path: Path) -> None:
    x = torch.rand(2, 3, 2)
    output = tmp_path / "branch.onnx"
    with pytest.raises(ExportMismatch, match=r"`output` differs from the model's by .* on check input 0") as caught:
        export_module(SignBranch(), (x,), output, check_inputs=[(-torch.rand(3, 5, 2),)])
    assert "Converting a tensor to a Python boolean" in one_line(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_runtime_disagreeing_is_a_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = module_export.run_session
    monkeypatch.setattr(module_export, "run_session", lambda *args: [value + 1e-2 for value in real(*args)])
    output = tmp_path / "wrong.onnx"
    with pytest.raises(ExportMismatch, match=r"`output` differs from the model's by 0\.01 .* on example_input"):
        export_module(Forecaster(), (torch.randn(2, 3, 3),), output)
    assert list(tmp_path.iterdir()) == []


class FixedWindow(nn.Module):
    """Flattens time into a Linear: it cannot take another time length, which the exported graph promises."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(12, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x.flatten(1))


@pytest.mark.parametrize(
    ("model", "example", "message"),
    [
        (FixedWindow(), (torch.randn(2, 4, 3),), "the model's forward fails on an input of batch 2 and time 6"),
        (Forecaster(), [torch.randn(2, 3, 3), torch.ones(5)], "`lengths` of example_input has shape (5,)"),
        (Forecaster(), ("x",), "example_input must be a non-empty tuple of tensors"),
        (Forecaster(), (torch.randn(2, 0, 3),), "`x` of example_input has no time steps"),
        (Forecaster(), (torch.randn(2, 3, 4),), "the model's forward fails on example_input"),
    ],
)
def test_bad_models_and_inputs(tmp_path: Path, model: nn.Module, example: object, message: str) -> None:
    with pytest.raises(IsscliError) as caught:
        export_module(model, example, tmp_path / "bad.onnx")  # type: ignore[arg-type]
    assert message in one_line(caught.value)
    assert list(tmp_path.iterdir()) == []


# -- pack_padded_sequence: what the TorchScript exporter makes of it ----------------------------------------------


class Packed(nn.Module):
    """Packs ``x`` by ``lengths``; ``read`` says what the forward returns."""

    def __init__(self, rnn: nn.Module, read: str) -> None:
        super().__init__()
        self.rnn, self.read = rnn, read

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.rnn(packed)
        if self.read == "h_n":
            return h_n[-1]
        total = x.size(1) if self.read == "padded to x" else None
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=total)[0]


@pytest.mark.parametrize(
    ("rnn", "read", "refusal"),
    [
        (nn.LSTM, "padded to x", None),  # exports: ONNX's LSTM takes the lengths as sequence_lens
        (nn.LSTM, "padded to longest", "has shape (3, 5, 4) where the model's is (3, 4, 4)"),  # ONNX pads to x's T
        (nn.LSTM, "h_n", "torch.onnx.export failed"),  # torch's packed-state export breaks
        (isscli.nn.LSTM, "padded to x", "ONNX Runtime cannot run the exported graph"),  # the layout is traced fixed
    ],
)
def test_packed_sequences(tmp_path: Path, rnn: type[nn.Module], read: str, refusal: str | None) -> None:
    torch.manual_seed(5)
    model = Packed(rnn(3, 4, batch_first=True), read)
    output = tmp_path / "packed.onnx"
    example = (torch.randn(3, 5, 3), torch.tensor([4, 2, 3]))
    if refusal is None:
        export_module(model, example, output)
        assert_file_matches(output, model, torch.randn(4, 8, 3), torch.tensor([8, 1, 5, 3]))
        return
    with pytest.raises(IsscliError) as caught:
        export_module(model, example, output)
    assert refusal in one_line(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[Path] = []

    def interrupted(model: nn.Module, args: tuple, f: str, **options: object) -> None:
        seen.append(Path(f))
        Path(f).write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_module(Forecaster(), (torch.randn(2, 3, 3),), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == [] and not seen[0].parent.exists()
    print("stdout is back")
    assert capfd.readouterr().out == "stdout is back\n"
