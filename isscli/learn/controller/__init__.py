"""Target-driven ISS: a λ controller that prunes every ISS set to a requested size.

The paper tuned λ by hand, and a wrong guess costs a whole run (λ = 0.0035 kills the large
LM in epoch 2 where 0.00245 gives (362, 479) units). Here the user states the size instead —
units per set (``--target-hidden``), a parameter budget (``--target-params``, turned into
sizes by :func:`sizes_for_parameters`) or a speed-up measured on this machine
(``--target-speedup``, :func:`sizes_for_speedup`) — and :class:`IssController`, a
:class:`~isscli.learn.loop.TrainingHook`, steers one λ per set during training.

The package in four parts: :mod:`~isscli.learn.controller.targets` (sizes from what the user asks),
:mod:`~isscli.learn.controller.schedule` (the λ schedule), :mod:`~isscli.learn.controller.units` (counting
units, freezing, the final cut, and the never-below-target guarantee) and
:mod:`~isscli.learn.controller.hook` (the training hook that binds them), with the run's mutable
state in one :class:`ControllerState`.

A run has two phases:

* **pruning** (``prune_epochs``): every ``check_every`` batches the controller counts the
  units of each set, raises or lowers that set's λ to follow a linear schedule from the
  starting size to the target, zeroes groups that sit within one SGD step of zero, and
  *freezes* a set the moment it reaches its target (λ = 0, its dead units held at exactly
  zero, its survivors protected from thresholding). At the end of the phase every set still
  above target loses its weakest groups (smallest ‖w_k‖), so each set has exactly its target.
* **recovery** (``recover_epochs``): λ = 0, dead units held at zero (their gradients and
  weights), the survivors fine-tuned.

A *unit* is a component whose receivers (the weights that multiply h_k) are not all zero:
exactly what ``isscli compact`` keeps. Whatever zeroes weights — τ-thresholding, the
controller's own zeroing, the held-dead lines — goes through :meth:`UnitGuard.enforce`,
which never lets a set drop below its target: if a step would, the strongest of the units it
would kill keep their receiver weights for that step. So no set ever has fewer units than its
target, at any batch, and the compacted model has exactly the target sizes. docs/training.md
describes the λ schedule, the divergence back-off and the log records.
"""

from isscli.learn.controller.hook import IssController
from isscli.learn.controller.state import ControllerSettings, ControllerState, ControllerSummary

__all__ = ["ControllerSettings", "ControllerState", "ControllerSummary", "IssController"]
