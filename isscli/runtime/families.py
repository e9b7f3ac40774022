"""What the runtime reads of isscli's own model families: the config each keeps as ``model.config``.

``nn.Module`` types its attributes as tensors or modules; this says, once, that the config is a
:class:`~isscli.models.config.ModelConfig` (and fails by name on a model that has none, such as the user's own).
"""

from __future__ import annotations

from torch import nn

from isscli.models.config import ModelConfig


def config_of(model: nn.Module) -> ModelConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"{type(model).__name__} is not one of isscli's model families: it has no ModelConfig")
    return config
