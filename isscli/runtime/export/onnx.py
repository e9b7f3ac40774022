"""Export a (compacted) LM or classifier to ONNX, check it in ONNX Runtime, and write it.

Compaction leaves each layer, and each direction of a bidirectional layer, with its own
hidden size, which ``nn.LSTM`` (and so ``torch.onnx.export`` of one) cannot express. The
graph is built here from the weights instead: one native ONNX ``LSTM``/``GRU``/``RNN`` node per
layer-direction, each with its own size. PyTorch's gate blocks are reordered to ONNX's
(LSTM i,f,g,o → i,o,f,c; GRU r,z,n → z,r,h with ``linear_before_reset=1``, which is PyTorch's
GRU), and a reverse direction is a ``direction="reverse"`` node that, given ``sequence_lens``,
reverses each sequence within its own length, as :func:`isscli.models.recurrent.reverse_padded`
does. The graph's inputs and outputs are described in :mod:`isscli.runtime.export.runtime`; isscli's
config, version and vocabulary go into the model's ``metadata_props``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

import isscli
from isscli.io.atomic import atomic_write, check_output_path
from isscli.io.checkpoint import CONFIG_KEY, VOCABULARY_KEY, Checkpoint
from isscli.io.errors import IsscliError
from isscli.io.provenance import plain
from isscli.models import load_model
from isscli.models.config import ModelConfig
from isscli.models.recurrent import GATES_PER_CELL, RecurrentStack, direction_suffix
from isscli.runtime.export.runtime import initial_feeds, onnx_session, require, state_names
from isscli.runtime.quantize import INT8_TOLERANCE, check_precision, quantize_onnx

if TYPE_CHECKING:
    import onnx

#: Allowed output difference per unit of the largest |output|. Looser than compaction's 1e-5:
#: ONNX Runtime's LSTM/GRU kernels use their own GEMMs and vectorised approximations of
#: sigmoid and tanh, whose last-digit differences add up over the time steps.
TOLERANCE = 1e-4
OPERATOR = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
#: PyTorch's gate blocks in ONNX's order: LSTM i,f,g,o → i,o,f,c; GRU r,z,n → z,r,h.
GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
CELL_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "lstm": {},
    "gru": {"linear_before_reset": 1},
    "rnn_tanh": {"activations": ["Tanh"]},
    "rnn_relu": {"activations": ["Relu"]},
}
#: Squeeze, Unsqueeze and ReduceSum take their axes as an input from opset 13 on.
MIN_OPSET = 13
VERSION_KEY = "isscli.version"


class ExportMismatch(IsscliError):
    """The exported graph does not compute what the model computes: nothing is written."""

    exit_code = 1


@dataclass
class ExportResult:
    """The written file, the graph's input and output names, and how closely ONNX Runtime matched PyTorch."""

    output: Path
    inputs: list[str]
    outputs: list[str]
    max_output_difference: float
    output_scale: float
    tolerance: float
    hidden_sizes: list[list[int]]
    assumption: str | None = None  # a checkpoint without a config exported as one of isscli's families: said
    model: dict[str, Any] | None = None  # the user's own class that was exported (``model``, ``model_args``)
    checked_on: str | None = None  # what the graph and the module ran on
    precision: str = "fp32"  # int8: the graph's weights quantized (ONNX Runtime dynamic quantization)
    file_bytes: int | None = None  # the file written
    fp32_file_bytes: int | None = None  # int8: the fp32 graph's size, for comparison
    fp32_max_output_difference: float | None = None  # int8: how far the fp32 graph was from PyTorch

    def to_json(self) -> dict[str, Any]:
        return plain(self)


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

    def add(self, op: str, inputs: list[str], outputs: list[str], **attributes: Any) -> list[str]:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, **attributes))
        return outputs

    def one(self, op: str, inputs: list[str], **attributes: Any) -> str:
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


def check_exportable(model: nn.Module, opset: int) -> ModelConfig:
    """The model's config, if the model is an LM or classifier that ``opset`` can express."""
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig) and config.family == "rhn":
        raise IsscliError("RHN models cannot be exported to ONNX, which has no recurrent highway operator",
                          "export an LSTM, GRU or RNN model (family `lm` or `classifier`), or run the RHN in PyTorch")
    if not isinstance(config, ModelConfig) or not isinstance(getattr(model, "rnn", None), RecurrentStack):
        raise IsscliError("only isscli's LM and classifier models can be exported to ONNX",
                          "build the model with `build_model` or `load_model`")
    latest = require("onnx").defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise IsscliError(f"`opset` {opset} is outside {MIN_OPSET}–{latest}", "give e.g. `opset`=17")
    return config


def classifier_graph(graph: GraphBuilder, model: nn.Module, embedded: str) -> tuple[list[Any], list[Any]]:
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


def language_model_graph(graph: GraphBuilder, model: nn.Module, embedded: str) -> tuple[list[Any], list[Any]]:
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


def to_onnx(model: nn.Module, opset: int = 17) -> onnx.ModelProto:
    """The model (eval mode: no dropout) as an ONNX graph with dynamic ``T`` and ``B`` axes.

    Args:
        model: an isscli LM or classifier, with any per-layer, per-direction hidden sizes.
        opset: the ONNX opset to target (13 or later).

    Returns:
        The graph. Inputs: ``tokens`` ``[T, B]`` int64 and, for an LM, the state (``h_l0``,
        ``c_l0``, … ``[1, B, H]``), for a classifier ``lengths`` ``[B]`` int64. Outputs:
        ``logits`` (``[T, B, V]`` or ``[B, C]``) and, for an LM, the final state (``h_out_l0``, …).
        A classifier's ``lengths`` must be ≥ 1: ONNX's ``sequence_lens`` gives an empty row a
        zero state where PyTorch runs the padding.

    Example:
        >>> proto = to_onnx(load_model(isscli.load("small.safetensors")))
        >>> [i.name for i in proto.graph.input]
        ['tokens', 'h_l0', 'c_l0', 'h_l1', 'c_l1']
    """
    onnx = require("onnx")
    config = check_exportable(model, opset)
    graph = GraphBuilder(opset)
    embedded = graph.one("Gather", [graph.constant("encoder.weight", model.encoder.weight), "tokens"])
    build = classifier_graph if config.family == "classifier" else language_model_graph
    inputs, outputs = build(graph, model, embedded)
    body = onnx.helper.make_graph(graph.nodes, f"isscli_{config.family}", inputs, outputs,
                                  list(graph.initializers.values()))
    proto = onnx.helper.make_model_gen_version(body, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                               producer_name="isscli", producer_version=isscli.__version__)
    onnx.helper.set_model_props(proto, {CONFIG_KEY: json.dumps(config.to_dict(), sort_keys=True),
                                        VERSION_KEY: isscli.__version__})
    return proto


def flat_state(state: list[list[Any]]) -> list[Tensor]:
    """A PyTorch state in :func:`~isscli.runtime.export.runtime.state_names` order."""
    entries = [entry for layer in state for entry in layer]
    return [tensor for entry in entries for tensor in (entry if isinstance(entry, tuple) else (entry,))]


def compare(pairs: list[tuple[Tensor, np.ndarray]]) -> tuple[float, float]:
    """Largest |PyTorch − ONNX Runtime| (inf where either is NaN or inf) and largest finite |PyTorch output|."""
    difference, scale = 0.0, 0.0
    for expected, actual in pairs:
        if tuple(actual.shape) != tuple(expected.shape):
            raise ExportMismatch(f"ONNX Runtime returned shape {tuple(actual.shape)} where PyTorch returns "
                                 f"{tuple(expected.shape)}", "report this as an isscli bug, with the checkpoint")
        ran = torch.from_numpy(actual)
        finite = torch.isfinite(expected)
        scale = max(scale, float(expected.abs().where(finite, 0.0).max()))
        if not (finite.all() and torch.isfinite(ran).all()):
            difference = math.inf
        else:
            difference = max(difference, float((expected - ran).abs().max()))
    return difference, scale


@torch.no_grad()
def verify_onnx(model: nn.Module, proto: onnx.ModelProto, steps: int = 12, batch: int = 4, seed: int = 0
                ) -> tuple[float, float]:
    """Run ``proto`` in ONNX Runtime and ``model`` (put in eval mode) on the same random inputs.

    LMs run two consecutive chunks, the state carried through the graph's state inputs and
    outputs; classifiers a padded batch with one full-length row, as
    :func:`isscli.iss.equivalence.output_difference` does.

    Returns:
        The largest absolute difference over all outputs (final states included; inf if any
        output is NaN or inf, so such a model never passes) and the largest finite |output|
        of the PyTorch model, to judge the difference against.

    Example:
        >>> difference, scale = verify_onnx(model, to_onnx(model))
        >>> difference <= 1e-4 * max(1.0, scale)
        True
    """
    config: ModelConfig = model.config
    session = onnx_session(proto)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    if config.family == "classifier":
        tokens = torch.randint(1, config.vocab_size, (steps, batch), generator=generator)
        lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
        lengths[0] = steps
        tokens[torch.arange(steps).unsqueeze(1) >= lengths.unsqueeze(0)] = 0
        (logits,) = session.run(["logits"], initial_feeds(config, tokens, lengths))
        return compare([(model(tokens, lengths), logits)])
    names = state_names(config)
    outputs = ["logits", *(output for _, output, _ in names)]
    pairs: list[tuple[Tensor, np.ndarray]] = []
    state, carried = None, {}
    for _ in range(2):
        tokens = torch.randint(0, config.vocab_size, (steps, batch), generator=generator)
        logits, state = model(tokens, state)
        ran = session.run(outputs, {**initial_feeds(config, tokens), **carried})
        pairs.extend(zip([logits, *flat_state(state)], ran))
        carried = {name: value for (name, _, _), value in zip(names, ran[1:])}
    return compare(pairs)


def export_onnx(checkpoint: Checkpoint, output: Path, force: bool = False, opset: int = 17,
                arch: str | None = None, overrides: dict[str, Any] | None = None,
                quantize: str | None = None) -> ExportResult:
    """Export a checkpoint's model to an ONNX file, after checking it in ONNX Runtime.

    Args:
        checkpoint: an LM or classifier checkpoint (compacted or not; RHNs cannot be exported).
        output: the ``.onnx`` file to write; never the checkpoint itself.
        force: replace an existing ``output``.
        opset: the ONNX opset to target.
        arch, overrides: the model family and config fields of a checkpoint that carries no config.
        quantize: ``"int8"``: write the graph with int8 weights (:func:`isscli.runtime.quantize.quantize_onnx`), checked
            against the fp32 PyTorch model within :data:`isscli.runtime.quantize.INT8_TOLERANCE` × the largest |output|.

    Returns:
        An :class:`ExportResult`: the graph's input and output names and how far ONNX
        Runtime's outputs are from PyTorch's. Raises :class:`ExportMismatch`, writing
        nothing, when they differ by more than ``1e-4`` × max(1, largest |output|).

    Example:
        >>> result = export_onnx(isscli.load("small.safetensors"), Path("small.onnx"))
        >>> result.inputs, result.max_output_difference
    """
    onnx = require("onnx")
    require("onnxruntime")
    output = Path(output)
    check_output_path(output, (checkpoint.path,) if checkpoint.path else (), force)
    model = load_model(checkpoint, arch, overrides)
    proto = to_onnx(model, opset)
    if checkpoint.vocabulary is not None:  # a service needs to know which id each word is
        entry = proto.metadata_props.add()
        entry.key, entry.value = VOCABULARY_KEY, json.dumps(checkpoint.vocabulary, ensure_ascii=False)
    difference, scale = verify_onnx(model, proto)
    tolerance = TOLERANCE * max(1.0, scale)
    if not math.isfinite(difference):
        raise ExportMismatch("the model's outputs are not finite (NaN or inf) on random inputs; nothing was written",
                             "the checkpoint's weights hold NaN or inf: re-create it from a run that did not diverge")
    if not difference <= tolerance:
        raise ExportMismatch(f"ONNX Runtime's outputs differ from PyTorch's by {difference:.3g} (> {tolerance:g}); "
                             "nothing was written", "report this as an isscli bug, with the checkpoint")
    fp32 = None
    if quantize is not None:  # the fp32 graph is right; its int8 twin is checked against the same PyTorch model
        check_precision(quantize, "onnxruntime", model.config)
        fp32 = (len(proto.SerializeToString()), difference)
        proto = quantize_onnx(proto)
        difference, scale = verify_onnx(model, proto)
        tolerance = INT8_TOLERANCE * max(1.0, scale)
        if not difference <= tolerance:
            raise ExportMismatch(f"the int8 graph's outputs differ from the fp32 model's by {difference:.3g} "
                                 f"(> {tolerance:.3g}: {INT8_TOLERANCE:g} × the largest |output|); nothing was written",
                                 "export in fp32 (drop `quantize`), and report this with the checkpoint")
    atomic_write(output, lambda temp: onnx.save(proto, str(temp)))
    names = [[value.name for value in values] for values in (proto.graph.input, proto.graph.output)]
    return ExportResult(output, *names, difference, scale, tolerance, model.config.hidden_sizes,
                        precision=quantize or "fp32", file_bytes=output.stat().st_size,
                        fp32_file_bytes=fp32[0] if fp32 else None, fp32_max_output_difference=fp32[1] if fp32 else None)
