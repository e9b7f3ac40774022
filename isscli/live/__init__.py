"""ISS on a live ``nn.Module``: find its groups, compact the module itself, count its cost.

* :mod:`isscli.live.model` — the user's model as tracing sees it (recurrent modules, layer-directions);
* :mod:`isscli.live.probe` — which weight lines receive each unit (group testing over gradients);
* :mod:`isscli.live.trace` — :func:`derive_module_spec`: the ISS sets of any module tree, checked;
* :mod:`isscli.live.compact` — :func:`compact_module`: the user's own class, physically smaller, verified;
  :func:`load_compacted`: a compacted checkpoint back into the user's class;
* :mod:`isscli.live.cost` — parameters and multiply-adds counted on one run of its forward;
* :mod:`isscli.live.usermodel` — the user's class, named explicitly, imported and built.

Learning ISS inside the user's own loop (:class:`~isscli.learn.your_loop.loop.IssTraining`) is a layer up, in
:mod:`isscli.learn.your_loop`: it drives the size-target controller of :mod:`isscli.learn`.
"""
