"""Training: the loop (:mod:`~isscli.train.loop`), what a run is made of (:mod:`~isscli.train.run`), its resumable
state, the recipes, the tasks (what a model learns from), the size-target controller, weight masks and torchrun."""
