"""Run a compacted isscli language model with plain PyTorch: copy this file into your service.

Compaction leaves each layer with its own hidden size, which one multi-layer ``nn.LSTM``
cannot hold; a stack of single-layer ``nn.LSTM``/``nn.GRU``/``nn.RNN`` modules can, and runs
the same kernels, so the outputs are isscli's to the last bit. This file needs torch and
safetensors only, not isscli. It covers isscli's LMs (family ``lm``: unidirectional, cells
``lstm``, ``gru``, ``rnn_tanh``, ``rnn_relu``, tied or untied), for inference (no dropout);
not classifiers, bidirectional layers or RHNs.

Example::

    model = PlainLM.from_file("small.safetensors")  # the JSON config is in the header
    logits, state = model(tokens)  # tokens: int64 [T, B] → logits [T, B, V]
    logits, state = model(next_tokens, state)  # carry the state across chunks
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Union

import torch
from safetensors import safe_open
from torch import nn

RECURRENT = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}
#: isscli's ``rnn.weight_ih_l1`` is layer 1's own ``weight_ih_l0`` here.
RECURRENT_NAME = re.compile(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")
#: One layer's state: ``h`` (GRU/RNN) or ``(h, c)`` (LSTM), each ``[1, B, H]``.
LayerState = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
#: One entry per layer.
State = list[LayerState]


class PlainLM(nn.Module):
    """``nn.Embedding`` → one single-layer recurrent module per layer → ``nn.Linear`` (tied: the embedding)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        sizes = [layer[0] if isinstance(layer, list) else layer for layer in config["hidden_sizes"]]
        cell = config.get("cell", "lstm")
        options = {"nonlinearity": cell.removeprefix("rnn_")} if cell.startswith("rnn_") else {}
        self.encoder = nn.Embedding(config["vocab_size"], config["embedding_size"])
        inputs = [config["embedding_size"], *sizes[:-1]]
        self.layers = nn.ModuleList(RECURRENT[cell](size, hidden, **options) for size, hidden in zip(inputs, sizes))
        self.decoder = nn.Linear(sizes[-1], config["vocab_size"])
        if config.get("tie_weights"):
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``tokens [T, B]`` → logits ``[T, B, V]`` and the state to pass with the next chunk."""
        initial: list[LayerState | None] = [*state] if state else [None] * len(self.layers)
        output, new_state = self.encoder(tokens), []
        for layer, layer_state in zip(self.layers, initial):
            output, layer_state = layer(output, layer_state)
            new_state.append(layer_state)
        return self.decoder(output), new_state

    @classmethod
    def from_file(cls, path: str | Path) -> PlainLM:
        """Load an isscli LM checkpoint (its config is the header's ``isscli.config``), in eval mode."""
        with safe_open(str(path), framework="pt") as reader:
            config = json.loads((reader.metadata() or {}).get("isscli.config", "null"))
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
        layers = (config or {}).get("hidden_sizes", [])
        if not config or config.get("family") != "lm" or any(isinstance(s, list) and len(s) != 1 for s in layers):
            raise ValueError(f"{path} is not an isscli checkpoint of a unidirectional language model")
        model = cls(config)
        state = {}
        for name, tensor in tensors.items():
            match = RECURRENT_NAME.fullmatch(name)
            state[f"layers.{match[2]}.{match[1]}_l0" if match else name] = tensor
        if config.get("tie_weights"):
            state["decoder.weight"] = state["encoder.weight"]
        model.load_state_dict(state)
        return model.eval()
