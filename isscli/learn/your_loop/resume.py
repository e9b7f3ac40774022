"""The resume state of an :class:`~isscli.learn.your_loop.loop.IssTraining`: what ``state_dict`` saves and
``load_state_dict`` checks, read into one typed value.

The saved form is plain values and the controller's tensors, for ``torch.save`` beside the model's and the
optimizer's state::

    {"format": "isscli.learn.your_loop.loop/1", "identity": {...}, "epoch": 3, "batch": 0, "losses_skipped": 0,
     "controller": {"tensors": {...}, "info": {...}} or null, "optimizer_reset_at_epoch": null}

``identity`` holds the settings that must not change between an interrupted run and its continuation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject

#: The ``format`` entry of the saved state.
STATE_FORMAT = "isscli.learn.your_loop.loop/1"

#: The saved state, the wire format only: JSON values and, under ``controller.tensors``, the controller's tensors
#: (what ``torch.save`` writes, as for ``nn.Module.state_dict``). Read it through :meth:`LoopState.read`.
SavedState: TypeAlias = dict[str, Any]


@dataclass
class ControllerSaved:
    """The controller's part: its tensors and its JSON values (``IssController.state_dict``)."""

    tensors: dict[str, torch.Tensor]
    info: JSONObject


@dataclass
class LoopState:
    """Where the loop stands and what it was built with."""

    identity: JSONObject  # the settings that must not change
    epoch: int  # the epoch the loop goes on in
    batch: int  # batches of that epoch already done
    losses_skipped: int
    optimizer_reset_at_epoch: int | None = None
    controller: ControllerSaved | None = None

    def saved(self) -> SavedState:
        """The state for ``torch.save`` (the format in the module docstring)."""
        controller = None if self.controller is None else {"tensors": self.controller.tensors,
                                                           "info": self.controller.info}
        return {"format": STATE_FORMAT, "identity": self.identity, "epoch": self.epoch, "batch": self.batch,
                "losses_skipped": self.losses_skipped, "controller": controller,
                "optimizer_reset_at_epoch": self.optimizer_reset_at_epoch}

    @classmethod
    def read(cls, state: object, identity: JSONObject) -> LoopState:
        """A saved state, checked: its format, and ``identity`` (the settings of the object loading it) unchanged."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise IsscliError("`load_state_dict` was given something other than an IssTraining state",
                              "pass what `IssTraining.state_dict()` returned")
        saved = state["identity"]
        changed = sorted(key for key in identity if saved.get(key) != identity[key])
        if changed:
            raise IsscliError(f"`load_state_dict`: the state was saved with other settings ({', '.join(changed)})",
                              "build IssTraining with the arguments of the interrupted run, before loading "
                              "the model's saved weights")
        controller = state["controller"]
        return cls(saved, state["epoch"], state["batch"], state["losses_skipped"],
                   state.get("optimizer_reset_at_epoch"),
                   None if controller is None else ControllerSaved(controller["tensors"], controller["info"]))
