"""ISS on a live ``nn.Module``: find its groups, learn them in the user's own loop, compact the module itself.

* :mod:`isscli.live.trace` — the ISS sets of any module tree, found by running its forward on an example input;
* :mod:`isscli.live.compact` — :func:`compact_module`: the user's own class, physically smaller, verified;
* :mod:`isscli.live.loop` — :class:`IssTraining`: group Lasso and the size-target controller inside any loop.
"""
