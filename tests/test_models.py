"""The recurrent stack matches PyTorch's own modules, names and numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isscli.models import build_model
from isscli.models.recurrent import RecurrentStack, reverse_padded

TORCH_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stack_equals_torch_module_with_same_state_dict(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    reference = TORCH_MODULES[cell](7, 5, num_layers=2, bidirectional=bidirectional).eval()
    sizes = [[5, 5] if bidirectional else [5]] * 2
    stack = RecurrentStack(cell, 7, sizes).eval()
    stack.load_state_dict(reference.state_dict())  # strict: identical names and shapes
    inputs = torch.randn(9, 3, 7)
    with torch.no_grad():
        expected, _ = reference(inputs)
        actual, _ = stack(inputs)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_reverse_padded_keeps_padding_in_place() -> None:
    sequence = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 0.0], [4.0, 0.0]]).unsqueeze(2)
    reversed_ = reverse_padded(sequence, torch.tensor([4, 2]))
    assert reversed_[:, 0, 0].tolist() == [4.0, 3.0, 2.0, 1.0]
    assert reversed_[:, 1, 0].tolist() == [20.0, 10.0, 0.0, 0.0]


@pytest.mark.parametrize("pooling", ["max", "mean", "last"])
def test_classifier_ignores_padding(pooling: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        {
            "family": "classifier",
            "vocab_size": 30,
            "embedding_size": 6,
            "hidden_sizes": [[5, 4], [3, 6]],
            "num_classes": 3,
            "pooling": pooling,
        }
    ).eval()
    short = torch.tensor([[3], [7], [9]])
    padded = torch.tensor([[3, 1], [7, 2], [9, 3], [0, 4], [0, 5]])
    with torch.no_grad():
        alone = model(short, torch.tensor([3]))
        batched = model(padded, torch.tensor([3, 5]))
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-6)


def test_language_model_carries_state() -> None:
    torch.manual_seed(0)
    model = build_model(
        {"family": "lm", "vocab_size": 20, "embedding_size": 4, "hidden_sizes": [3, 4], "tie_weights": True}
    ).eval()
    tokens = torch.randint(0, 20, (10, 2))
    with torch.no_grad():
        whole, _ = model(tokens)
        first, state = model(tokens[:6])
        second, _ = model(tokens[6:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=1e-5, atol=1e-6)
    assert model.decoder.weight is model.encoder.weight
