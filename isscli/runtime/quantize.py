"""Quantized inference: a model's weights in int8 or bfloat16, in torch or in ONNX Runtime.

ISS removes whole units, so the compact model does fewer multiply-adds; quantization makes each one
cheaper (fewer bits per weight: int8 multiply-adds through VNNI, a quarter of the memory traffic).
The two compose. Which runtime × precision exists here:

============  ==================================================================  ============
runtime       int8 (dynamic: weights int8, activations quantized per batch)       bf16
============  ==================================================================  ============
torch         ``torch.ao`` dynamic quantization: each LSTM/GRU layer-direction     weights and
              and the output layer (qint8, a scale per matrix), the embedding     activations
              (8-bit rows, a scale and offset each)                                bfloat16
onnxruntime   ``onnxruntime.quantization.quantize_dynamic`` of the exported         refused
              graph: LSTM/GRU nodes (DynamicQuantizeLSTM), the output layer
              (MatMulInteger), the embedding (Gather of int8 rows), per channel
============  ==================================================================  ============

Plain RNN (tanh/ReLU) layers and recurrent highway networks have no int8 kernels in either runtime
and are refused by name, as is bf16 in ONNX Runtime (its CPU kernels for LSTM are fp32 only). In torch the output
layer takes one scale per matrix: a scale per output row cost 5% of the compact paper LM's time for no
measurable gain (PTB small test perplexity +0.07% against +0.15% per matrix; BENCHMARKS.md).
``torch.ao.quantization`` is deprecated in the installed torch and warns on every call; those
warnings are silenced here, where the call is deliberate.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from isscli.io.errors import IsscliError
from isscli.models.config import ModelConfig
from isscli.models.recurrent import LayerState, RecurrentStack, reverse_padded
from isscli.models.registry import family_config

if TYPE_CHECKING:
    import onnx

PRECISIONS = ("int8", "bf16")
#: The combinations that exist (module docstring); the others are refused by name.
SUPPORTED = {("torch", "int8"), ("torch", "bf16"), ("onnxruntime", "int8")}
INT8_CELLS = ("lstm", "gru")
#: Allowed output difference of an int8 graph from the fp32 model, per unit of the largest |output|: int8 keeps
#: about 2 decimal digits of each weight (1/127 of its channel's range) and of each activation batch, so logits
#: move by a few hundredths of their scale; a wrong graph moves them by their whole scale.
INT8_TOLERANCE = 0.1


def check_precision(precision: str | None, runtime: str = "torch", config: ModelConfig | None = None) -> None:
    """Refuse, by name, a precision that does not exist for this runtime or this model."""
    if precision is None:
        return
    if precision not in PRECISIONS:
        raise IsscliError(f"unknown `quantize` {precision!r}", f"use {' or '.join(PRECISIONS)}")
    if (runtime, precision) not in SUPPORTED:
        raise IsscliError(f"`quantize`={precision} does not exist in {runtime} (its CPU recurrent kernels are fp32 "
                          "and int8 only)", "use `quantize`=int8 there, or `runtime`=torch for bf16")
    if config is None or precision != "int8":
        return
    if config.family == "rhn" or config.cell not in INT8_CELLS:
        what = "recurrent highway networks" if config.family == "rhn" else f"{config.cell} layers"
        raise IsscliError(f"`quantize`=int8: {what} have no int8 kernels (LSTM and GRU layers do)",
                          "use `quantize`=bf16")


class LayerwiseStack(nn.Module):
    """A :class:`~isscli.models.recurrent.RecurrentStack` as one single-layer ``nn.LSTM``/``nn.GRU`` per
    layer-direction (each with its own size), which ``torch.ao`` dynamic quantization can swap for its int8
    modules; same inputs, outputs and state as the stack it copies (eval mode: no dropout)."""

    def __init__(self, stack: RecurrentStack) -> None:
        super().__init__()
        self.cell, self.hidden_sizes = stack.cell, stack.hidden_sizes
        kind = nn.LSTM if stack.cell == "lstm" else nn.GRU
        self.layers = nn.ModuleList()
        width = stack.input_size
        for layer, sizes in enumerate(stack.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                module = kind(width, hidden, 1)
                weights = stack.layer_weights(layer, direction)
                with torch.no_grad():
                    for name, tensor in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), weights):
                        getattr(module, name).copy_(tensor)
                self.layers.append(module)
            width = sum(sizes)
        self.output_size = stack.output_size

    def forward(self, inputs: Tensor, state: list[list[LayerState]] | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, list[list[LayerState]]]:
        modules = iter(self.layers)
        layer_input, new_state = inputs, []
        for layer, sizes in enumerate(self.hidden_sizes):
            outputs, layer_state = [], []
            for direction in range(len(sizes)):
                sequence = reverse_padded(layer_input, lengths) if direction == 1 else layer_input
                hx = None if state is None else state[layer][direction]
                output, final = next(modules)(sequence, hx)
                outputs.append(reverse_padded(output, lengths) if direction == 1 else output)
                layer_state.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            new_state.append(layer_state)
        return layer_input, new_state


def quantize_torch(model: nn.Module, precision: str) -> nn.Module:
    """A quantized copy of an isscli model for inference in torch (the input model is left as it is)."""
    config = family_config(model)
    check_precision(precision, "torch", config)
    copied = copy.deepcopy(model).eval()
    copied.drop = nn.Identity()  # an inference copy: dropout is off in eval mode anyway, and its call is time
    if precision == "bf16":
        return copied.to(torch.bfloat16)
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        quantize_dynamic,
    )

    stack = copied.rnn
    assert isinstance(stack, RecurrentStack)  # check_precision refused the families without one
    copied.rnn = LayerwiseStack(stack)
    qconfigs: dict[Any, Any] = {nn.LSTM: default_dynamic_qconfig, nn.GRU: default_dynamic_qconfig,
                                nn.Linear: default_dynamic_qconfig, nn.Embedding: float_qparams_weight_only_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated; this call is deliberate
        quantized: nn.Module = quantize_dynamic(copied, qconfigs, dtype=torch.qint8, inplace=True)
    return quantized


def quantize_onnx(proto: onnx.ModelProto, per_channel: bool = True) -> onnx.ModelProto:
    """The graph with int8 weights (ONNX Runtime's dynamic quantization of LSTM/GRU, MatMul/Gemm and Gather)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(proto, str(source))
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing": not for graphs of known ops
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=["LSTM", "GRU", "MatMul", "Gemm", "Gather"])
        finally:
            logging.getLogger().setLevel(quiet)
        quantized = onnx.load(str(target))
    del quantized.metadata_props[:]
    for entry in proto.metadata_props:  # isscli's config, version and vocabulary travel on
        quantized.metadata_props.add(key=entry.key, value=entry.value)
    return quantized


def weight_bytes(config: ModelConfig, precision: str | None) -> int:
    """Memory of the parameters as the quantized model holds them: int8 weight matrices with fp32 biases and a scale
    and offset per embedding row (a tied decoder is quantized apart from the embedding); bf16 everything at 2
    bytes; fp32 (None) at 4."""
    from isscli.iss.accounting import layer_directions, output_width, parameter_count
    from isscli.models.config import GATES_PER_CELL

    if precision is None:
        return parameter_count(config) * 4
    if precision == "bf16":
        return parameter_count(config) * 2
    gates = GATES_PER_CELL[config.cell]
    recurrent = sum(gates * hidden * (width + hidden) + 2 * gates * hidden * 4
                    for width, hidden in layer_directions(config))
    embedding = config.vocab_size * (config.embedding_size + 8)
    rows = output_width(config)
    return recurrent + embedding + rows * (config.output_size + 4)
