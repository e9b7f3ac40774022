"""Training: the loop (:mod:`~isscli.learn.loop`), what a run is made of (:mod:`~isscli.learn.run`), its resumable
state, the recipes, the tasks (what a model learns from: :mod:`~isscli.learn.tasks`, with the scores and protocol in
:mod:`~isscli.learn.evaluation`, tensor data in :mod:`~isscli.learn.tensor_task` and what a run read in
:mod:`~isscli.learn.corpus`), the size-target controller, weight masks and torchrun."""
