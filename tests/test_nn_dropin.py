"""isscli.nn.LSTM/GRU/RNN: nn.LSTM's numbers and contract, with per-layer and per-direction sizes."""

from __future__ import annotations

import doctest
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import isscli.nn.recurrent as recurrent
from isscli.nn import GRU, LSTM, RNN

MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
TOLERANCE = {"atol": 1e-6, "rtol": 1e-6}


def torch_module(mode: str, *args, **kwargs) -> nn.RNNBase:
    if mode.startswith("rnn"):
        return nn.RNN(*args, nonlinearity=mode[4:], **kwargs)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[mode](*args, **kwargs)


def drop_in(mode: str, *args, **kwargs) -> nn.Module:
    if mode.startswith("rnn"):
        return RNN(*args, nonlinearity=mode[4:], **kwargs)
    return {"lstm": LSTM, "gru": GRU}[mode](*args, **kwargs)


def assert_same(expected, actual) -> None:
    """Outputs and states (tensors, tuples of them, packed sequences) equal to 1e-6."""
    if isinstance(expected, nn.utils.rnn.PackedSequence):
        assert torch.equal(expected.batch_sizes, actual.batch_sizes)
        expected, actual = expected.data, actual.data
    if isinstance(expected, Tensor):
        assert type(actual) is Tensor and actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, **TOLERANCE)
        return
    assert len(expected) == len(actual)
    for one, other in zip(expected, actual):
        assert_same(one, other)


def random_state(mode: str, count: int, batch: tuple[int, ...], hidden: int) -> Tensor | tuple[Tensor, Tensor]:
    state = torch.randn(count, *batch, hidden)
    return (state, torch.randn(count, *batch, hidden)) if mode == "lstm" else state


configs = st.fixed_dictionaries({
    "mode": st.sampled_from(MODES), "num_layers": st.integers(1, 3), "bidirectional": st.booleans(),
    "batch_first": st.booleans(), "bias": st.booleans(), "hidden_size": st.integers(1, 6),
    "input_size": st.integers(1, 5)})


def twins(config: dict, seed: int) -> tuple[nn.RNNBase, list[nn.Module]]:
    """A torch module and its drop-ins: by ``from_module`` and by ``load_state_dict`` into a fresh one."""
    config = dict(config)
    mode = config.pop("mode")
    torch.manual_seed(seed)
    reference = torch_module(mode, **config)
    fresh = drop_in(mode, **config)
    fresh.load_state_dict(reference.state_dict(), strict=True)
    return reference, [type(fresh).from_module(reference), fresh]


# -- 1. equal to torch -----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(config=configs, seed=st.integers(0, 2**16), batch=st.integers(1, 4), steps=st.integers(1, 6))
def test_dense_input_matches_torch(config: dict, seed: int, batch: int, steps: int) -> None:
    reference, modules = twins(config, seed)
    count = config["num_layers"] * (2 if config["bidirectional"] else 1)
    shape = (batch, steps) if config["batch_first"] else (steps, batch)
    batched = torch.randn(*shape, config["input_size"])
    unbatched = torch.randn(steps, config["input_size"])
    cases = [(batched, None), (batched, random_state(config["mode"], count, (batch,), config["hidden_size"])),
             (unbatched, None), (unbatched, random_state(config["mode"], count, (), config["hidden_size"]))]
    for module in modules:
        for inputs, hx in cases:
            assert_same(reference(inputs, hx), module(inputs, hx))
    back = torch_module(config["mode"], **{k: v for k, v in config.items() if k != "mode"})
    back.load_state_dict(modules[0].state_dict(), strict=True)
    assert_same(reference(batched), back(batched))


@settings(max_examples=40, deadline=None)
@given(config=configs, seed=st.integers(0, 2**16),
       lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), with_state=st.booleans())
def test_packed_input_matches_torch(config: dict, seed: int, lengths: list[int], with_state: bool) -> None:
    reference, modules = twins(config, seed)
    count = config["num_layers"] * (2 if config["bidirectional"] else 1)
    padded = torch.randn(len(lengths), max(lengths), config["input_size"])
    if not config["batch_first"]:
        padded = padded.transpose(0, 1)
    packed = pack_padded_sequence(padded, torch.tensor(lengths), config["batch_first"], enforce_sorted=False)
    hx = random_state(config["mode"], count, (len(lengths),), config["hidden_size"]) if with_state else None
    for module in modules:
        assert_same(reference(packed, hx), module(packed, hx))


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_gives_torch_initialisation(mode: str) -> None:
    torch.manual_seed(5)
    reference = torch_module(mode, 3, 7, num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    module = drop_in(mode, 3, 7, num_layers=2, bidirectional=True)
    assert list(module.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), reference.parameters()))
    assert (module.mode, module.hidden_size, module.hidden_sizes) == (mode, 7, [[7, 7], [7, 7]])


# -- 2. per-layer and per-direction sizes ----------------------------------------------------------------------


def by_hand(module: nn.Module, inputs: Tensor, hx: list | None) -> tuple[Tensor, list]:
    """The reference: one single-layer torch module per layer-direction, reverse directions by flipping time."""
    kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if module.bias else [])
    finals, layer_input, index = [], inputs, 0
    for layer, sizes in enumerate(module.hidden_sizes):
        outputs = []
        for direction, hidden in enumerate(sizes):
            single = torch_module(module.mode, layer_input.shape[-1], hidden, bias=module.bias)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            single.load_state_dict({f"{kind}_l0": getattr(module, kind + suffix) for kind in kinds})
            sequence = layer_input.flip(0) if direction else layer_input
            state = None if hx is None else hx[index]
            output, final = single(sequence, state)
            outputs.append(output.flip(0) if direction else output)
            finals.append(final)
            index += 1
        layer_input = torch.cat(outputs, -1)
    return layer_input, finals


def test_ragged_bidirectional_lstm_shapes_and_numbers() -> None:
    torch.manual_seed(0)
    lstm = LSTM(8, [(40, 20), 32], bidirectional=True)
    shapes = {name: tuple(p.shape) for name, p in lstm.named_parameters() if name.startswith("weight")}
    assert shapes == {"weight_ih_l0": (160, 8), "weight_hh_l0": (160, 40), "weight_ih_l0_reverse": (80, 8),
                      "weight_hh_l0_reverse": (80, 20), "weight_ih_l1": (128, 60), "weight_hh_l1": (128, 32),
                      "weight_ih_l1_reverse": (128, 60), "weight_hh_l1_reverse": (128, 32)}
    assert (lstm.hidden_sizes, lstm.hidden_size, lstm.num_layers) == ([[40, 20], [32, 32]], None, 2)
    assert repr(lstm) == "LSTM(8, [[40, 20], [32, 32]], num_layers=2, bidirectional=True)"
    inputs = torch.randn(5, 3, 8)
    output, (h_n, c_n) = lstm(inputs)
    assert output.shape == (5, 3, 64)
    assert type(h_n) is tuple and [tuple(h.shape) for h in h_n] == [(3, 40), (3, 20), (3, 32), (3, 32)]
    expected, finals = by_hand(lstm, inputs, None)
    assert_same(expected, output)
    assert_same(tuple(h[0] for h, _ in finals), h_n)
    assert_same(tuple(c[0] for _, c in finals), c_n)
    assert torch.cat((h_n[-2], h_n[-1]), 1).shape == (3, 64)


def test_ragged_unidirectional_batch_first() -> None:
    lstm = LSTM(8, [64, 48], batch_first=True)
    output, (h_n, _) = lstm(torch.randn(3, 7, 8))
    assert output.shape == (3, 7, 48) and h_n[-1].shape == (3, 48)
    torch.testing.assert_close(h_n[-1], output[:, -1], atol=0, rtol=0)
    steps = torch.randn(7, 8)
    unbatched, (h_one, c_one) = lstm(steps)
    assert unbatched.shape == (7, 48) and [tuple(h.shape) for h in h_one] == [(64,), (48,)]
    assert_same(lstm(steps[None], ([h[None] for h in h_one], [c[None] for c in c_one]))[0][0],
                lstm(steps, (h_one, c_one))[0])


@settings(max_examples=30, deadline=None)
@given(mode=st.sampled_from(MODES), bidirectional=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**16),
       sizes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=3),
       with_state=st.booleans())
def test_ragged_module_equals_separate_layers(mode: str, bidirectional: bool, bias: bool, seed: int,
                                              sizes: list[tuple[int, int]], with_state: bool) -> None:
    torch.manual_seed(seed)
    hidden = [pair if bidirectional else pair[0] for pair in sizes]
    module = drop_in(mode, 3, hidden, bidirectional=bidirectional, bias=bias)
    inputs = torch.randn(4, 2, 3)
    flat = [size for layer in module.hidden_sizes for size in layer]
    hx = None
    if with_state:
        hx = [torch.randn(1, 2, size) for size in flat]
        hx = [(h, torch.randn_like(h)) for h in hx] if mode == "lstm" else hx
    given_hx = None if hx is None else (([h for h, _ in hx], [c for _, c in hx]) if mode == "lstm" else hx)
    output, state = module(inputs, given_hx)
    expected, finals = by_hand(module, inputs, hx)
    assert_same(expected, output)
    states = list(zip(*state)) if mode == "lstm" else [[state[i]] for i in range(len(flat))]
    for index, final in enumerate(finals):
        for mine, theirs in zip(states[index], final if mode == "lstm" else [final]):
            torch.testing.assert_close(mine.reshape(theirs.shape), theirs, **TOLERANCE)


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(MODES), seed=st.integers(0, 2**16), lengths=st.lists(st.integers(1, 6), min_size=1,
       max_size=4), sizes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=2),
       with_state=st.booleans())
def test_ragged_packed_equals_each_sequence_alone(mode: str, seed: int, lengths: list[int],
                                                  sizes: list[tuple[int, int]], with_state: bool) -> None:
    torch.manual_seed(seed)
    module = drop_in(mode, 3, sizes, bidirectional=True, batch_first=True)
    padded = torch.randn(len(lengths), max(lengths), 3)
    packed = pack_padded_sequence(padded, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    flat = [size for layer in module.hidden_sizes for size in layer]
    hx = [torch.randn(len(lengths), size) for size in flat] if with_state else None
    hx = (hx, [torch.randn_like(h) for h in hx]) if with_state and mode == "lstm" else hx
    output, state = module(packed, hx)
    unpacked, _ = pad_packed_sequence(output, batch_first=True)
    h_n = state[0] if mode == "lstm" else state
    for row, length in enumerate(lengths):
        row_hx = None
        if hx is not None:
            row_hx = tuple([h[row] for h in part] for part in hx) if mode == "lstm" else [h[row] for h in hx]
        alone, alone_state = module(padded[row, :length], row_hx)
        torch.testing.assert_close(unpacked[row, :length], alone, **TOLERANCE)
        alone_h = alone_state[0] if mode == "lstm" else alone_state
        for mine, theirs in zip(h_n, alone_h):
            torch.testing.assert_close(mine[row], theirs, **TOLERANCE)


# -- 3. states -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_returned_ragged_state_carries_over(mode: str) -> None:
    torch.manual_seed(1)
    module = drop_in(mode, 3, [5, 2, 4])
    first, second = torch.randn(4, 2, 3), torch.randn(3, 2, 3)
    whole, whole_state = module(torch.cat([first, second]))
    _, state = module(first)
    assert type(state if mode != "lstm" else state[0]) is tuple
    rest, rest_state = module(second, state)
    assert_same(whole[4:], rest)
    assert_same(whole_state, rest_state)


def test_original_size_state_selects_kept_units() -> None:
    torch.manual_seed(2)
    lstm = LSTM(3, [3, 2], batch_first=True)
    kept = [[[0, 2, 5]], [torch.tensor([1, 4])]]
    lstm.set_kept_units(kept, [[6], [6]])
    assert list(lstm.state_dict()) == list(LSTM(3, [3, 2]).state_dict())
    inputs, h_0, c_0 = torch.randn(2, 4, 3), torch.randn(2, 2, 6), torch.randn(2, 2, 6)
    selected = ([h_0[0][:, [0, 2, 5]], h_0[1][:, [1, 4]]], [c_0[0][:, [0, 2, 5]], c_0[1][:, [1, 4]]])
    expected = lstm(inputs, selected)
    assert_same(expected, lstm(inputs, (h_0, c_0)))
    assert_same(expected, LSTM.from_module(lstm)(inputs, (list(h_0), list(c_0))))
    with pytest.raises(ValueError, match=r"expected \[3, 2\] \(or the original sizes \[6, 6\]\), got \[5, 5\]"):
        lstm(inputs, (torch.zeros(2, 2, 5), torch.zeros(2, 2, 5)))


def test_wrong_states_are_refused_with_sizes() -> None:
    gru = GRU(3, [(4, 2)], bidirectional=True)
    inputs = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match=r"h_0 hidden sizes per layer-direction: expected \[4, 2\], got \[4, 3\]"):
        gru(inputs, [torch.zeros(2, 4), torch.zeros(2, 3)])
    with pytest.raises(ValueError, match=r"h_0 has 1 layer-directions, expected 2"):
        gru(inputs, [torch.zeros(2, 4)])
    with pytest.raises(ValueError, match=r"batch size 2"):
        gru(inputs, [torch.zeros(3, 4), torch.zeros(3, 2)])
    with pytest.raises(ValueError, match="input_size=3"):
        gru(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="distinct indices below the original size 4"):
        gru.set_kept_units([[[0, 4, 1, 2], [0, 0]]], [[4, 4]])


# -- 4. refused configurations ---------------------------------------------------------------------------------


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ValueError, match="^proj_size is not supported by isscli.nn.LSTM: "):
        LSTM(4, 5, proj_size=2)
    with pytest.raises(ValueError, match="proj_size"):
        LSTM.from_module(nn.LSTM(4, 5, proj_size=2))
    with pytest.raises(ValueError, match="num_layers=3 but hidden_size lists 2 layers"):
        LSTM(4, [5, 6], num_layers=3)
    with pytest.raises(ValueError, match="num_layers=1 but hidden_size lists 2 layers"):
        GRU(4, [5, 6], 1)
    assert LSTM(4, [5, 6], num_layers=2).num_layers == 2
    with pytest.raises(ValueError, match=r"entry 0 is \(5, 6\)"):
        LSTM(4, [(5, 6)])
    with pytest.raises(ValueError, match="every size >= 1"):
        RNN(4, [5, 0])
    with pytest.raises(TypeError, match="got GRU"):
        LSTM.from_module(nn.GRU(4, 5))
    with pytest.raises(TypeError, match="got LSTM"):
        RNN.from_module(LSTM(4, 5))


def test_from_module_keeps_flags() -> None:
    rnn = RNN.from_module(nn.RNN(4, 5, 2, "relu", False, True, 0.25, True).double())
    flags = (rnn.mode, rnn.bias, rnn.batch_first, rnn.dropout, rnn.bidirectional)
    assert flags == ("rnn_relu", False, True, 0.25, True)
    assert rnn.weight_ih_l1_reverse.dtype == torch.float64 and rnn.hidden_sizes == [[5, 5], [5, 5]]
    copy = RNN.from_module(rnn)
    assert copy is not rnn and all(torch.equal(a, b) for a, b in zip(copy.parameters(), rnn.parameters()))
    assert repr(copy) == ("RNN(4, 5, num_layers=2, bias=False, batch_first=True, dropout=0.25, bidirectional=True, "
                          "nonlinearity='relu')")
    rnn.flatten_parameters()


# -- 5. ONNX ---------------------------------------------------------------------------------------------------


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = LSTM(8, [(6, 4), 5], bidirectional=True, batch_first=True)
        self.head = nn.Linear(10, 3)

    def forward(self, tokens: Tensor) -> Tensor:
        self.rnn.flatten_parameters()
        output, (h_n, _) = self.rnn(tokens)
        return self.head(output)


def onnx_outputs(model: nn.Module, args: tuple, run_args: tuple, **options) -> list:
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported model")
    pytest.importorskip("onnx", reason="onnx is needed by torch.onnx.export")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buffer, dynamo=False, **options)
    session = onnxruntime.InferenceSession(buffer.getvalue())
    names = [node.name for node in session.get_inputs()]
    return session.run(None, {name: value.numpy() for name, value in zip(names, run_args)})


def test_onnx_ragged_tagger_matches_torch() -> None:
    torch.manual_seed(3)
    model = Tagger().eval()
    other = torch.randn(3, 9, 8)
    (got,) = onnx_outputs(model, (torch.randn(2, 7, 8),), (other,), input_names=["tokens"],
                          dynamic_axes={"tokens": {0: "batch", 1: "time"}})
    torch.testing.assert_close(torch.from_numpy(got), model(other).detach(), rtol=1e-5, atol=1e-6)


def test_onnx_lstm_with_initial_state_matches_torch() -> None:
    torch.manual_seed(4)
    lstm = LSTM(4, 5, num_layers=2, bidirectional=True).eval()
    inputs, h_0, c_0 = torch.randn(6, 2, 4), torch.randn(4, 2, 5), torch.randn(4, 2, 5)
    got = onnx_outputs(lstm, (inputs, (h_0, c_0)), (inputs, h_0, c_0))
    output, (h_n, c_n) = lstm(inputs, (h_0, c_0))
    for mine, theirs in zip(got, (output, h_n, c_n)):
        torch.testing.assert_close(torch.from_numpy(mine), theirs.detach(), rtol=1e-5, atol=1e-6)


# -- 6. dropout ------------------------------------------------------------------------------------------------


def test_dropout_only_between_layers_in_training() -> None:
    torch.manual_seed(6)
    reference = nn.LSTM(4, 5, num_layers=3, dropout=0.5)
    lstm = LSTM.from_module(reference)
    inputs = torch.randn(6, 2, 4)
    reference.eval()
    lstm.eval()
    assert_same(reference(inputs), lstm(inputs))
    assert_same(lstm(inputs), lstm(inputs))
    reference.train()
    lstm.train()
    layers = [LSTM(4 if i == 0 else 5, 5) for i in range(3)]
    torch.manual_seed(7)
    expected = reference(inputs)
    torch.manual_seed(7)
    assert_same(expected, lstm(inputs))  # CPU: the same draws as nn.LSTM's inter-layer dropout
    for i, layer in enumerate(layers):
        layer.load_state_dict({f"{k}_l0": getattr(lstm, f"{k}_l{i}") for k in ("weight_ih", "weight_hh", "bias_ih",
                                                                                  "bias_hh")})
    torch.manual_seed(7)
    hand = layers[0](inputs)[0]
    hand = layers[1](F.dropout(hand, 0.5, True))[0]
    hand = layers[2](F.dropout(hand, 0.5, True))[0]
    assert_same(hand, expected[0])
    single = LSTM(4, 5, dropout=0.5).train()
    assert_same(single.eval()(inputs), single.train()(inputs))


# -- 7. the unit probe -----------------------------------------------------------------------------------------


def zero_unit(unit: int, layer: int, calls: list):
    def probe(at_layer: int, direction: int, sequence: Tensor, state):
        calls.append((at_layer, direction, tuple(sequence.shape), tuple(s.shape for s in state)))
        if (at_layer, direction) != (layer, 0):
            return sequence, state
        keep = torch.ones(sequence.shape[-1]).index_fill(0, torch.tensor(unit), 0.0)
        return sequence * keep, tuple(s * keep for s in state)
    return probe


def test_probe_zeroing_a_unit_is_zeroing_that_input_column() -> None:
    torch.manual_seed(8)
    lstm = LSTM(3, [(6, 4), 5], bidirectional=True)
    inputs = torch.randn(7, 2, 3)
    plain = lstm(inputs)
    calls: list = []
    lstm._unit_probe = zero_unit(3, 0, calls)
    output, (h_n, c_n) = lstm(inputs)
    assert calls == [(0, 0, (7, 2, 6), ((1, 2, 6), (1, 2, 6))), (0, 1, (7, 2, 4), ((1, 2, 4), (1, 2, 4))),
                     (1, 0, (7, 2, 5), ((1, 2, 5), (1, 2, 5))), (1, 1, (7, 2, 5), ((1, 2, 5), (1, 2, 5)))]
    first = LSTM(3, [(6, 4)], bidirectional=True)
    second = LSTM(10, [5], bidirectional=True)
    first.load_state_dict({k: v for k, v in lstm.state_dict().items() if "_l0" in k})
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in lstm.state_dict().items() if "_l1" in k})
    hidden, (first_h, first_c) = first(inputs)
    hidden = hidden * torch.ones(10).index_fill(0, torch.tensor(3), 0.0)
    expected, (second_h, _) = second(hidden)
    assert_same(expected, output)
    assert_same(tuple(second_h), h_n[2:])
    assert h_n[0][:, 3].abs().max() == 0 and c_n[0][:, 3].abs().max() == 0
    assert_same(first_h[1], h_n[1])
    assert not torch.allclose(plain[0], output)
    lstm._unit_probe = None
    assert_same(plain, lstm(inputs))


def test_probe_sees_packed_input_padded_in_caller_order() -> None:
    torch.manual_seed(9)
    gru = GRU(3, 4, bidirectional=True)
    padded = torch.randn(5, 3, 3)
    packed = pack_padded_sequence(padded, torch.tensor([2, 5, 3]), enforce_sorted=False)
    seen: list = []
    gru._unit_probe = lambda layer, direction, sequence, state: seen.append((sequence, state)) or (sequence, state)
    output, h_n = gru(packed)
    unpacked, _ = pad_packed_sequence(output)
    assert_same(unpacked, torch.cat([seen[0][0], seen[1][0]], -1))
    assert_same(h_n, torch.cat([seen[0][1], seen[1][1]]))
    gru._unit_probe = None
    assert_same(gru(packed), (output, h_n))


def test_docstring_examples_run() -> None:
    assert doctest.testmod(recurrent, raise_on_error=False).failed == 0
