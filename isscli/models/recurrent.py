"""A stack of recurrent layers whose layers, and directions, may each have their own size.

``nn.LSTM`` forces one hidden size on every layer and both directions; compaction produces
models where each layer-direction keeps a different number of units. This module holds the
same parameters under the same names as ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``weight_ih_l0``,
``weight_hh_l0_reverse``, …), so checkpoints stay interchangeable, and runs each
layer-direction through the same fused kernels that ``nn.LSTM`` calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Union

import torch
from torch import Tensor, nn

from isscli.models.config import GATES_PER_CELL  # noqa: F401 - the gate counts, importable from here too

#: ``kernel(input, state, weights, has_biases, num_layers, dropout, train, bidirectional, batch_first)`` →
#: ``(output, h)`` or ``(output, h, c)``; torch._VF carries no type information.
CELL_KERNELS: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "lstm": torch._VF.lstm,  # the kernels nn.LSTM/GRU/RNN call: fused on CPU and CUDA
    "gru": torch._VF.gru,
    "rnn_tanh": torch._VF.rnn_tanh,
    "rnn_relu": torch._VF.rnn_relu,
}

#: The state of one layer-direction: ``h`` (GRU/RNN) or ``(h, c)`` (LSTM), each ``[1, B, H]``.
LayerState = Union[Tensor, tuple[Tensor, Tensor]]


def direction_suffix(layer: int, direction: int) -> str:
    """PyTorch's parameter suffix: ``_l0``, ``_l0_reverse``."""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def reverse_padded(sequence: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence in time, keeping padding at the end (``[T, B, ...]``)."""
    if lengths is None:
        return sequence.flip(0)
    steps = torch.arange(sequence.shape[0], device=sequence.device).unsqueeze(1)
    lengths = lengths.to(sequence.device).unsqueeze(0)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.view(*index.shape, *([1] * (sequence.dim() - 2))).expand_as(sequence)
    return sequence.gather(0, index)


class RecurrentStack(nn.Module):
    """Stacked, optionally bidirectional LSTM/GRU/RNN with per-layer, per-direction sizes.

    ``hidden_sizes[l]`` lists the sizes of layer ``l``'s directions: one entry for a
    unidirectional layer, two (forward, reverse) for a bidirectional one. Inputs and outputs
    are time-major, ``[T, B, features]``, as in ``nn.LSTM``'s default.
    """

    def __init__(self, cell: str, input_size: int, hidden_sizes: list[list[int]], dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in GATES_PER_CELL:
            raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(GATES_PER_CELL)}")
        self.cell = cell
        self.input_size = input_size
        self.hidden_sizes = [list(sizes) for sizes in hidden_sizes]
        self.dropout = nn.Dropout(dropout)
        gates = GATES_PER_CELL[cell]
        layer_input = input_size
        for layer, sizes in enumerate(self.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                suffix = direction_suffix(layer, direction)
                self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(gates * hidden, layer_input)))
                self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(gates * hidden, hidden)))
                self.register_parameter(f"bias_ih{suffix}", nn.Parameter(torch.empty(gates * hidden)))
                self.register_parameter(f"bias_hh{suffix}", nn.Parameter(torch.empty(gates * hidden)))
            layer_input = sum(sizes)
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return sum(self.hidden_sizes[-1])

    def reset_parameters(self, init_range: float | None = None) -> None:
        """Uniform init: ``±init_range`` (Zaremba et al.) or PyTorch's ``±1/sqrt(H)``."""
        for layer, sizes in enumerate(self.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                bound = init_range if init_range is not None else 1.0 / math.sqrt(max(hidden, 1))
                for weight in self.layer_weights(layer, direction):
                    nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, layer: int, direction: int) -> list[Tensor]:
        suffix = direction_suffix(layer, direction)
        return [getattr(self, f"{kind}{suffix}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def initial_state(self, batch_size: int) -> list[list[LayerState]]:
        """All-zero state, one entry per layer and direction."""
        reference = self.layer_weights(0, 0)[1]
        state: list[list[LayerState]] = []
        for sizes in self.hidden_sizes:
            layer_state: list[LayerState] = []
            for hidden in sizes:
                zeros = reference.new_zeros(1, batch_size, hidden)
                layer_state.append((zeros, zeros.clone()) if self.cell == "lstm" else zeros)
            state.append(layer_state)
        return state

    def forward(
        self,
        inputs: Tensor,
        state: list[list[LayerState]] | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, list[list[LayerState]]]:
        """Run every layer; ``lengths`` (for padded batches) keeps reverse directions exact.

        Returns the last layer's outputs ``[T, B, output_size]`` and the final state. With
        padding, the final state of a forward direction is taken after the padded steps, so
        pass ``lengths`` only where the state is not carried on (classification).
        """
        if state is None:
            state = self.initial_state(inputs.shape[1])
        kernel = CELL_KERNELS[self.cell]
        layer_input = inputs
        new_state: list[list[LayerState]] = []
        for layer, sizes in enumerate(self.hidden_sizes):
            if layer > 0:
                layer_input = self.dropout(layer_input)
            outputs, layer_state = [], []
            for direction in range(len(sizes)):
                sequence = reverse_padded(layer_input, lengths) if direction == 1 else layer_input
                result = kernel(
                    sequence,
                    state[layer][direction],
                    self.layer_weights(layer, direction),
                    True,
                    1,
                    0.0,
                    self.training,
                    False,
                    False,
                )
                output = reverse_padded(result[0], lengths) if direction == 1 else result[0]
                outputs.append(output)
                layer_state.append((result[1], result[2]) if self.cell == "lstm" else result[1])
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            new_state.append(layer_state)
        return layer_input, new_state

