"""Derive the ISS group spec of a checkpoint from its recurrent layers and their receivers.

Component k of layer l, direction d owns (paper, Sec. 3.1, Fig. 3):
  * producers: the k-th row of every gate block of ``weight_ih``/``weight_hh`` (and, outside
    the group vector, of the biases);
  * receivers: column k of its own ``weight_hh``; column k (offset by the forward size for a
    reverse direction) of both directions' ``weight_ih`` in layer l+1, or, after the last
    layer, of the output layer; with tied weights the output matrix is the embedding, so the
    first layer's input column k goes too.
For the paper's LM (embedding 1500, 2×1500 LSTM, 10k words) this gives group vectors of 24000
and 28000 weights.

A Recurrent Highway Network has one set: component k spans row k of the H and T blocks of
its input matrix and of every micro-layer's recurrent matrix (producers), and column k of
every recurrent matrix, of the tied embedding/output matrix and of the input matrix
(receivers). For width 830, depth 10 and 10k words that is the paper's 46520 weights.
"""

from __future__ import annotations

import torch

from isscli.errors import CheckpointError
from isscli.models.layout import HIGHWAY_NAME, Layout, find_layout
from isscli.spec.schema import GroupSpec, IssSet, TensorSlice


def _set_name(layout: Layout, layer: int, direction: int) -> str:
    prefix = layout.rnn_prefix.rstrip(".") or "rnn"
    return f"{prefix}.l{layer}" + ("_reverse" if direction == 1 else "")


def derive_spec(tensors: dict[str, torch.Tensor], layout: Layout | None = None) -> GroupSpec:
    """One ISS set per layer-direction of the checkpoint's recurrent stack."""
    if layout is None and any(HIGHWAY_NAME.match(name) for name in tensors):
        return derive_highway_spec(tensors)
    layout = layout or find_layout(tensors)
    sets = []
    last = len(layout.hidden_sizes) - 1
    for layer, sizes in enumerate(layout.hidden_sizes):
        for direction, hidden in enumerate(sizes):
            offset = 0 if direction == 0 else sizes[0]
            gate_rows = {"dim": 0, "offset": 0, "blocks": layout.gates, "block_stride": hidden, "role": "producer"}
            slices = [
                TensorSlice(layout.rnn_name("weight_ih", layer, direction), **gate_rows),
                TensorSlice(layout.rnn_name("weight_hh", layer, direction), **gate_rows),
            ]
            for kind in ("bias_ih", "bias_hh"):
                if layout.rnn_name(kind, layer, direction) in tensors:
                    slices.append(TensorSlice(layout.rnn_name(kind, layer, direction), penalize=False, **gate_rows))
            slices.append(TensorSlice(layout.rnn_name("weight_hh", layer, direction), dim=1, offset=0))
            if layer < last:
                slices += [
                    TensorSlice(layout.rnn_name("weight_ih", layer + 1, successor), dim=1, offset=offset)
                    for successor in range(len(layout.hidden_sizes[layer + 1]))
                ]
            elif layout.output is not None:
                slices.append(TensorSlice(layout.output, dim=1, offset=offset))
                if layout.tied:
                    if layout.embedding and layout.embedding != layout.output:
                        slices.append(TensorSlice(layout.embedding, dim=1, offset=offset))
                    slices += [
                        TensorSlice(layout.rnn_name("weight_ih", 0, first), dim=1, offset=offset)
                        for first in range(len(layout.hidden_sizes[0]))
                    ]
            sets.append(IssSet(_set_name(layout, layer, direction), hidden, slices))
    comment = "derived by isscli from the checkpoint's recurrent layers and their receivers"
    return GroupSpec(sets, comment)


def derive_highway_spec(tensors: dict[str, torch.Tensor]) -> GroupSpec:
    """The single ISS set of a Recurrent Highway Network (see the module docstring)."""
    matches = [m for m in map(HIGHWAY_NAME.match, tensors) if m]
    prefix = matches[0]["prefix"]
    depth = 1 + max(int(m["layer"]) for m in matches)
    width = int(tensors[f"{prefix}weight_hh_d0"].shape[1])
    rows = {"dim": 0, "offset": 0, "blocks": 2, "block_stride": width, "role": "producer"}
    slices = [TensorSlice(f"{prefix}weight_ih", **rows)]
    for layer in range(depth):
        slices.append(TensorSlice(f"{prefix}weight_hh_d{layer}", **rows))
        if f"{prefix}bias_hh_d{layer}" in tensors:
            slices.append(TensorSlice(f"{prefix}bias_hh_d{layer}", penalize=False, **rows))
    slices += [TensorSlice(f"{prefix}weight_hh_d{layer}", dim=1) for layer in range(depth)]
    outputs = [n for n, t in tensors.items() if not n.startswith(prefix) and t.dim() == 2 and t.shape[1] == width]
    if not outputs:
        raise CheckpointError("the RHN's embedding/output matrix was not found", "write a spec by hand and pass --spec")
    slices += [TensorSlice(name, dim=1) for name in sorted(outputs)]
    slices.append(TensorSlice(f"{prefix}weight_ih", dim=1))
    name = prefix.rstrip(".") or "rhn"
    return GroupSpec([IssSet(name, width, slices)], "derived by isscli: the width of a Recurrent Highway Network")
