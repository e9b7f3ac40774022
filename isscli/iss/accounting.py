"""Parameters, bytes and multiply-adds of a model, counted from its config alone.

The paper compares models by weight count and by multiply-adds (Wen et al., 2018, Table 1:
66.0M vs 21.8M weights, a 7.48× multiply-add reduction). Counting from the config, rather than
from tensors, lets ``bench --shapes`` report models it never loads and lets tests pin the
paper's numbers exactly.

Conventions, as in the paper:

* parameters include every bias (PyTorch's recurrent layers have two per gate row), the
  embedding and the output layer; a tied decoder shares the embedding and counts once;
* multiply-adds count the matrix products only — biases and gate nonlinearities are O(H) and
  left out — for *one* sequence (batch element) and *one* time step. A layer-direction with
  ``G`` gates, ``H`` units and input width ``in`` costs ``G·H·(in + H)``; an LM's decoder
  ``H_last·V`` at every step; a classifier's head runs once per sequence, so it is not in the
  per-step count. A recurrent highway network of width ``W`` and depth ``L`` costs
  ``2W·W`` for its input plus ``2W·W`` per micro-layer, and its decoder is tied.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from isscli.models.config import GATES_PER_CELL, ModelConfig
from isscli.models.registry import is_tied

HIGHWAY_BLOCKS = 2  # an RHN micro-layer stacks the H and T blocks, like an LSTM's gates


def layer_directions(config: ModelConfig) -> Iterator[tuple[int, int]]:
    """``(input width, hidden size)`` of every layer-direction, bottom layer first."""
    width = config.embedding_size
    for sizes in config.hidden_sizes:
        for hidden in sizes:
            yield width, hidden
        width = sum(sizes)


def output_width(config: ModelConfig) -> int:
    """Rows of the output layer: the vocabulary (language models) or the classes (classifier)."""
    return int(config.num_classes or 2) if config.family == "classifier" else config.vocab_size


def recurrent_parameters(config: ModelConfig) -> int:
    if config.family == "rhn":
        width, depth = config.hidden_sizes[0][0], int(config.depth or 1)
        return HIGHWAY_BLOCKS * width * width + depth * HIGHWAY_BLOCKS * width * (width + 1)
    gates = GATES_PER_CELL[config.cell]
    return sum(gates * hidden * (width + hidden) + 2 * gates * hidden for width, hidden in layer_directions(config))


def parameter_count(config: ModelConfig) -> int:
    """Every parameter of the model, shared (tied) tensors once."""
    embedding = config.vocab_size * config.embedding_size
    output = (0 if is_tied(config) else config.output_size * output_width(config)) + output_width(config)
    return embedding + recurrent_parameters(config) + output


def parameter_bytes(config: ModelConfig, dtype: torch.dtype = torch.float32) -> int:
    """Memory held by the parameters when stored densely in ``dtype``."""
    return parameter_count(config) * torch.empty((), dtype=dtype).element_size()


def recurrent_multiply_adds(config: ModelConfig) -> int:
    """Multiply-adds of all recurrent layers for one sequence and one time step."""
    if config.family == "rhn":
        width, depth = config.hidden_sizes[0][0], int(config.depth or 1)
        return (1 + depth) * HIGHWAY_BLOCKS * width * width
    gates = GATES_PER_CELL[config.cell]
    return sum(gates * hidden * (width + hidden) for width, hidden in layer_directions(config))


def output_multiply_adds(config: ModelConfig) -> int:
    """Multiply-adds of one application of the output layer (per step for an LM, per sequence otherwise)."""
    return config.output_size * output_width(config)


def multiply_adds_per_step(config: ModelConfig) -> int:
    """The paper's measure: recurrent layers plus, for a language model, the decoder."""
    decoder = 0 if config.family == "classifier" else output_multiply_adds(config)
    return recurrent_multiply_adds(config) + decoder

