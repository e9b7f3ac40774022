"""The ONNX graph of an isscli LM or classifier, node by node, from its weights.

One native ONNX ``LSTM``/``GRU``/``RNN`` node per layer-direction, each with its own hidden size;
PyTorch's gate blocks reordered to ONNX's (LSTM i,f,g,o → i,o,f,c; GRU r,z,n → z,r,h with
``linear_before_reset=1``, which is PyTorch's GRU); a reverse direction is a ``direction="reverse"``
node that, given ``sequence_lens``, reverses each sequence within its own length, as
:func:`isscli.models.recurrent.reverse_padded` does. :func:`isscli.runtime.export.onnx.to_onnx`
assembles the model from these pieces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np
import torch
from torch import Tensor

from isscli.models.classifier import SequenceClassifier
from isscli.models.config import GATES_PER_CELL
from isscli.models.language_model import LanguageModel
from isscli.models.recurrent import RecurrentStack, direction_suffix
from isscli.runtime.export.runtime import require, state_names

if TYPE_CHECKING:
    import onnx

OPERATOR = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
#: PyTorch's gate blocks in ONNX's order: LSTM i,f,g,o → i,o,f,c; GRU r,z,n → z,r,h.
GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
#: A node attribute's value, as ``onnx.helper.make_node`` takes it.
Attribute = Union[int, str, list[int], list[str]]
CELL_ATTRIBUTES: dict[str, dict[str, Attribute]] = {
    "lstm": {},
    "gru": {"linear_before_reset": 1},
    "rnn_tanh": {"activations": ["Tanh"]},
    "rnn_relu": {"activations": ["Relu"]},
}


#: A graph's inputs and outputs.
Signature = tuple[list["onnx.ValueInfoProto"], list["onnx.ValueInfoProto"]]


class GraphBuilder:
    """Nodes and initializers of one graph; each intermediate value gets a fresh name."""

    def __init__(self, opset: int) -> None:
        self.onnx = require("onnx")
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.count = 0

    def constant(self, name: str, value: Tensor | np.ndarray) -> str:
        """An initializer; one name holds one value (small constants are shared by name)."""
        if name not in self.initializers:
            array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
            self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def integers(self, *values: int) -> str:
        """A 1-D int64 constant (axes, shapes); ``scalar`` is the 0-D one."""
        return self.constant("int64_" + "_".join(map(str, values)), np.array(values, dtype=np.int64))

    def scalar(self, value: int) -> str:
        return self.constant(f"int64_scalar_{value}", np.array(value, dtype=np.int64))

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix.lower()}_{self.count}"

    def add(self, op: str, inputs: list[str], outputs: list[str], **attributes: Attribute) -> list[str]:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, **attributes))
        return outputs

    def one(self, op: str, inputs: list[str], **attributes: Attribute) -> str:
        """A node with one output, freshly named."""
        return self.add(op, inputs, [self.fresh(op)], **attributes)[0]

    def reduce(self, op: str, value: str) -> str:
        """Reduce over time (axis 0); ReduceMax takes its axes as an input from opset 18 on, ReduceSum from 13."""
        if op == "ReduceSum" or self.opset >= 18:
            return self.one(op, [value, self.integers(0)], keepdims=0)
        return self.one(op, [value], axes=[0], keepdims=0)


def direction_weights(rnn: RecurrentStack, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor]:
    """ONNX's ``W [1, G·H, in]``, ``R [1, G·H, H]`` and ``B [1, 2·G·H]`` of one layer-direction."""
    order = GATE_ORDER[rnn.cell]
    gates = GATES_PER_CELL[rnn.cell]

    def reorder(tensor: Tensor) -> Tensor:
        return tensor.detach().reshape(gates, -1, *tensor.shape[1:])[order].reshape(tensor.shape)

    weight_ih, weight_hh, bias_ih, bias_hh = (reorder(t) for t in rnn.layer_weights(layer, direction))
    return weight_ih.unsqueeze(0), weight_hh.unsqueeze(0), torch.cat([bias_ih, bias_hh]).unsqueeze(0)


def recurrent_layers(
    graph: GraphBuilder, rnn: RecurrentStack, inputs: str, sequence_lens: str, streaming: bool
) -> tuple[str, list[str]]:
    """One node per layer-direction; the last layer's outputs ``[T, B, ΣH]`` and its directions' final ``h``.

    ``streaming`` (LMs) makes each initial state a graph input and each final state a graph
    output (:func:`isscli.runtime.export.runtime.state_names`); otherwise states start at zero.
    """
    kinds = ["h", "c"] if rnn.cell == "lstm" else ["h"]
    for layer, sizes in enumerate(rnn.hidden_sizes):
        outputs: list[str] = []
        finals: list[str] = []
        for direction, hidden in enumerate(sizes):
            suffix = direction_suffix(layer, direction)
            weights = [graph.constant(f"{kind}{suffix}", tensor)
                       for kind, tensor in zip("WRB", direction_weights(rnn, layer, direction))]
            initial = [f"{kind}{suffix}" for kind in kinds] if streaming else []
            final = [f"{kind}_out{suffix}" if streaming else graph.fresh(f"{kind}_final") for kind in kinds]
            sequence, last = graph.add(
                OPERATOR[rnn.cell], [inputs, *weights, sequence_lens, *initial], [graph.fresh("Y"), *final],
                hidden_size=hidden, direction="reverse" if direction == 1 else "forward", **CELL_ATTRIBUTES[rnn.cell],
            )[:2]
            outputs.append(graph.one("Squeeze", [sequence, graph.integers(1)]))  # Y is [T, directions=1, B, H]
            finals.append(last)
        inputs = outputs[0] if len(outputs) == 1 else graph.one("Concat", outputs, axis=2)
    return inputs, finals


def valid_steps(graph: GraphBuilder) -> str:
    """``[T, B, 1]``: whether step t is within sequence b's length."""
    steps = graph.one("Gather", [graph.one("Shape", ["tokens"]), graph.scalar(0)], axis=0)
    time = graph.one("Range", [graph.scalar(0), steps, graph.scalar(1)])
    earlier = graph.one("Less", [graph.one("Unsqueeze", [time, graph.integers(1)]),
                                 graph.one("Unsqueeze", ["lengths", graph.integers(0)])])
    return graph.one("Unsqueeze", [earlier, graph.integers(2)])


def pool(graph: GraphBuilder, outputs: str, finals: list[str], pooling: str) -> str:
    """:class:`~isscli.models.classifier.SequenceClassifier`'s pooling over the valid steps, ``[B, ΣH]``.

    ``last`` needs no gathering: with ``sequence_lens``, a forward node's final ``h`` is its
    output at step length-1 and a reverse node's is its output at step 0.
    """
    if pooling == "last":
        last = [graph.one("Squeeze", [final, graph.integers(0)]) for final in finals]
        return last[0] if len(last) == 1 else graph.one("Concat", last, axis=1)
    valid = valid_steps(graph)
    if pooling == "max":
        minus_infinity = graph.constant("minus_infinity", np.array(-np.inf, dtype=np.float32))
        return graph.reduce("ReduceMax", graph.one("Where", [valid, outputs, minus_infinity]))
    float32 = graph.onnx.TensorProto.FLOAT
    total = graph.reduce("ReduceSum", graph.one("Mul", [outputs, graph.one("Cast", [valid], to=float32)]))
    count = graph.one("Cast", [graph.one("Max", ["lengths", graph.scalar(1)])], to=float32)  # clamp(min=1)
    return graph.one("Div", [total, graph.one("Unsqueeze", [count, graph.integers(1)])])


def classifier_graph(graph: GraphBuilder, model: SequenceClassifier, embedded: str) -> Signature:
    """Recurrent layers over the true lengths, pooling, then the linear classifier; the graph's inputs and outputs."""
    helper, types = graph.onnx.helper, graph.onnx.TensorProto
    sequence_lens = graph.one("Cast", ["lengths"], to=types.INT32)
    hidden, finals = recurrent_layers(graph, model.rnn, embedded, sequence_lens, streaming=False)
    head = model.classifier
    weights = [graph.constant("classifier.weight", head.weight), graph.constant("classifier.bias", head.bias)]
    graph.add("Gemm", [pool(graph, hidden, finals, model.config.pooling), *weights], ["logits"], transB=1)
    inputs = [helper.make_tensor_value_info("tokens", types.INT64, ["T", "B"]),
              helper.make_tensor_value_info("lengths", types.INT64, ["B"])]
    return inputs, [helper.make_tensor_value_info("logits", types.FLOAT, ["B", head.out_features])]


def language_model_graph(graph: GraphBuilder, model: LanguageModel, embedded: str) -> Signature:
    """Recurrent layers with the state in and out, then the decoder; the graph's inputs and outputs."""
    helper, types = graph.onnx.helper, graph.onnx.TensorProto
    hidden, _ = recurrent_layers(graph, model.rnn, embedded, "", streaming=True)
    decoder = model.decoder  # a tied decoder reads the embedding's initializer: the file holds it once
    tied = decoder.weight is model.encoder.weight
    weight = "encoder.weight" if tied else graph.constant("decoder.weight", decoder.weight)
    flat = graph.one("Flatten", [hidden], axis=2)  # [T·B, ΣH]: Gemm is 2-D
    scores = graph.one("Gemm", [flat, weight, graph.constant("decoder.bias", decoder.bias)], transB=1)
    shape = graph.one("Concat", [graph.one("Shape", ["tokens"]), graph.integers(decoder.out_features)], axis=0)
    graph.add("Reshape", [scores, shape], ["logits"])
    states = state_names(model.config)
    inputs = [helper.make_tensor_value_info("tokens", types.INT64, ["T", "B"])]
    inputs += [helper.make_tensor_value_info(name, types.FLOAT, [1, "B", size]) for name, _, size in states]
    outputs = [helper.make_tensor_value_info("logits", types.FLOAT, ["T", "B", decoder.out_features])]
    outputs += [helper.make_tensor_value_info(name, types.FLOAT, [1, "B", size]) for _, name, size in states]
    return inputs, outputs
