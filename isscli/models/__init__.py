"""Model families (LM, classifier), their configs, presets and layout inference."""

from isscli.models.config import ModelConfig
from isscli.models.presets import PRESETS, preset_config
from isscli.models.registry import build_model, load_model, model_tensors

__all__ = ["PRESETS", "ModelConfig", "build_model", "load_model", "model_tensors", "preset_config"]
