"""Recurrent Highway Network language model (Zilly et al. 2017, "variational RHN + WT").

Width W, recurrence depth L, coupled carry gate (C = 1 − T), embedding size = W and the
output layer tied to the embedding. Per time step, micro-layer l computes

    H = tanh(R_H,l s + b_H,l [+ W_H x on l = 0]),  T = σ(R_T,l s + b_T,l [+ W_T x on l = 0]),
    s ← H·T + s·(1 − T),

and the last micro-layer's state is both the output and the next step's incoming state.
Parameters keep the H and T blocks stacked like nn.LSTM's gates: ``rhn.weight_ih``
``[2W, W]``, ``rhn.weight_hh_d<l>`` ``[2W, W]``, ``rhn.bias_hh_d<l>`` ``[2W]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isscli.models.config import ModelConfig

TRANSFORM_GATE_BIAS = -2.0  # T starts mostly closed, so early training carries the state


class HighwayStack(nn.Module):
    """The RHN cell unrolled over time; its state is one ``[B, W]`` tensor."""

    def __init__(self, width: int, depth: int, init_range: float | None = None) -> None:
        super().__init__()
        self.width = width
        self.depth = depth
        self.weight_ih = nn.Parameter(torch.empty(2 * width, width))
        for layer in range(depth):
            self.register_parameter(f"weight_hh_d{layer}", nn.Parameter(torch.empty(2 * width, width)))
            self.register_parameter(f"bias_hh_d{layer}", nn.Parameter(torch.zeros(2 * width)))
        bound = init_range if init_range is not None else width**-0.5
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.startswith("weight"):
                    parameter.uniform_(-bound, bound)
                else:
                    parameter[width:] = TRANSFORM_GATE_BIAS

    def forward(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``inputs [T, B, W]`` → outputs ``[T, B, W]`` and the final state ``[B, W]``."""
        if state is None:
            state = inputs.new_zeros(inputs.shape[1], self.width)
        projected = torch.nn.functional.linear(inputs, self.weight_ih)  # all steps at once
        outputs = []
        for step in range(inputs.shape[0]):
            for layer in range(self.depth):
                pre = torch.nn.functional.linear(
                    state, getattr(self, f"weight_hh_d{layer}"), getattr(self, f"bias_hh_d{layer}")
                )
                if layer == 0:
                    pre = pre + projected[step]
                transform, gate = pre.split(self.width, dim=1)
                gate = torch.sigmoid(gate)
                state = torch.tanh(transform) * gate + state * (1 - gate)
            outputs.append(state)
        return torch.stack(outputs), state


class RecurrentHighwayLM(nn.Module):
    """Embedding (width W) → RHN → decoder tied to the embedding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_sizes[0][0]
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.vocab_size, width)
        self.rhn = HighwayStack(width, int(config.depth or 1), config.init_range)
        self.decoder = nn.Linear(width, config.vocab_size)
        self.decoder.weight = self.encoder.weight
        if config.init_range is not None:
            nn.init.uniform_(self.encoder.weight, -config.init_range, config.init_range)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, state = self.rhn(self.drop(self.encoder(tokens)), state)
        return self.decoder(self.drop(output)), state
