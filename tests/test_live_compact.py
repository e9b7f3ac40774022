"""Groups of a live nn.Module found by probing its forward, and compaction of the user's own class."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import isscli
from isscli.io.errors import IsscliError
from isscli.iss.spec import derive_spec
from isscli.iss.surgery import prune
from isscli.iss.verification import CompactionMismatch
from isscli.live.compact import compact_module
from isscli.live.trace import derive_module_spec

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Head(nn.Module):
    """A user's model: one recurrent stack and a head reading it as ``reader`` says."""

    def __init__(self, cell: str, layers: int, hidden: int, bidirectional: bool, reader: str, batch_first: bool):
        super().__init__()
        self.rnn = CELLS[cell](5, hidden, layers, bidirectional=bidirectional, batch_first=batch_first)
        self.cell, self.reader, self.batch_first = cell, reader, batch_first
        width = hidden * (2 if bidirectional else 1)
        self.fc = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, state = self.rnn(x)
        time = 1 if self.batch_first else 0
        if self.reader == "last":
            return self.fc(out.select(time, -1))
        if self.reader == "mean":
            return self.fc(torch.tanh(out.mean(time)))
        if self.reader == "state":
            h = state[0] if self.cell == "lstm" else state
            return self.fc(torch.cat((h[-2], h[-1]), 1) if self.rnn.bidirectional else h[-1])
        return self.fc(torch.tanh(out) if self.reader == "steps" else torch.relu(out))


def zero_groups(model: nn.Module, spec: isscli.GroupSpec, chosen: list[torch.Tensor]) -> None:
    """Zero, in the live model, the groups ``chosen`` marks in each set, as ISS training would."""
    pruned = prune({name: p.detach() for name, p in model.named_parameters()}, spec, 0.0, chosen=chosen)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(pruned.tensors[name])


def zero_some(model: nn.Module, spec: isscli.GroupSpec, draw: st.DrawFn) -> None:
    """Zero a drawn subset of each set's groups (at least one unit kept)."""
    chosen = []
    for iss in spec.sets:
        mask = torch.tensor(draw(st.lists(st.booleans(), min_size=iss.components, max_size=iss.components)))
        mask[draw(st.integers(0, iss.components - 1))] = False
        chosen.append(mask)
    zero_groups(model, spec, chosen)


def receivers(spec: isscli.GroupSpec) -> list[set[tuple[str, int, int]]]:
    return [{(p.tensor, p.dim, p.offset) for p in iss.receivers} for iss in spec.sets]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_probed_groups_equal_named_groups_and_compaction_is_exact(data: st.DataObject) -> None:
    torch.manual_seed(data.draw(st.integers(0, 1000)))
    cell = data.draw(st.sampled_from(sorted(CELLS)))
    bidirectional = data.draw(st.booleans())
    reader = data.draw(st.sampled_from(["last", "mean", "state", "steps"]))  # "relu": a test of its own below
    batch_first = data.draw(st.booleans())
    hidden = data.draw(st.sampled_from([2, 3, 4, 5, 6, 7, 9]))  # 5 = the input size: the head is no tied embedding
    model = Head(cell, data.draw(st.integers(1, 3)), hidden, bidirectional, reader, batch_first)
    x = torch.randn((4, 6, 5) if batch_first else (6, 4, 5))
    spec = derive_module_spec(model, x)
    named = derive_spec({name: p.detach() for name, p in model.named_parameters()})
    assert receivers(spec) == receivers(named)
    assert [iss.components for iss in spec.sets] == [iss.components for iss in named.sets]
    zero_some(model, spec, data.draw)
    with torch.no_grad():
        expected = model.eval()(x)
    result = compact_module(model, x, spec=spec)
    small = result.model
    assert type(small) is Head
    with torch.no_grad():
        got = small.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5 * float(expected.abs().max()), rtol=0)
    assert small.fc.in_features == small.fc.weight.shape[1] == sum(
        change.after for change in result.sets[-2 if bidirectional else -1:])
    assert result.parameters_after == sum(p.numel() for p in small.parameters())
    removed = any(change.after < change.components for change in result.sets)
    assert (result.parameters_after < result.parameters_before) == removed
    assert model.rnn.weight_hh_l0.shape[1] == model.fc.in_features // (2 if bidirectional else 1)  # input untouched


def test_a_relu_between_units_and_head_does_not_fake_receivers() -> None:
    """A ReLU silences some lines in some passes; a receiver must be found in every repetition of the test."""
    torch.manual_seed(3)
    model = Head("lstm", 2, 16, True, "relu", True)
    x = torch.randn(4, 6, 5)
    assert receivers(derive_module_spec(model, x)) == receivers(
        derive_spec({name: p.detach() for name, p in model.named_parameters()}))


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.LSTM(6, 12, 2)
        self.decoder = nn.LSTM(4, 12, 2)
        self.head = nn.Linear(12, 4)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(source)
        out, _ = self.decoder(target, state)
        return self.head(out)


def test_encoder_decoder_state_handoff_is_one_set_per_layer() -> None:
    torch.manual_seed(0)
    model = Seq2Seq()
    example = (torch.randn(7, 2, 6), torch.randn(5, 2, 4))
    spec = derive_module_spec(model, example)
    assert [(s.name, s.components) for s in spec.sets] == [("encoder.l0+decoder.l0", 12), ("encoder.l1+decoder.l1", 12)]
    assert receivers(spec)[1] == {("encoder.weight_hh_l1", 1, 0), ("decoder.weight_hh_l1", 1, 0), ("head.weight", 1, 0)}
    zero_groups(model, spec, [torch.arange(12) % 3 == 0, torch.arange(12) < 5])
    result = compact_module(model, example)
    assert result.units == {"encoder.l0+decoder.l0": 8, "encoder.l1+decoder.l1": 7}
    assert result.model.encoder.hidden_sizes == result.model.decoder.hidden_sizes == [[8], [7]]
    assert result.max_difference < 1e-6


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Embedding(30, 10)
        self.rnn = nn.LSTM(10, 10, 2)
        self.decoder = nn.Linear(10, 30)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]):
        out, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(out), hidden


def test_tied_lm_stays_tied_and_takes_a_state_of_either_size() -> None:
    torch.manual_seed(1)
    model = TiedLM()
    zeros = (torch.zeros(2, 3, 10), torch.zeros(2, 3, 10))
    example = (torch.randint(0, 30, (6, 3)), zeros)
    spec = derive_module_spec(model, example)
    assert receivers(spec) == receivers(derive_spec({n: p.detach() for n, p in model.named_parameters()}))
    zero_groups(model, spec, [torch.arange(10) < 3, torch.arange(10) >= 6])
    result = compact_module(model, example)
    small = result.model
    assert small.decoder.weight is small.encoder.weight and small.encoder.weight.shape == (30, 6)
    assert result.not_compared == ["output[1][0]", "output[1][1]"]
    logits, hidden = small(*example)  # the dense-sized zeros of the user's init_hidden are accepted
    again, _ = small(example[0], hidden)  # and the compact state it returns, carried to the next batch
    expected, dense_hidden = model(*example)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(again, model(example[0], dense_hidden)[0], atol=1e-5)


class Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.rnn(x)[0]))


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x[0])[0]


class Bridged(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.GRU(4, 8)
        self.bridge = nn.Linear(8, 8)
        self.decoder = nn.GRU(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(x)
        return self.decoder(x, torch.tanh(self.bridge(h)))[0]


class HardCoded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0].reshape(-1, 8))


@pytest.mark.parametrize(("model", "message"), [
    (Normed(), "the units of rnn.l0 reach the model's outputs by a path that is not a weight column"),
    (CellLoop(), "`cell` is an LSTMCell: isscli shrinks whole recurrent layers"),
    (Bridged(), "the initial state of `decoder.l0` is computed from other values"),
    (nn.Sequential(nn.Linear(4, 4)), "the model has no nn.LSTM, nn.GRU or nn.RNN module"),
])
def test_models_isscli_cannot_shrink_exactly_are_refused_by_name(model: nn.Module, message: str) -> None:
    with pytest.raises(IsscliError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        derive_module_spec(model, torch.randn(5, 2, 4))


def test_lstm_with_projection_is_refused() -> None:
    model = nn.Sequential()
    model.add_module("rnn", nn.LSTM(4, 8, proj_size=3))
    with pytest.raises(IsscliError, match="proj_size=3"):
        derive_module_spec(model, torch.randn(5, 2, 4))


def test_a_forward_that_hard_codes_sizes_is_reported_in_one_line() -> None:
    model = HardCoded()
    x = torch.randn(5, 2, 4)
    spec = derive_module_spec(model, x)
    with torch.no_grad():
        model.fc.weight[:, :3] = 0
        model.rnn.weight_hh_l0[:, :3] = 0
    with pytest.raises(IsscliError, match=r"^the model's own forward failed on the compacted model \(RuntimeError"):
        compact_module(model, x, spec=spec)


def test_a_spec_that_mislabels_a_receiver_is_caught_by_verification() -> None:
    torch.manual_seed(2)
    model = Head("lstm", 1, 6, False, "last", True)
    x = torch.randn(3, 4, 5)
    spec = derive_module_spec(model, x)
    spec.sets[0].slices = [dataclasses.replace(p, role="producer") if p.tensor == "fc.weight" else p
                           for p in spec.sets[0].slices]  # so only h_k's own recurrent column decides
    with torch.no_grad():
        model.rnn.weight_hh_l0[:, 2] = 0
    with pytest.raises(CompactionMismatch, match="differ from the input model's by"):
        compact_module(model, x, spec=spec)


def test_a_spec_that_forgets_a_receiver_is_named_as_the_cause() -> None:
    model = Head("gru", 1, 6, False, "last", True)
    x = torch.randn(3, 4, 5)
    spec = derive_module_spec(model, x)
    spec.sets[0].slices = [p for p in spec.sets[0].slices if p.tensor != "fc.weight"]
    with torch.no_grad():
        model.rnn.weight_hh_l0[:, 2] = 0
    with pytest.raises(IsscliError, match=r"forward failed on the compacted model .* — the spec given may miss"):
        compact_module(model, x, spec=spec)


def test_nothing_to_remove_keeps_the_users_modules() -> None:
    model = Head("gru", 2, 4, True, "mean", False)
    result = compact_module(model, torch.randn(4, 3, 5))
    assert type(result.model.rnn) is nn.GRU and result.parameters_after == result.parameters_before
    assert result.max_difference == 0.0


class ConvHead(nn.Module):
    """Units read by a 1-D convolution over time, then max-pooled: the receiver is the kernel's input channel."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 10, batch_first=True)
        self.conv = nn.Conv1d(10, 6, kernel_size=3)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(self.conv(out.transpose(1, 2)).max(dim=2).values)


class Packed(nn.Module):
    """A classifier that packs its padded batch and reads each sequence's own last state."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 9, 2, bidirectional=True)
        self.fc = nn.Linear(18, 3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)
        return self.fc(torch.cat((h[-2], h[-1]), 1))


@pytest.mark.parametrize("build", [ConvHead, Packed])
def test_convolution_receivers_and_packed_sequences(build: type[nn.Module]) -> None:
    torch.manual_seed(4)
    model = build()
    example = ((torch.randn(3, 7, 4),) if build is ConvHead else (torch.randn(7, 3, 4), torch.tensor([7, 4, 2])))
    spec = derive_module_spec(model, example)
    zero_groups(model, spec, [torch.arange(iss.components) % 2 == 1 for iss in spec.sets])
    result = compact_module(model, example, spec=spec)
    assert result.max_difference <= 1e-6
    if build is ConvHead:
        assert ("conv.weight", 1, 0) in receivers(spec)[0]
        assert result.model.conv.in_channels == result.model.conv.weight.shape[1] == 5
    else:
        assert result.units == {"rnn.l0": 5, "rnn.l0_reverse": 5, "rnn.l1": 5, "rnn.l1_reverse": 5}
        assert result.model.fc.in_features == 10


def test_load_compacted_reads_a_tie_under_either_name_and_dense_sized_zero_states() -> None:
    torch.manual_seed(5)
    model = TiedLM()
    example = (torch.randint(0, 30, (6, 3)), (torch.zeros(2, 3, 10), torch.zeros(2, 3, 10)))
    spec = derive_module_spec(model, example)
    zero_groups(model, spec, [torch.arange(10) < 4, torch.arange(10) >= 7])
    small = compact_module(model, example).model
    expected, _ = small(*example)
    stored = {("decoder.weight" if name == "encoder.weight" else name): tensor  # as safetensors' save_model keeps it
              for name, tensor in small.state_dict().items() if name != "decoder.weight"}
    again = isscli.load_compacted(TiedLM(), stored)
    assert again.decoder.weight is again.encoder.weight and again.encoder.embedding_dim == 7
    logits, _ = again(*example)  # the dense-sized zeros of the example: every unit starts at zero
    assert torch.equal(logits, expected)
    with pytest.raises(ValueError, match=r"has the original sizes \[10, 10\], but which units this module kept is not"):
        again(example[0], (torch.ones(2, 3, 10), torch.zeros(2, 3, 10)))
    with pytest.raises(IsscliError, match="the checkpoint has no tensor 'rnn.weight_hh_l1' of the model"):
        isscli.load_compacted(TiedLM(), {k: v for k, v in stored.items() if k != "rnn.weight_hh_l1"})


def test_a_reloaded_module_copies_with_its_original_sizes() -> None:
    """``from_module`` of a compacted module loaded back (original sizes known, kept units not) keeps reading zeros."""
    lstm = isscli.nn.LSTM(3, [2, 1])
    lstm.set_kept_units(None, [[4], [4]])
    copied = isscli.nn.LSTM.from_module(lstm)
    x = torch.randn(6, 5, 3)
    assert copied.original_sizes == [[4], [4]]
    assert torch.equal(copied(x, (torch.zeros(2, 5, 4), torch.zeros(2, 5, 4)))[0], lstm(x)[0])


def test_the_api_groups_takes_a_module_with_an_example_or_a_state_dict() -> None:
    model = Head("lstm", 2, 6, False, "last", True)
    x = torch.randn(3, 4, 5)
    from_module = isscli.groups(isscli.GroupsRequest(checkpoint=model, example_input=x)).spec
    from_names = isscli.groups(isscli.GroupsRequest(checkpoint=model.state_dict())).spec
    assert receivers(from_module) == receivers(from_names) == [
        {("rnn.weight_hh_l0", 1, 0), ("rnn.weight_ih_l1", 1, 0)}, {("rnn.weight_hh_l1", 1, 0), ("fc.weight", 1, 0)}]
    with pytest.raises(IsscliError, match="^deriving the groups of a live module needs `example_input`"):
        isscli.groups(isscli.GroupsRequest(checkpoint=model))
    with pytest.raises(IsscliError, match="^`example_input` is only for a live nn.Module"):
        isscli.groups(isscli.GroupsRequest(checkpoint=model.state_dict(), example_input=x))


def test_a_compacted_model_compacts_again_and_still_reads_the_dense_sized_state() -> None:
    torch.manual_seed(6)
    model = TiedLM()
    dense_zeros = (torch.zeros(2, 3, 10), torch.zeros(2, 3, 10))
    example = (torch.randint(0, 30, (6, 3)), dense_zeros)
    zero_groups(model, derive_module_spec(model, example), [torch.arange(10) % 3 == 0, torch.arange(10) < 2])
    first = compact_module(model, example).model  # keeps units 1,2,4,5,7,8 and 2…9
    second_spec = derive_module_spec(first, example)
    assert [s.components for s in second_spec.sets] == [6, 8]
    zero_groups(first, second_spec, [torch.arange(6) < 2, torch.arange(8) >= 5])
    result = compact_module(first, example)
    assert result.model.rnn.hidden_sizes == [[4], [5]]
    assert result.model.rnn._kept_l0.tolist() == [4, 5, 7, 8] and result.model.rnn._kept_l1.tolist() == [2, 3, 4, 5, 6]
    nonzero = (torch.randn(2, 3, 10), torch.randn(2, 3, 10))  # a dense-sized state is read at the kept units
    assert torch.allclose(result.model(example[0], nonzero)[0], first(example[0], nonzero)[0], atol=1e-5)


def test_names_do_not_read_a_head_as_wide_as_the_input_as_a_tied_embedding() -> None:
    model = Head("lstm", 1, 5, False, "last", True)  # input size 5 = hidden size 5: fc.weight fits both widths
    spec = isscli.groups(isscli.GroupsRequest(checkpoint=model.state_dict())).spec
    assert receivers(spec) == [{("rnn.weight_hh_l0", 1, 0), ("fc.weight", 1, 0)}]


class DotAttention(nn.Module):
    """Luong-style attention: the decoder's state scores the encoder's outputs by a dot product over units."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.GRU(4, 8)
        self.decoder = nn.GRU(4, 8)
        self.out = nn.Linear(16, 3)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        memory, h = self.encoder(source)
        queries, _ = self.decoder(target, h)
        weights = torch.softmax(torch.einsum("tbh,sbh->tbs", queries, memory), dim=-1)
        context = torch.einsum("tbs,sbh->tbh", weights, memory)
        return self.out(torch.cat((queries, context), -1))


def test_attention_scores_over_units_are_refused_not_guessed() -> None:
    torch.manual_seed(7)
    with pytest.raises(IsscliError, match=r"^the units of encoder.l0, decoder.l0 reach the model's outputs by a path"):
        derive_module_spec(DotAttention(), (torch.randn(6, 2, 4), torch.randn(5, 2, 4)))
