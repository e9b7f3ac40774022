"""Model families (LM, classifier), their configs, presets and layout inference.

The names below are imported on first use (:mod:`isscli.lazy`): ``isscli.models.presets`` is read by
every command's ``--help``, which must not load torch.
"""

from isscli.lazy import lazy_exports

HOMES = {
    "ModelConfig": "isscli.models.config",
    **dict.fromkeys(("PRESETS", "preset_config"), "isscli.models.presets"),
    **dict.fromkeys(("build_model", "load_model", "model_tensors"), "isscli.models.registry"),
}
__all__ = sorted(HOMES)
__getattr__, __dir__ = lazy_exports(__name__, HOMES)
