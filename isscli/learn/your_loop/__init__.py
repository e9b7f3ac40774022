"""ISS inside your own training loop: :class:`~isscli.learn.your_loop.loop.IssTraining` (group Lasso, τ-zeroing
and the size-target controller as one object).

:mod:`~isscli.learn.your_loop.arguments` checks its arguments and resolves the targets,
:mod:`~isscli.learn.your_loop.budget` turns a parameter budget into sizes, :mod:`~isscli.learn.your_loop.adapter`
binds the controller, :mod:`~isscli.learn.your_loop.losses` reads the losses for its back-off test,
:mod:`~isscli.learn.your_loop.summary` and :mod:`~isscli.learn.your_loop.resume` are what it reports and saves.
"""
