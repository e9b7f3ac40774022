"""Derive the ISS group spec of a checkpoint from its recurrent layers and their receivers.

Component k of layer l, direction d owns (paper, Sec. 3.1, Fig. 3):
  * producers: the k-th row of every gate block of ``weight_ih``/``weight_hh`` (and, outside
    the group vector, of the biases);
  * receivers: column k of its own ``weight_hh``; column k (offset by the forward size for a
    reverse direction) of both directions' ``weight_ih`` in layer l+1, or, after the last
    layer, of the output layer; with tied weights the output matrix is the embedding, so the
    first layer's input column k goes too.
Numbered modules (``layers.0.``, ``layers.1.``: an ``nn.ModuleList`` of LSTMs) are read as one
chain: after a module's last layer come the next module's layer-0 ``weight_ih`` columns. Names
alone cannot prove that wiring, so the spec's comment says it was assumed.
For the paper's LM (embedding 1500, 2×1500 LSTM, 10k words) this gives group vectors of 24000
and 28000 weights.

A Recurrent Highway Network has one set: component k spans row k of the H and T blocks of
its input matrix and of every micro-layer's recurrent matrix (producers), and column k of
every recurrent matrix, of the tied embedding/output matrix and of the input matrix
(receivers). For width 830, depth 10 and 10k words that is the paper's 46520 weights.
"""

from __future__ import annotations

import torch

from isscli.io.errors import CheckpointError
from isscli.iss.spec.schema import GroupSpec, IssSet, TensorSlice
from isscli.models.layout import HIGHWAY_NAME, Layout, Stack, find_layout


def _set_name(stack: Stack, layer: int, direction: int) -> str:
    """``<module>.l<layer>[_reverse]``: the module's own prefix, so sets of a chain's modules stay apart."""
    return f"{stack.module}.l{layer}" + ("_reverse" if direction == 1 else "")


def _gate_rows(tensor: str, blocks: int, stride: int, penalize: bool = True) -> TensorSlice:
    """Row k of each of ``blocks`` gate blocks ``stride`` rows apart: what computes unit k."""
    return TensorSlice(tensor, dim=0, offset=0, blocks=blocks, block_stride=stride, role="producer",
                       penalize=penalize)


def _producers(tensors: dict[str, torch.Tensor], stack: Stack, layer: int, direction: int) -> list[TensorSlice]:
    """Row k of every gate block of the layer-direction's matrices; its biases too, outside the group vector."""
    hidden = stack.hidden_sizes[layer][direction]
    slices = [_gate_rows(stack.rnn_name(kind, layer, direction), stack.gates, hidden)
              for kind in ("weight_ih", "weight_hh")]
    for kind in ("bias_ih", "bias_hh"):
        if stack.rnn_name(kind, layer, direction) in tensors:
            slices.append(_gate_rows(stack.rnn_name(kind, layer, direction), stack.gates, hidden, penalize=False))
    return slices


def _first_layer_inputs(stack: Stack, offset: int) -> list[TensorSlice]:
    """Column ``offset + k`` of layer 0's ``weight_ih`` in every direction: where a layer's output is read."""
    directions = range(len(stack.hidden_sizes[0]))
    return [TensorSlice(stack.rnn_name("weight_ih", 0, direction), dim=1, offset=offset) for direction in directions]


def _outward_receivers(layout: Layout, position: int, layer: int, offset: int) -> list[TensorSlice]:
    """Who reads the layer's output besides itself: the next layer, the next module of a chain, or the output
    layer (and, tied, the embedding and the first layer's inputs, since the output matrix is the embedding)."""
    stack = layout.stacks[position]
    if layer + 1 < len(stack.hidden_sizes):
        return [
            TensorSlice(stack.rnn_name("weight_ih", layer + 1, successor), dim=1, offset=offset)
            for successor in range(len(stack.hidden_sizes[layer + 1]))
        ]
    if position + 1 < len(layout.stacks):
        return _first_layer_inputs(layout.stacks[position + 1], offset)
    if layout.output is None:
        return []
    slices = [TensorSlice(layout.output, dim=1, offset=offset)]
    if layout.tied:
        if layout.embedding and layout.embedding != layout.output:
            slices.append(TensorSlice(layout.embedding, dim=1, offset=offset))
        slices += _first_layer_inputs(layout.stacks[0], offset)
    return slices


def _comment(layout: Layout) -> str:
    """Say what was derived; for a chain, say the assumption names alone cannot confirm and how to avoid it."""
    if not layout.chained:
        return "derived by isscli from the checkpoint's recurrent layers and their receivers"
    links = ", ".join(
        f"{after.module} assumed to read {before.module}'s output"
        for before, after in zip(layout.stacks, layout.stacks[1:])
    )
    return (f"derived by isscli from tensor names: {links} (numbered modules, widths match); "
            "pass --model to trace the forward instead")


def derive_spec(tensors: dict[str, torch.Tensor], layout: Layout | None = None) -> GroupSpec:
    """One ISS set per layer-direction of the checkpoint's recurrent stack, or of each numbered module of a chain
    (``layers.0.``, ``layers.1.``, …, see :func:`find_layout`)."""
    if layout is None and any(HIGHWAY_NAME.match(name) for name in tensors):
        return derive_highway_spec(tensors)
    layout = layout or find_layout(tensors, chains=True)
    sets = []
    for position, stack in enumerate(layout.stacks):
        for layer, sizes in enumerate(stack.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                offset = 0 if direction == 0 else sizes[0]
                slices = _producers(tensors, stack, layer, direction)
                slices.append(TensorSlice(stack.rnn_name("weight_hh", layer, direction), dim=1, offset=0))
                slices += _outward_receivers(layout, position, layer, offset)
                sets.append(IssSet(_set_name(stack, layer, direction), hidden, slices))
    return GroupSpec(sets, _comment(layout))


def derive_highway_spec(tensors: dict[str, torch.Tensor]) -> GroupSpec:
    """The single ISS set of a Recurrent Highway Network (see the module docstring)."""
    matches = [m for m in map(HIGHWAY_NAME.match, tensors) if m]
    prefix = matches[0]["prefix"]
    depth = 1 + max(int(m["layer"]) for m in matches)
    width = int(tensors[f"{prefix}weight_hh_d0"].shape[1])
    slices = [_gate_rows(f"{prefix}weight_ih", 2, width)]  # the H and T blocks
    for layer in range(depth):
        slices.append(_gate_rows(f"{prefix}weight_hh_d{layer}", 2, width))
        if f"{prefix}bias_hh_d{layer}" in tensors:
            slices.append(_gate_rows(f"{prefix}bias_hh_d{layer}", 2, width, penalize=False))
    slices += [TensorSlice(f"{prefix}weight_hh_d{layer}", dim=1) for layer in range(depth)]
    outputs = [n for n, t in tensors.items() if not n.startswith(prefix) and t.dim() == 2 and t.shape[1] == width]
    if not outputs:
        raise CheckpointError("the RHN's embedding/output matrix was not found", "write a spec by hand and pass --spec")
    slices += [TensorSlice(name, dim=1) for name in sorted(outputs)]
    slices.append(TensorSlice(f"{prefix}weight_ih", dim=1))
    name = prefix.rstrip(".") or "rhn"
    return GroupSpec([IssSet(name, width, slices)], "derived by isscli: the width of a Recurrent Highway Network")
