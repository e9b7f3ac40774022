"""Find the model inside a plain ``state_dict``: recurrent stack, embedding, output layer.

Checkpoints written by other scripts carry no config. Their tensor names and shapes still
say almost everything: ``<prefix>weight_hh_l<n>[_reverse]`` gives each layer-direction's
hidden size and the gate count (rows / columns: 4 LSTM, 3 GRU, 1 RNN), the embedding is the
matrix whose width is the first layer's input size, and the output layer the matrix whose
width is the last layer's output size. Where that is ambiguous, the error says which flag
settles it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from isscli.errors import CheckpointError

RECURRENT_NAME = re.compile(r"^(?P<prefix>.*)weight_hh_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
HIGHWAY_NAME = re.compile(r"^(?P<prefix>.*)weight_hh_d(?P<layer>\d+)$")
RECURRENT_PARAMETER = re.compile(r"^(weight|bias)_(ih|hh)_l\d+(_reverse)?$")
EMBEDDING_HINTS = ("encoder", "embed", "emb")
OUTPUT_HINTS = ("decoder", "classifier", "fc", "out", "linear", "proj", "softmax")
CELL_BY_GATES = {4: "lstm", 3: "gru", 1: "rnn_tanh"}


@dataclass
class Layout:
    """Names and sizes of the parts of a recurrent model inside a flat tensor dict."""

    rnn_prefix: str
    gates: int
    hidden_sizes: list[list[int]]
    input_size: int
    embedding: str | None
    output: str | None
    output_bias: str | None
    tied: bool

    @property
    def output_size(self) -> int:
        return sum(self.hidden_sizes[-1])

    def rnn_name(self, kind: str, layer: int, direction: int) -> str:
        return f"{self.rnn_prefix}{kind}_l{layer}{'_reverse' if direction == 1 else ''}"

    @property
    def cell(self) -> str:
        return CELL_BY_GATES.get(self.gates, "lstm")


def _hinted(name: str, hints: tuple[str, ...]) -> bool:
    return any(hint in name.lower() for hint in hints)


def _pick(candidates: list[str], hints: tuple[str, ...]) -> list[str]:
    preferred = [name for name in candidates if _hinted(name, hints)]
    return preferred or candidates


def _recurrent_stack(tensors: dict[str, torch.Tensor]) -> tuple[str, dict[tuple[int, int], torch.Tensor]]:
    """The one recurrent stack's name prefix and its ``weight_hh`` tensors by (layer, direction)."""
    stacks: dict[str, dict[tuple[int, int], torch.Tensor]] = {}
    for name, tensor in tensors.items():
        match = RECURRENT_NAME.match(name)
        if match:
            _check_matrix(name, tensor)
            key = (int(match["layer"]), 1 if match["reverse"] else 0)
            stacks.setdefault(match["prefix"], {})[key] = tensor
    if not stacks:
        raise CheckpointError(
            "no recurrent layer found (no tensor named like 'weight_hh_l0')",
            "isscli works on LSTM/GRU/RNN checkpoints with PyTorch's parameter names",
        )
    if len(stacks) > 1:
        raise CheckpointError(
            f"several recurrent stacks found ({', '.join(repr(p) for p in sorted(stacks))})",
            "write a group spec by hand for models with several stacks and pass it with --spec",
        )
    return next(iter(stacks.items()))


def _check_matrix(name: str, tensor: torch.Tensor) -> None:
    """A recurrent weight is a floating-point matrix."""
    if tensor.dim() != 2 or not tensor.is_floating_point():
        raise CheckpointError(f"{name} is a {str(tensor.dtype).removeprefix('torch.')} tensor of shape "
                              f"{tuple(tensor.shape)}, not a weight matrix", "check the checkpoint")


def _hidden_sizes(prefix: str, weights: dict[tuple[int, int], torch.Tensor]) -> tuple[list[list[int]], int]:
    """Units per layer and direction, and the gate count (the same in every layer)."""
    hidden_sizes: list[list[int]] = []
    gates_seen = set()
    for layer in range(max(layer for layer, _ in weights) + 1):
        directions = [d for d in (0, 1) if (layer, d) in weights]
        if directions not in ([0], [0, 1]):
            raise CheckpointError(f"recurrent layer {layer} is missing in {prefix!r}", "check the checkpoint")
        sizes = []
        for direction in directions:
            rows, cols = weights[(layer, direction)].shape
            if cols == 0 or rows % cols:
                raise CheckpointError(
                    f"{prefix}weight_hh_l{layer} has shape {rows}×{cols}, not a multiple of its hidden size",
                    "check the checkpoint",
                )
            gates_seen.add(rows // cols)
            sizes.append(cols)
        hidden_sizes.append(sizes)
    if len(gates_seen) != 1 or next(iter(gates_seen)) not in CELL_BY_GATES:
        raise CheckpointError(f"inconsistent gate counts {sorted(gates_seen)} across layers", "check the checkpoint")
    return hidden_sizes, next(iter(gates_seen))


def find_layout(tensors: dict[str, torch.Tensor]) -> Layout:
    """Infer the :class:`Layout`; raise a one-line :class:`CheckpointError` where it cannot."""
    prefix, weights = _recurrent_stack(tensors)
    hidden_sizes, gates = _hidden_sizes(prefix, weights)
    first_input = tensors.get(f"{prefix}weight_ih_l0")
    if first_input is None:
        raise CheckpointError(f"{prefix}weight_ih_l0 is missing", "check the checkpoint")
    _check_matrix(f"{prefix}weight_ih_l0", first_input)
    input_size = first_input.shape[1]
    output_size = sum(hidden_sizes[-1])

    others = {n: t for n, t in tensors.items() if not n.startswith(prefix) and t.dim() == 2}
    embeddings = _pick([n for n, t in others.items() if t.shape[1] == input_size], EMBEDDING_HINTS)
    embedding = embeddings[0] if len(embeddings) == 1 else None
    if embedding is not None and input_size == output_size and not _hinted(embedding, EMBEDDING_HINTS):
        embedding = None  # a head as wide as the input (a forecaster's `fc`), not an embedding tied to it
    outputs = _pick([n for n, t in others.items() if t.shape[1] == output_size and n != embedding], OUTPUT_HINTS)
    if len(outputs) > 1:
        raise CheckpointError(
            f"cannot tell which of {', '.join(outputs)} is the output layer",
            "pass a group spec with --spec that names the receivers",
        )
    output = outputs[0] if outputs else None
    tied = False
    if output is None and embedding is not None and tensors[embedding].shape[1] == output_size:
        output, tied = embedding, True
    elif output is not None and embedding is not None and tensors[output].shape == tensors[embedding].shape:
        tied = bool(torch.equal(tensors[output], tensors[embedding]))
    bias = _output_bias(tensors, prefix, output, tied)
    return Layout(prefix, gates, hidden_sizes, input_size, embedding, output, bias, tied)


def _output_bias(tensors: dict[str, torch.Tensor], prefix: str, output: str | None, tied: bool) -> str | None:
    """``decoder.bias`` beside ``decoder.weight``; for a tied model stored once, the vector of vocabulary size."""
    if output is None:
        return None
    candidate = output[: -len("weight")] + "bias" if output.endswith("weight") else None
    if candidate in tensors and not tied:
        return candidate
    rows = tensors[output].shape[0]
    vectors = [n for n, t in tensors.items() if not n.startswith(prefix) and t.dim() == 1 and t.shape[0] == rows]
    vectors = _pick(vectors, OUTPUT_HINTS)
    return vectors[0] if len(vectors) == 1 else None


def find_rhn_width(tensors: dict[str, torch.Tensor]) -> int | None:
    """The width of a Recurrent Highway Network (``…weight_hh_d0`` ``[2W, W]``), or None."""
    for name, tensor in tensors.items():
        match = HIGHWAY_NAME.match(name)
        if match and match["layer"] == "0" and tensor.dim() == 2:
            return int(tensor.shape[1])
    return None
