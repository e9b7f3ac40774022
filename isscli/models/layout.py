"""Find the model inside a plain ``state_dict``: recurrent stack, embedding, output layer.

Checkpoints written by other scripts carry no config. Their tensor names and shapes still
say almost everything: ``<prefix>weight_hh_l<n>[_reverse]`` gives each layer-direction's
hidden size and the gate count (rows / columns: 4 LSTM, 3 GRU, 1 RNN), the embedding is the
matrix whose width is the first layer's input size, and the output layer the matrix whose
width is the last layer's output size. Where that is ambiguous, the error says which flag
settles it.

Several recurrent modules are one model only when their names say how they connect: numbered
modules ``layers.0.``, ``layers.1.``, … (an ``nn.ModuleList``), each as wide at its input as the
one before at its output, are read as a chain for deriving groups. Any other mix (an encoder
and a decoder) is refused with a pointer to ``--model``, which traces the forward instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from isscli.io.errors import CheckpointError

RECURRENT_NAME = re.compile(r"^(?P<prefix>.*)weight_hh_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
HIGHWAY_NAME = re.compile(r"^(?P<prefix>.*)weight_hh_d(?P<layer>\d+)$")
RECURRENT_PARAMETER = re.compile(r"^(weight|bias)_(ih|hh)_l\d+(_reverse)?$")
EMBEDDING_HINTS = ("encoder", "embed", "emb")
OUTPUT_HINTS = ("decoder", "classifier", "fc", "out", "linear", "proj", "softmax")
CELL_BY_GATES = {4: "lstm", 3: "gru", 1: "rnn_tanh"}
#: A module of an ``nn.ModuleList``: ``<base><index>.``, e.g. ``encoder.layers.0.``.
NUMBERED_PREFIX = re.compile(r"^(?P<base>.*?)(?P<index>\d+)\.$")
CHAIN_HINT = ("pass --model file.py:Class so isscli traces the forward (it finds each module's receivers), "
              "or write a spec and pass --spec")


@dataclass
class Stack:
    """One recurrent module's parameters (``<prefix>weight_hh_l<n>[_reverse]``): its layers' sizes and input width."""

    prefix: str
    gates: int
    hidden_sizes: list[list[int]]
    input_size: int

    @property
    def output_size(self) -> int:
        """Width of what the module returns: its last layer's directions side by side."""
        return sum(self.hidden_sizes[-1])

    @property
    def module(self) -> str:
        """The module's name as ``named_modules`` spells it (``layers.0``); a bare state_dict's stack is ``rnn``."""
        return self.prefix.rstrip(".") or "rnn"

    def rnn_name(self, kind: str, layer: int, direction: int) -> str:
        return f"{self.prefix}{kind}_l{layer}{'_reverse' if direction == 1 else ''}"


@dataclass
class Layout:
    """Names and sizes of the parts of a recurrent model inside a flat tensor dict.

    ``stacks`` is one module, or (only from ``find_layout(..., chains=True)``) numbered modules read as one chain,
    each feeding the next. The single-module attributes (``rnn_prefix``, ``hidden_sizes``, ``gates``, ``cell``,
    ``rnn_name``) describe isscli's own model families; on a chain they raise a :class:`CheckpointError`, so code
    that would build one of those models from the layout refuses instead of reading one module as the whole.
    """

    stacks: list[Stack]
    embedding: str | None
    output: str | None
    output_bias: str | None
    tied: bool

    @property
    def chained(self) -> bool:
        """Whether the recurrent layers span several numbered modules (``layers.0.``, ``layers.1.``, …)."""
        return len(self.stacks) > 1

    @property
    def stack(self) -> Stack:
        """The one recurrent module; a chain is not one of isscli's model families, so it is refused here."""
        if self.chained:
            raise _not_a_family(self.stacks)
        return self.stacks[0]

    @property
    def rnn_prefix(self) -> str:
        return self.stack.prefix

    @property
    def gates(self) -> int:
        return self.stack.gates

    @property
    def hidden_sizes(self) -> list[list[int]]:
        return self.stack.hidden_sizes

    @property
    def input_size(self) -> int:
        """Width of the first module's input: what the embedding (or the raw features) feeds."""
        return self.stacks[0].input_size

    @property
    def output_size(self) -> int:
        """Width of the last module's output: what the output layer reads."""
        return self.stacks[-1].output_size

    def rnn_name(self, kind: str, layer: int, direction: int) -> str:
        return self.stack.rnn_name(kind, layer, direction)

    @property
    def cell(self) -> str:
        return CELL_BY_GATES.get(self.gates, "lstm")


def _hinted(name: str, hints: tuple[str, ...]) -> bool:
    return any(hint in name.lower() for hint in hints)


def _pick(candidates: list[str], hints: tuple[str, ...]) -> list[str]:
    preferred = [name for name in candidates if _hinted(name, hints)]
    return preferred or candidates


def _recurrent_weights(tensors: dict[str, torch.Tensor]) -> dict[str, dict[tuple[int, int], torch.Tensor]]:
    """Every recurrent module's ``weight_hh`` tensors by (layer, direction), keyed by the module's name prefix."""
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
    return stacks


def _module_list(prefixes: list[str]) -> str:
    """``layers.0, layers.1``: module names for a message (a top-level module's empty prefix reads ``rnn``)."""
    return ", ".join(prefix.rstrip(".") or "rnn" for prefix in prefixes)


def _numbered(prefixes: list[str]) -> list[str] | None:
    """The prefixes in chain order when all are ``<P><i>.`` for one ``<P>`` (an ``nn.ModuleList``), else None.

    Numbering gaps (``layers.0.``, ``layers.2.``: something not recurrent sits between) are refused here: the
    names no longer say that one module reads the other.
    """
    matches = {prefix: NUMBERED_PREFIX.match(prefix) for prefix in prefixes}
    if not all(matches.values()) or len({match["base"] for match in matches.values() if match}) != 1:
        return None
    index = {prefix: int(match["index"]) for prefix, match in matches.items() if match}
    order = sorted(prefixes, key=index.__getitem__)
    if [index[prefix] for prefix in order] != list(range(len(order))):
        raise CheckpointError(
            f"the recurrent modules {_module_list(order)} are numbered with gaps, so tensor names cannot tell "
            "which feeds which",
            CHAIN_HINT,
        )
    return order


def _not_a_family(stacks: list[Stack]) -> CheckpointError:
    """Numbered modules, which isscli's own LM and classifier never are: building one of them would misread them."""
    names = _module_list([stack.prefix for stack in stacks])
    return CheckpointError(
        f"the recurrent modules {names} are not one of isscli's model families",
        "pass --model file.py:Class so isscli loads the checkpoint into your own class",
    )


def _unrelated(prefixes: list[str]) -> CheckpointError:
    """Several recurrent modules that are not one numbered list: an encoder and a decoder, say (in file order)."""
    return CheckpointError(
        f"several recurrent modules ({_module_list(prefixes)}) whose connections tensor names cannot tell",
        CHAIN_HINT,
    )


def _stack(tensors: dict[str, torch.Tensor], prefix: str, weights: dict[tuple[int, int], torch.Tensor]) -> Stack:
    """One module's :class:`Stack`, its input width read off ``weight_ih_l0``."""
    hidden_sizes, gates = _hidden_sizes(prefix, weights)
    first_input = tensors.get(f"{prefix}weight_ih_l0")
    if first_input is None:
        raise CheckpointError(f"{prefix}weight_ih_l0 is missing", "check the checkpoint")
    _check_matrix(f"{prefix}weight_ih_l0", first_input)
    return Stack(prefix, gates, hidden_sizes, int(first_input.shape[1]))


def _chain(stacks: list[Stack]) -> None:
    """Numbered modules are one chain only if each reads exactly what the one before returns."""
    names = _module_list([stack.prefix for stack in stacks])
    for before, after in zip(stacks, stacks[1:]):
        if after.input_size != before.output_size:
            raise CheckpointError(
                f"{after.module} reads {after.input_size} features but {before.module} returns {before.output_size}, "
                f"so tensor names cannot tell how the modules {names} connect",
                CHAIN_HINT,
            )


def _stacks(tensors: dict[str, torch.Tensor], chains: bool) -> list[Stack]:
    """The recurrent module, or with ``chains`` the numbered modules read as one chain (see :func:`find_layout`)."""
    weights = _recurrent_weights(tensors)
    if len(weights) == 1:
        prefix, only = next(iter(weights.items()))
        return [_stack(tensors, prefix, only)]
    order = _numbered(list(weights))
    if order is None:
        raise _unrelated(list(weights))
    stacks = [_stack(tensors, prefix, weights[prefix]) for prefix in order]
    if not chains:
        raise _not_a_family(stacks)
    _chain(stacks)
    return stacks


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


def find_layout(tensors: dict[str, torch.Tensor], chains: bool = False) -> Layout:
    """Infer the :class:`Layout`; raise a one-line :class:`CheckpointError` where it cannot.

    With ``chains`` (deriving a group spec), numbered recurrent modules ``<P>0.``, ``<P>1.``, … (an
    ``nn.ModuleList`` of LSTMs, the per-layer stacks isscli recommends) are read as one chain when each module's
    input width equals the previous one's output width: names say nothing more, so the caller must state that
    assumption. Without it (building isscli's own model) only one recurrent module is accepted.
    """
    stacks = _stacks(tensors, chains)
    input_size, output_size = stacks[0].input_size, stacks[-1].output_size
    prefixes = tuple(stack.prefix for stack in stacks)
    others = {n: t for n, t in tensors.items() if not n.startswith(prefixes) and t.dim() == 2}
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
    bias = _output_bias(tensors, prefixes, output, tied)
    return Layout(stacks, embedding, output, bias, tied)


def _output_bias(tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...], output: str | None,
                 tied: bool) -> str | None:
    """``decoder.bias`` beside ``decoder.weight``; for a tied model stored once, the vector of vocabulary size."""
    if output is None:
        return None
    candidate = output[: -len("weight")] + "bias" if output.endswith("weight") else None
    if candidate in tensors and not tied:
        return candidate
    rows = tensors[output].shape[0]
    vectors = [n for n, t in tensors.items() if not n.startswith(prefixes) and t.dim() == 1 and t.shape[0] == rows]
    vectors = _pick(vectors, OUTPUT_HINTS)
    return vectors[0] if len(vectors) == 1 else None


def find_rhn_width(tensors: dict[str, torch.Tensor]) -> int | None:
    """The width of a Recurrent Highway Network (``…weight_hh_d0`` ``[2W, W]``), or None."""
    for name, tensor in tensors.items():
        match = HIGHWAY_NAME.match(name)
        if match and match["layer"] == "0" and tensor.dim() == 2:
            return int(tensor.shape[1])
    return None
