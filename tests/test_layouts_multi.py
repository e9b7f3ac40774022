"""Several recurrent modules in one plain state_dict: numbered per-layer stacks read as one chain, the rest refused.

Each case builds the model in plain PyTorch, derives the groups from ``model.state_dict()`` alone, checks the sets
exactly, then checks them by their effect: one unit's group zeroed and compacted away, the smaller tensors loaded
into a model of the smaller sizes built by hand compute what the pruned dense model computes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import isscli
from isscli.io.errors import CheckpointError
from isscli.iss.spec import GroupSpec, check_spec, derive_spec
from isscli.iss.surgery import compact, prune
from isscli.models.layout import find_layout
from isscli.models.registry import canonical_tensors, config_after_surgery, config_from_layout

Receivers = list[tuple[str, int]]


class Chain(nn.Module):
    """``embedding → layers[0] → layers[1] → … → head``: the per-layer stacks isscli recommends for loading back."""

    def __init__(self, embedding: nn.Module | None, layers: list[nn.Module], head: nn.Linear,
                 last_step: bool = False) -> None:
        super().__init__()
        self.embedding = embedding
        self.layers = nn.ModuleList(layers)
        self.head = head
        self.last_step = last_step

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.embedding(inputs) if self.embedding is not None else inputs
        for layer in self.layers:
            hidden = layer(hidden)[0]
        return self.head(hidden[:, -1] if self.last_step else hidden)


class Nested(nn.Module):
    """The chain one level down: ``encoder.layers.N.``, a forecaster's head on the last step."""

    def __init__(self, layers: list[nn.Module], head: nn.Linear) -> None:
        super().__init__()
        self.encoder = Chain(None, layers, nn.Identity())  # type: ignore[arg-type]
        self.head = head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs)[:, -1])


class TiedChain(nn.Module):
    """A GRU language model of two numbered modules whose decoder shares the embedding's matrix."""

    def __init__(self, vocab: int, width: int, middle: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList([nn.GRU(width, middle, batch_first=True), nn.GRU(middle, width, batch_first=True)])
        self.decoder = nn.Linear(width, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(tokens)
        for layer in self.layers:
            hidden = layer(hidden)[0]
        return self.decoder(hidden)


class EncoderDecoder(nn.Module):
    """Two unrelated recurrent modules: the encoder's final state seeds the decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.rnn = nn.LSTM(4, 6, batch_first=True)
        self.decoder = nn.Module()
        self.decoder.rnn = nn.LSTM(3, 6, batch_first=True)
        self.out = nn.Linear(6, 3)


def plain(model: nn.Module) -> dict[str, torch.Tensor]:
    """What ``torch.save(model.state_dict())`` writes, as a dict of tensors."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def summary(spec: GroupSpec) -> list[tuple[str, int, Receivers]]:
    """Each set's name, size and receiver columns (tensor, offset): what decides which weights go with a unit."""
    for iss in spec.sets:
        assert all(piece.dim == 1 for piece in iss.receivers), iss.name
    return [(iss.name, iss.components, [(p.tensor, p.offset) for p in iss.receivers]) for iss in spec.sets]


def producers(spec: GroupSpec, name: str) -> list[tuple[str, int, int, bool]]:
    """One set's producer slices: (tensor, blocks, block_stride, penalized)."""
    iss = next(iss for iss in spec.sets if iss.name == name)
    return [(p.tensor, p.blocks, p.stride(iss.components), p.penalize) for p in iss.slices if p.role == "producer"]


def gate_rows(prefix: str, layer: str, gates: int, hidden: int) -> list[tuple[str, int, int, bool]]:
    """The producers of a layer-direction with biases: its gate rows in both matrices and both biases."""
    return [(f"{prefix}{kind}_{layer}", gates, hidden, kind.startswith("weight"))
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def prune_and_compact(tensors: dict[str, torch.Tensor], spec: GroupSpec,
                      doomed: dict[str, list[int]]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Zero the named units' groups (as group Lasso leaves them), then remove them: (pruned dense, compacted)."""
    check_spec(spec, tensors)
    chosen = [torch.isin(torch.arange(iss.components), torch.tensor(doomed.get(iss.name, []), dtype=torch.long))
              for iss in spec.sets]
    pruned = prune(tensors, spec, 0.0, chosen=chosen).tensors
    result = compact(pruned, spec)
    removed = {change.name: change.components - change.after for change in result.sets}
    assert removed == {iss.name: len(doomed.get(iss.name, [])) for iss in spec.sets}
    return pruned, result.tensors


def assert_same_outputs(dense: nn.Module, pruned: dict[str, torch.Tensor], small: nn.Module,
                        compacted: dict[str, torch.Tensor], inputs: torch.Tensor) -> None:
    """The compacted tensors fit the smaller model exactly (strict load) and compute the pruned model's outputs."""
    dense.load_state_dict(pruned)
    small.load_state_dict(compacted)
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(inputs), dense.eval()(inputs), atol=1e-5, rtol=0)


def tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 7), generator=torch.Generator().manual_seed(1))


def features(width: int) -> torch.Tensor:
    return torch.randn(3, 7, width, generator=torch.Generator().manual_seed(1))


def test_module_list_of_two_lstms_is_read_as_one_chain() -> None:
    torch.manual_seed(0)
    dense = Chain(nn.Embedding(13, 5), [nn.LSTM(5, 5, batch_first=True),
                                        nn.LSTM(5, 4, bidirectional=True, batch_first=True)], nn.Linear(8, 3))
    tensors = plain(dense)
    spec = derive_spec(tensors)
    assert summary(spec) == [
        ("layers.0.l0", 5, [("layers.0.weight_hh_l0", 0), ("layers.1.weight_ih_l0", 0),
                            ("layers.1.weight_ih_l0_reverse", 0)]),
        ("layers.1.l0", 4, [("layers.1.weight_hh_l0", 0), ("head.weight", 0)]),
        ("layers.1.l0_reverse", 4, [("layers.1.weight_hh_l0_reverse", 0), ("head.weight", 4)]),
    ]
    assert producers(spec, "layers.0.l0") == gate_rows("layers.0.", "l0", 4, 5)
    assert producers(spec, "layers.1.l0_reverse") == gate_rows("layers.1.", "l0_reverse", 4, 4)
    assert spec.comment == ("derived by isscli from tensor names: layers.1 assumed to read layers.0's output "
                            "(numbered modules, widths match); pass --model to trace the forward instead")

    pruned, compacted = prune_and_compact(tensors, spec, {"layers.0.l0": [2], "layers.1.l0_reverse": [1]})
    small = Chain(nn.Embedding(13, 5), [nn.LSTM(5, 4, batch_first=True),
                                        isscli.nn.LSTM(4, [(4, 3)], bidirectional=True, batch_first=True)],
                  nn.Linear(7, 3))
    assert_same_outputs(dense, pruned, small, compacted, tokens(13))


def test_nested_numbered_modules_of_different_cells_chain_into_a_forecaster_head() -> None:
    torch.manual_seed(0)
    dense = Nested([nn.GRU(4, 6, num_layers=2, batch_first=True), nn.LSTM(6, 5, batch_first=True)], nn.Linear(5, 4))
    tensors = plain(dense)
    spec = derive_spec(tensors)
    assert summary(spec) == [
        ("encoder.layers.0.l0", 6, [("encoder.layers.0.weight_hh_l0", 0), ("encoder.layers.0.weight_ih_l1", 0)]),
        ("encoder.layers.0.l1", 6, [("encoder.layers.0.weight_hh_l1", 0), ("encoder.layers.1.weight_ih_l0", 0)]),
        ("encoder.layers.1.l0", 5, [("encoder.layers.1.weight_hh_l0", 0), ("head.weight", 0)]),
    ]
    assert producers(spec, "encoder.layers.0.l1") == gate_rows("encoder.layers.0.", "l1", 3, 6)
    assert producers(spec, "encoder.layers.1.l0") == gate_rows("encoder.layers.1.", "l0", 4, 5)
    assert "encoder.layers.1 assumed to read encoder.layers.0's output" in spec.comment

    pruned, compacted = prune_and_compact(tensors, spec, {"encoder.layers.0.l1": [0, 4], "encoder.layers.1.l0": [3]})
    small = Nested([isscli.nn.GRU(4, [6, 4], batch_first=True), nn.LSTM(4, 4, batch_first=True)], nn.Linear(4, 4))
    assert_same_outputs(dense, pruned, small, compacted, features(4))


def test_module_list_of_grus_with_a_tied_embedding() -> None:
    torch.manual_seed(0)
    dense = TiedChain(vocab=11, width=6, middle=5)
    tensors = plain(dense)
    spec = derive_spec(tensors)
    tied_receivers = [("decoder.weight", 0), ("encoder.weight", 0), ("layers.0.weight_ih_l0", 0)]
    assert summary(spec) == [
        ("layers.0.l0", 5, [("layers.0.weight_hh_l0", 0), ("layers.1.weight_ih_l0", 0)]),
        ("layers.1.l0", 6, [("layers.1.weight_hh_l0", 0), *tied_receivers]),
    ]
    assert producers(spec, "layers.1.l0") == gate_rows("layers.1.", "l0", 3, 6)

    pruned, compacted = prune_and_compact(tensors, spec, {"layers.0.l0": [1], "layers.1.l0": [2]})
    assert compacted["encoder.weight"].shape == compacted["decoder.weight"].shape == (11, 5)
    small = TiedChain(vocab=11, width=5, middle=4)
    assert_same_outputs(dense, pruned, small, compacted, tokens(11))


def test_chain_is_refused_where_isscli_would_build_its_own_model() -> None:
    torch.manual_seed(0)
    tensors = plain(TiedChain(vocab=11, width=6, middle=5))
    with pytest.raises(CheckpointError, match="layers.0, layers.1 are not one of isscli's model families") as error:
        find_layout(tensors)
    assert "--model file.py:Class" in str(error.value) and "\n" not in str(error.value)
    chain = find_layout(tensors, chains=True)
    assert chain.chained and (chain.input_size, chain.output_size, chain.tied) == (6, 6, True)
    for build in (lambda: config_from_layout(chain, tensors), lambda: canonical_tensors(tensors, chain, "lm")):
        with pytest.raises(CheckpointError, match="not one of isscli's model families"):
            build()
    config = {"family": "lm", "hidden_sizes": [[5], [6]]}
    assert config_after_surgery(config, tensors) == config


def test_single_module_layout_keeps_its_attributes() -> None:
    torch.manual_seed(0)
    model = Chain(nn.Embedding(9, 4), [nn.LSTM(4, 3, num_layers=2, bidirectional=True)], nn.Linear(6, 9))
    layout = find_layout(plain(model))
    assert (layout.rnn_prefix, layout.hidden_sizes, layout.gates, layout.cell) == ("layers.0.", [[3, 3]] * 2, 4, "lstm")
    assert (layout.input_size, layout.output_size, layout.embedding, layout.output) == (4, 6, "embedding.weight",
                                                                                        "head.weight")
    assert layout.rnn_name("weight_ih", 1, 1) == "layers.0.weight_ih_l1_reverse" and not layout.chained
    assert derive_spec(plain(model)).comment == "derived by isscli from the checkpoint's recurrent layers and their " \
                                                "receivers"


@pytest.mark.parametrize("layers, message", [
    ([nn.LSTM(4, 6), nn.LSTM(5, 3)], "layers.1 reads 5 features but layers.0 returns 6, so tensor names cannot tell "
                                     "how the modules layers.0, layers.1 connect"),
    ([nn.LSTM(4, 6), nn.Linear(6, 6), nn.LSTM(6, 3)],
     "the recurrent modules layers.0, layers.2 are numbered with gaps"),
])
def test_numbered_modules_that_may_not_chain_are_refused(layers: list[nn.Module], message: str) -> None:
    tensors = plain(Chain(None, layers, nn.Linear(3, 2)))
    with pytest.raises(CheckpointError, match=message) as error:
        derive_spec(tensors)
    assert "pass --model file.py:Class" in error.value.hint and "--spec" in error.value.hint  # type: ignore[operator]


def test_encoder_and_decoder_are_refused_with_what_to_pass() -> None:
    with pytest.raises(CheckpointError) as error:
        derive_spec(plain(EncoderDecoder()))
    assert error.value.message == "several recurrent modules (encoder.rnn, decoder.rnn) whose connections tensor " \
                                  "names cannot tell"
    assert error.value.hint == "pass --model file.py:Class so isscli traces the forward (it finds each module's " \
                               "receivers), or write a spec and pass --spec"


class Tagger(nn.Module):
    """isscli's drop-in LSTM, a size per layer and direction, between an embedding and a per-step head."""

    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.rnn = isscli.nn.LSTM(8, sizes, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(sum(sizes[-1]), 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.embed(tokens))[0])


class Forecaster(nn.Module):
    """isscli's drop-in LSTM on raw features, a head on the last step predicting the next features."""

    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.rnn = isscli.nn.LSTM(8, sizes, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(sum(sizes[-1]), 8)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(series)[0][:, -1])


@pytest.mark.parametrize("family, head, inputs", [(Tagger, "out.weight", lambda: tokens(11)),
                                                  (Forecaster, "fc.weight", lambda: features(8))])
def test_dropin_ragged_bidirectional_model_derives_prunes_and_prunes_again(
        family: Callable[[list[tuple[int, int]]], nn.Module], head: str, inputs: Callable[[], torch.Tensor]) -> None:
    torch.manual_seed(0)
    dense = family([(6, 4), (5, 5)])
    tensors = plain(dense)
    spec = derive_spec(tensors)
    assert summary(spec) == [
        ("rnn.l0", 6, [("rnn.weight_hh_l0", 0), ("rnn.weight_ih_l1", 0), ("rnn.weight_ih_l1_reverse", 0)]),
        ("rnn.l0_reverse", 4, [("rnn.weight_hh_l0_reverse", 0), ("rnn.weight_ih_l1", 6),
                               ("rnn.weight_ih_l1_reverse", 6)]),
        ("rnn.l1", 5, [("rnn.weight_hh_l1", 0), (head, 0)]),
        ("rnn.l1_reverse", 5, [("rnn.weight_hh_l1_reverse", 0), (head, 5)]),
    ]
    assert producers(spec, "rnn.l0_reverse") == gate_rows("rnn.", "l0_reverse", 4, 4)

    pruned, compacted = prune_and_compact(tensors, spec, {"rnn.l0": [5], "rnn.l0_reverse": [0], "rnn.l1": [1, 2]})
    smaller = family([(5, 3), (3, 5)])
    assert_same_outputs(dense, pruned, smaller, compacted, inputs())

    again = derive_spec(compacted)  # the compacted model's own state_dict: pruned again as it stands
    assert summary(again) == [
        ("rnn.l0", 5, [("rnn.weight_hh_l0", 0), ("rnn.weight_ih_l1", 0), ("rnn.weight_ih_l1_reverse", 0)]),
        ("rnn.l0_reverse", 3, [("rnn.weight_hh_l0_reverse", 0), ("rnn.weight_ih_l1", 5),
                               ("rnn.weight_ih_l1_reverse", 5)]),
        ("rnn.l1", 3, [("rnn.weight_hh_l1", 0), (head, 0)]),
        ("rnn.l1_reverse", 5, [("rnn.weight_hh_l1_reverse", 0), (head, 3)]),
    ]
    pruned, compacted = prune_and_compact(compacted, again, {"rnn.l0_reverse": [2], "rnn.l1_reverse": [0, 4]})
    smallest = family([(5, 2), (3, 3)])
    assert_same_outputs(smaller, pruned, smallest, compacted, inputs())
