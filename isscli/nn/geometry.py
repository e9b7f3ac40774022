"""The shapes the drop-in modules (:mod:`isscli.nn.recurrent`) read: sizes as the caller gives them, states, the
probe's signature, and the geometry of a packed batch, which each layer-direction's kernel takes apart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

#: ``hidden_size`` as given: one int, or one entry per layer (an int, or a (forward, reverse) pair).
HiddenSizes = Union[int, Sequence[Union[int, Sequence[int]]]]
#: A state as returned or accepted: a stacked ``[L*D, B, H]`` tensor, or one tensor per layer-direction.
State = Union[Tensor, tuple[Tensor, ...]]
#: The probe: ``(layer, direction, out_seq [T, B, H], h or (h, c) [1, B, H]) -> (out_seq, h or (h, c))``.
UnitProbe = Callable[[int, int, Tensor, State], tuple[Tensor, State]]


def parse_sizes(hidden_size: HiddenSizes, num_layers: int | None, bidirectional: bool) -> list[list[int]]:
    """``hidden_size`` → one list of direction sizes per layer; ValueError on anything ambiguous."""
    directions = 2 if bidirectional else 1
    entries: Sequence[int | Sequence[int]]
    if isinstance(hidden_size, int) and not isinstance(hidden_size, bool):
        entries = [hidden_size] * (1 if num_layers is None else num_layers)
    elif isinstance(hidden_size, Sequence) and not isinstance(hidden_size, str):
        entries = hidden_size
        if num_layers is not None and num_layers != len(entries):
            raise ValueError(f"num_layers={num_layers} but hidden_size lists {len(entries)} layers: "
                             "leave num_layers out or make it equal to len(hidden_size)")
    else:
        raise TypeError(f"hidden_size must be an int or a sequence of per-layer sizes, got {hidden_size!r}")
    sizes = [[entry] * directions if isinstance(entry, int) else list(entry) for entry in entries]
    for layer, layer_sizes in enumerate(sizes):
        if len(layer_sizes) != directions or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                                      for s in layer_sizes):
            shape = "an int or a (forward, reverse) pair" if bidirectional else "an int (unidirectional module)"
            raise ValueError(f"hidden_size entry {layer} is {entries[layer]!r}: each entry must be {shape}, "
                             "every size >= 1")
    if not sizes:
        raise ValueError("hidden_size lists no layers: give at least one size")
    return sizes


def permute(states: list[Tensor], order: Tensor | None) -> list[Tensor]:
    """Reorder the batch (dim 1) of each ``[1, B, H]`` state; ``None`` keeps it."""
    return states if order is None else [state.index_select(1, order) for state in states]


@dataclass
class PackedLayout:
    """A packed batch's geometry: each row's step and caller-order sequence, and its mirror row."""

    time: Tensor
    sequence: Tensor  # the caller's batch index of each row
    reverse: Tensor  # the row of step len-1-t of the same sequence: reverses each sequence within its length
    steps: int
    batch: int
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None

    @classmethod
    def of(cls, packed: PackedSequence) -> PackedLayout:
        batch_sizes, device = packed.batch_sizes, packed.data.device
        steps, batch = len(batch_sizes), int(batch_sizes[0])
        time = torch.arange(steps).repeat_interleave(batch_sizes)
        offsets = torch.cumsum(batch_sizes, 0) - batch_sizes
        column = torch.arange(len(time)) - offsets[time]
        lengths = (batch_sizes.unsqueeze(0) > torch.arange(batch).unsqueeze(1)).sum(1)
        reverse = offsets[lengths[column] - 1 - time] + column
        sequence = column.to(device) if packed.sorted_indices is None else packed.sorted_indices[column.to(device)]
        return cls(time.to(device), sequence, reverse.to(device), steps, batch, packed.sorted_indices,
                   packed.unsorted_indices)

    def pad(self, data: Tensor) -> Tensor:
        """``[T, B, H]`` in the caller's batch order, zeros past each sequence's length."""
        padded = data.new_zeros(self.steps, self.batch, data.shape[-1])
        return padded.index_put((self.time, self.sequence), data)

    def pack(self, padded: Tensor) -> Tensor:
        return padded[self.time, self.sequence]
