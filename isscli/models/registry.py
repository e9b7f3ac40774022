"""Build models from configs and checkpoints; turn models back into checkpoint tensors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from isscli.io.errors import CheckpointError, IsscliError
from isscli.models.checkpoint import Checkpoint
from isscli.models.classifier import SequenceClassifier
from isscli.models.config import ModelConfig
from isscli.models.language_model import LanguageModel
from isscli.models.layout import RECURRENT_PARAMETER, Layout, find_layout, find_rhn_width
from isscli.models.rhn import RecurrentHighwayLM

MODEL_FAMILIES: dict[str, type[nn.Module]] = {
    "lm": LanguageModel,
    "classifier": SequenceClassifier,
    "rhn": RecurrentHighwayLM,
}
OUTPUT_LAYER = {"lm": "decoder", "classifier": "classifier", "rhn": "decoder"}


def build_model(config: ModelConfig | Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model of the config's family."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    return MODEL_FAMILIES[config.family](config)


def is_tied(config: ModelConfig) -> bool:
    """Whether the decoder shares the embedding's tensor (stored once, as ``encoder.weight``)."""
    return config.family == "rhn" or (config.family == "lm" and config.tie_weights)


def config_of(model: nn.Module) -> ModelConfig | None:
    """The config one of isscli's model families keeps as ``model.config``; None for any other module (the user's
    own, whose ``config``, if any, is theirs)."""
    config = getattr(model, "config", None)
    return config if isinstance(config, ModelConfig) else None


def family_config(model: nn.Module) -> ModelConfig:
    """:func:`config_of` where only isscli's own families can arrive: another module is a bug, named."""
    config = config_of(model)
    if config is None:
        raise TypeError(f"{type(model).__name__} is not one of isscli's model families: it has no ModelConfig")
    return config


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as checkpoint tensors; a tied decoder is stored once, as the embedding."""
    state = model.state_dict()
    config = config_of(model)
    if config is not None and is_tied(config):
        state.pop("decoder.weight", None)
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def config_from_layout(layout: Layout, tensors: dict[str, torch.Tensor], arch: str | None = None) -> ModelConfig:
    """Best guess at the config of a checkpoint that carries none."""
    if layout.embedding is None or layout.output is None:
        raise CheckpointError(
            "the checkpoint has no config and its embedding or output layer cannot be found",
            "pass --config FILE with the model's config",
        )
    vocab_size, embedding_size = tensors[layout.embedding].shape
    outputs = tensors[layout.output].shape[0]
    family = arch or ("lm" if outputs == vocab_size else "classifier")
    return ModelConfig(
        family=family,
        cell=layout.cell,
        vocab_size=int(vocab_size),
        embedding_size=int(embedding_size),
        hidden_sizes=layout.hidden_sizes,
        tie_weights=layout.tied,
        num_classes=int(outputs) if family == "classifier" else None,
    )


def canonical_tensors(tensors: dict[str, torch.Tensor], layout: Layout, family: str) -> dict[str, torch.Tensor]:
    """Rename a plain checkpoint's tensors to this package's module names."""
    renamed = {}
    for name, tensor in tensors.items():
        local = name[len(layout.rnn_prefix) :]
        if name.startswith(layout.rnn_prefix) and RECURRENT_PARAMETER.match(local):
            renamed["rnn." + local] = tensor
    if layout.embedding:
        renamed["encoder.weight"] = tensors[layout.embedding]
    head = OUTPUT_LAYER[family]
    if layout.output and not layout.tied:
        renamed[f"{head}.weight"] = tensors[layout.output]
    if layout.output_bias:
        renamed[f"{head}.bias"] = tensors[layout.output_bias]
    return renamed


def resolve_config(
    checkpoint: Checkpoint, arch: str | None = None, overrides: Mapping[str, Any] | None = None
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The checkpoint's config (header, else inferred, then ``overrides``) and its tensors renamed to match."""
    tensors = checkpoint.tensors
    if checkpoint.config is not None:
        raw = checkpoint.config.to_dict()
    else:
        if arch is None and "family" not in (overrides or {}):
            raise unknown_forward(checkpoint)
        layout = find_layout(tensors)
        raw = config_from_layout(layout, tensors, arch).to_dict()
        tensors = canonical_tensors(tensors, layout, arch or raw["family"])
    if arch is not None:
        raw["family"] = arch
    raw.update(overrides or {})
    return ModelConfig.from_dict(raw), tensors


#: What isscli's own families compute, said wherever a checkpoint without a config is read as one of them.
ARCHITECTURES = {
    "lm": "embedding → recurrent layers → linear decoder at every step",
    "classifier": "embedding → recurrent layers → max-pooling over time → linear",
    "rhn": "embedding → recurrent highway layers → tied decoder",
}


def unknown_forward(checkpoint: Checkpoint) -> CheckpointError:
    """A checkpoint without a config is a state_dict of some model whose forward isscli cannot see: running one of
    isscli's own families in its place would be a guess (a mean-pooling classifier read as a max-pooling one)."""
    name = checkpoint.path.name if checkpoint.path else "the checkpoint"
    return CheckpointError(
        f"{name} carries no model config, so isscli does not know its forward",
        "pass `model`=file.py:Class (your own module: isscli runs its forward), or `arch`=lm|classifier if it is "
        f"isscli's architecture (lm: {ARCHITECTURES['lm']}; classifier: {ARCHITECTURES['classifier']})",
    )


def architecture_assumption(checkpoint: Checkpoint, arch: str | None, overrides: Mapping[str, Any] | None
                            ) -> str | None:
    """What is assumed when a checkpoint without a config runs as one of isscli's families (said and recorded)."""
    if checkpoint.config is not None:
        return None
    family = (overrides or {}).get("family") or arch
    if family is None:
        return None
    name = checkpoint.path.name if checkpoint.path else "the checkpoint"
    pooling = (overrides or {}).get("pooling")
    what = ARCHITECTURES.get(family, family)
    if family == "classifier" and pooling:
        what = what.replace("max-pooling", f"{pooling}-pooling")
    return (f"{name} carries no config: run as isscli's `{family}` architecture ({what}), sizes read from its "
            "tensor names, as `arch`/`config` said")


def load_model(checkpoint: Checkpoint, arch: str | None = None, overrides: Mapping[str, Any] | None = None
               ) -> nn.Module:
    """A runnable model with the checkpoint's weights, in eval mode."""
    config, tensors = resolve_config(checkpoint, arch, overrides)
    model = build_model(config)
    expected = model.state_dict()
    if is_tied(config):
        expected.pop("decoder.weight", None)
        check_tied(tensors)
        tensors = {n: t for n, t in tensors.items() if n != "decoder.weight"}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(unexpected)}"
        raise CheckpointError(f"checkpoint does not match its config ({detail})", "pass the right --config or --arch")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"tensor {name} has shape {tuple(tensor.shape)} but the config needs {tuple(expected[name].shape)}",
                "pass the right --config, or re-create the checkpoint",
            )
    model.load_state_dict(tensors, strict=False)
    return model.eval()


def check_tied(tensors: dict[str, torch.Tensor]) -> None:
    """A tied model's decoder is its embedding: a file with a decoder weight of its own contradicts its config
    (unless that weight is a copy of the embedding)."""
    decoder, embedding = tensors.get("decoder.weight"), tensors.get("encoder.weight")
    if decoder is None:
        return
    if embedding is None or decoder.shape != embedding.shape or not torch.equal(decoder, embedding):
        raise CheckpointError(
            "the config ties the decoder to the embedding (tie_weights) but the file has a decoder.weight of its "
            "own, which differs from encoder.weight",
            "fix the config (tie_weights: false keeps the file's decoder), or drop decoder.weight from the file",
        )


def config_after_surgery(config: ModelConfig | None, tensors: dict[str, torch.Tensor]) -> ModelConfig | None:
    """Re-read the sizes that compaction changed (hidden sizes, tied embedding width)."""
    if config is None:
        return None
    width = find_rhn_width(tensors)
    if width is not None:
        return dataclasses.replace(config, hidden_sizes=[[width]], embedding_size=width)
    try:
        layout = find_layout(tensors)
    except IsscliError:
        return config
    embedding = config.embedding_size if layout.embedding is None else int(tensors[layout.embedding].shape[1])
    return dataclasses.replace(config, hidden_sizes=layout.hidden_sizes, embedding_size=embedding)
