"""Export a (compacted) LM or classifier to ONNX, check it in ONNX Runtime, and write it.

Compaction leaves each layer, and each direction of a bidirectional layer, with its own
hidden size, which ``nn.LSTM`` (and so ``torch.onnx.export`` of one) cannot express. The
graph is built from the weights instead (:mod:`isscli.runtime.export.graph`): one native ONNX
``LSTM``/``GRU``/``RNN`` node per layer-direction, each with its own size. The graph's inputs and
outputs are described in :mod:`isscli.runtime.export.runtime`; isscli's config, version and
vocabulary go into the model's ``metadata_props``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torch import Tensor, nn

import isscli
from isscli.io.atomic import atomic_write, check_output_path
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import plain
from isscli.live.usermodel import ModelSource
from isscli.models.checkpoint import CONFIG_KEY, VOCABULARY_KEY, Checkpoint
from isscli.models.classifier import SequenceClassifier
from isscli.models.language_model import LanguageModel
from isscli.models.recurrent import LayerState, RecurrentStack
from isscli.models.registry import config_of, load_model
from isscli.runtime.export.graph import GraphBuilder, classifier_graph, language_model_graph
from isscli.runtime.export.runtime import initial_feeds, onnx_session, require, state_names
from isscli.runtime.quantize import INT8_TOLERANCE, check_precision, quantize_onnx

if TYPE_CHECKING:
    import onnx

#: Allowed output difference per unit of the largest |output|. Looser than compaction's 1e-5:
#: ONNX Runtime's LSTM/GRU kernels use their own GEMMs and vectorised approximations of
#: sigmoid and tanh, whose last-digit differences add up over the time steps.
TOLERANCE = 1e-4
#: Squeeze, Unsqueeze and ReduceSum take their axes as an input from opset 13 on.
MIN_OPSET = 13
VERSION_KEY = "isscli.version"
#: What :func:`to_onnx` exports: isscli's LMs and classifiers (ONNX has no recurrent highway operator).
Exportable = Union[LanguageModel, SequenceClassifier]


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
    model: ModelSource | None = None  # the user's own class that was exported
    checked_on: str | None = None  # what the graph and the module ran on
    precision: str = "fp32"  # int8: the graph's weights quantized (ONNX Runtime dynamic quantization)
    file_bytes: int | None = None  # the file written
    fp32_file_bytes: int | None = None  # int8: the fp32 graph's size, for comparison
    fp32_max_output_difference: float | None = None  # int8: how far the fp32 graph was from PyTorch

    def to_json(self) -> JSONObject:
        return {**plain(self), "model": self.model.describe() if self.model else None}


def exportable(model: nn.Module) -> Exportable:
    """The model, if it is one of isscli's LMs or classifiers with its own recurrent stack (not a twin whose
    layers were swapped for quantized or sparse ones)."""
    config = config_of(model)
    if config is not None and config.family == "rhn":
        raise IsscliError("RHN models cannot be exported to ONNX, which has no recurrent highway operator",
                          "export an LSTM, GRU or RNN model (family `lm` or `classifier`), or run the RHN in PyTorch")
    if not isinstance(model, (LanguageModel, SequenceClassifier)) or not isinstance(model.rnn, RecurrentStack):
        raise IsscliError("only isscli's LM and classifier models can be exported to ONNX",
                          "build the model with `build_model` or `load_model`")
    return model


def check_opset(opset: int) -> None:
    """Refuse an opset the graph cannot use (axes as inputs need 13) or the installed onnx does not know."""
    latest = require("onnx").defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise IsscliError(f"`opset` {opset} is outside {MIN_OPSET}–{latest}", "give e.g. `opset`=17")


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

    Example::

        proto = to_onnx(load_model(isscli.load("small.safetensors")))
        [i.name for i in proto.graph.input]
        # → ['tokens', 'h_l0', 'c_l0', 'h_l1', 'c_l1']
    """
    library = require("onnx")
    exported = exportable(model)
    check_opset(opset)
    config, graph = exported.config, GraphBuilder(opset)
    embedded = graph.one("Gather", [graph.constant("encoder.weight", exported.encoder.weight), "tokens"])
    if isinstance(exported, SequenceClassifier):
        inputs, outputs = classifier_graph(graph, exported, embedded)
    else:
        inputs, outputs = language_model_graph(graph, exported, embedded)
    body = library.helper.make_graph(graph.nodes, f"isscli_{config.family}", inputs, outputs,
                                     list(graph.initializers.values()))
    proto: onnx.ModelProto = library.helper.make_model_gen_version(
        body, opset_imports=[library.helper.make_opsetid("", opset)], producer_name="isscli",
        producer_version=isscli.__version__)
    library.helper.set_model_props(proto, {CONFIG_KEY: json.dumps(config.to_dict(), sort_keys=True),
                                        VERSION_KEY: isscli.__version__})
    return proto


def flat_state(state: list[list[LayerState]]) -> list[Tensor]:
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

    Example::

        difference, scale = verify_onnx(model, to_onnx(model))
        difference <= 1e-4 * max(1.0, scale)
        # → True
    """
    exported = exportable(model)
    config, session = exported.config, onnx_session(proto)
    exported.eval()
    generator = torch.Generator().manual_seed(seed)
    if isinstance(exported, SequenceClassifier):
        tokens = torch.randint(1, config.vocab_size, (steps, batch), generator=generator)
        lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
        lengths[0] = steps
        tokens[torch.arange(steps).unsqueeze(1) >= lengths.unsqueeze(0)] = 0
        (logits,) = session.run(["logits"], initial_feeds(config, tokens, lengths))
        return compare([(exported(tokens, lengths), logits)])
    names = state_names(config)
    outputs = ["logits", *(output for _, output, _ in names)]
    pairs: list[tuple[Tensor, np.ndarray]] = []
    state: list[list[LayerState]] | None = None
    carried: dict[str, np.ndarray] = {}
    for _ in range(2):
        tokens = torch.randint(0, config.vocab_size, (steps, batch), generator=generator)
        logits, state = exported(tokens, state)
        ran = session.run(outputs, {**initial_feeds(config, tokens), **carried})
        pairs.extend(zip([logits, *flat_state(state)], ran))
        carried = {name: value for (name, _, _), value in zip(names, ran[1:])}
    return compare(pairs)


def export_onnx(checkpoint: Checkpoint, output: Path, force: bool = False, opset: int = 17,
                arch: str | None = None, overrides: Mapping[str, Any] | None = None,
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

    Example::

        result = export_onnx(isscli.load("small.safetensors"), Path("small.onnx"))
        result.inputs, result.max_output_difference
    """
    onnx = require("onnx")
    require("onnxruntime")
    output = Path(output)
    check_output_path(output, (checkpoint.path,) if checkpoint.path else (), force)
    model = exportable(load_model(checkpoint, arch, overrides))
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
    fp32: tuple[int, float] | None = None
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
    inputs, outputs = ([value.name for value in values] for values in (proto.graph.input, proto.graph.output))
    return ExportResult(output, inputs, outputs, difference, scale, tolerance, model.config.hidden_sizes,
                        precision=quantize or "fp32", file_bytes=output.stat().st_size,
                        fp32_file_bytes=fp32[0] if fp32 else None, fp32_max_output_difference=fp32[1] if fp32 else None)
