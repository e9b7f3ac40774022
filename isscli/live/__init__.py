"""ISS on a live ``nn.Module``: find its groups, learn them in the user's own loop, compact the module itself.

* :mod:`isscli.live.model` — the user's model as tracing sees it (recurrent modules, layer-directions);
* :mod:`isscli.live.probe` — which weight lines receive each unit (group testing over gradients);
* :mod:`isscli.live.trace` — :func:`derive_module_spec`: the ISS sets of any module tree, checked;
* :mod:`isscli.live.compact` — :func:`compact_module`: the user's own class, physically smaller, verified;
  :func:`load_compacted`: a compacted checkpoint back into the user's class;
* :mod:`isscli.live.loop` — :class:`IssTraining`: group Lasso and the size-target controller inside any loop
  (:mod:`isscli.live.adapter` binds the controller, :mod:`isscli.live.budget` turns a parameter budget into sizes).
"""
