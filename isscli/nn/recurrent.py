"""Drop-in ``nn.LSTM``/``nn.GRU``/``nn.RNN`` whose layers, and directions, may each have their own size.

Compaction keeps a different number of units in each layer-direction, so a compacted model no longer fits
``nn.LSTM``'s single ``hidden_size``. These modules keep ``nn.LSTM``'s constructor, parameter names, forward
contract and returned states, so the user's own ``forward`` runs unchanged and dense checkpoints load with
``strict=True``. Each layer-direction runs through the single-layer fused kernel that ``nn.LSTM`` itself
calls (``torch._VF.lstm`` …), so outputs equal ``nn.LSTM``'s and the modules export to ONNX.

A returned state is a ``[L*D, B, H]`` tensor when every layer-direction has the same size (exactly as
``nn.LSTM``), else a plain tuple of ``L*D`` tensors ``[B, H_i]`` in ``nn.LSTM``'s order, so ``h_n[-1]`` is
still the last layer's last direction. Either form is accepted back as ``hx``.

isscli's tracing sets ``_unit_probe``: after each layer-direction it sees, and may replace, the output sequence
(time-major ``[T, B, H]``, reverse directions already back in input order) and the final state, ``h`` or
``(h, c)``, each ``[1, B, H]``; what it returns feeds the next layer, the output and ``h_n``. For packed input
it sees the sequence padded with zeros and both in the caller's batch order; the result is packed again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from torch.types import Device

from isscli.models.config import GATES_PER_CELL as GATES
from isscli.models.recurrent import CELL_KERNELS as KERNELS, direction_suffix
from isscli.nn.geometry import HiddenSizes, PackedLayout, State, UnitProbe, parse_sizes, permute

PROJ_SIZE_REFUSED = ("proj_size is not supported by isscli.nn.LSTM: LSTMs with projections have no per-unit ISS "
                     "structure that isscli compacts yet; use proj_size=0")
#: The class ``from_module`` is called on: each returns its own kind.
_Module = TypeVar("_Module", bound="_RecurrentBase")


class _RecurrentBase(nn.Module):
    """Parameters, state handling and the per-layer-direction loop shared by LSTM, GRU and RNN.

    Its constructor is the one the three share (GRU's); LSTM adds ``proj_size``, RNN ``nonlinearity``.
    """

    #: The cell, a key of ``CELL_KERNELS``: set by each class (RNN's from its nonlinearity) before this runs.
    mode: str

    def __init__(self, input_size: int, hidden_size: HiddenSizes, num_layers: int | None = None, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device: Device = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
        self.input_size = input_size
        self.hidden_sizes = parse_sizes(hidden_size, num_layers, bidirectional)
        self.num_layers = len(self.hidden_sizes)
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        flat = self._flat_sizes
        self.hidden_size: int | None = flat[0] if len(set(flat)) == 1 else None
        self.original_sizes: list[list[int]] | None = None
        self._unit_probe: UnitProbe | None = None
        gates, layer_input = GATES[self.mode], input_size
        for layer, sizes in enumerate(self.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                suffix = direction_suffix(layer, direction)
                shapes: dict[str, tuple[int, ...]] = {"weight_ih": (gates * hidden, layer_input),
                                                      "weight_hh": (gates * hidden, hidden)}
                if bias:
                    shapes.update(bias_ih=(gates * hidden,), bias_hh=(gates * hidden,))
                for kind, shape in shapes.items():
                    self.register_parameter(kind + suffix, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
            layer_input = sum(sizes)
        self.reset_parameters()

    @property
    def _flat_sizes(self) -> list[int]:
        return [size for sizes in self.hidden_sizes for size in sizes]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer-direction, in ``nn.LSTM``'s order."""
        return [self._weights(layer, direction) for layer, sizes in enumerate(self.hidden_sizes)
                for direction in range(len(sizes))]

    def _weights(self, layer: int, direction: int) -> list[nn.Parameter]:
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.bias else ("weight_ih", "weight_hh")
        return [getattr(self, kind + direction_suffix(layer, direction)) for kind in kinds]

    def reset_parameters(self) -> None:
        """``uniform(±1/sqrt(H))`` per layer-direction: with one size, the same draws as ``nn.LSTM``."""
        for layer, sizes in enumerate(self.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                for weight in self._weights(layer, direction):
                    nn.init.uniform_(weight, -1.0 / math.sqrt(hidden), 1.0 / math.sqrt(hidden))

    def flatten_parameters(self) -> None:
        """No-op, kept because users call it in ``forward``: each layer-direction is its own kernel call."""

    def set_kept_units(self, kept: Sequence[Sequence[Sequence[int] | Tensor]] | None,
                       original_sizes: Sequence[Sequence[int]]) -> None:
        """Record which units of a bigger original each layer-direction kept, so original-size ``hx`` still fits.

        Args:
            kept: per layer, per direction, the original indices of the kept units (ints or a 1-D tensor);
                None where they are not known (a compacted checkpoint loaded back): then an original-size
                state is read only if it is all zeros.
            original_sizes: per layer, per direction, the original number of units.

        Examples:
            >>> lstm = LSTM(4, [2])
            >>> lstm.set_kept_units([[[0, 3]]], [[5]])
            >>> lstm(torch.zeros(3, 1, 4), (torch.zeros(1, 1, 5), torch.zeros(1, 1, 5)))[0].shape
            torch.Size([3, 1, 2])
        """
        shape = [len(sizes) for sizes in self.hidden_sizes]
        if (kept is not None and [len(k) for k in kept] != shape) or [len(o) for o in original_sizes] != shape:
            raise ValueError(f"kept units and original sizes need {shape} entries per layer (one per direction)")
        self.original_sizes = [list(sizes) for sizes in original_sizes]
        if kept is None:
            return
        hidden_weight = self._weights(0, 0)[1]
        for layer, sizes in enumerate(self.hidden_sizes):
            for direction, hidden in enumerate(sizes):
                index = torch.as_tensor(kept[layer][direction], dtype=torch.long, device=hidden_weight.device)
                original = original_sizes[layer][direction]
                values = index.tolist() if index.dim() == 1 else []
                if not (len(values) == len(set(values)) == hidden and 0 <= min(values) and max(values) < original):
                    raise ValueError(f"layer {layer} direction {direction}: {hidden} kept units must be distinct "
                                     f"indices below the original size {original}, got {index.tolist()}")
                self.register_buffer("_kept" + direction_suffix(layer, direction), index, persistent=False)
        self.original_sizes = [list(sizes) for sizes in original_sizes]

    def extra_repr(self) -> str:
        sizes = self.hidden_size if self.hidden_size is not None else self.hidden_sizes
        text = f"{self.input_size}, {sizes}, num_layers={self.num_layers}"
        flags = {"bias": (self.bias, True), "batch_first": (self.batch_first, False),
                 "dropout": (self.dropout, 0.0), "bidirectional": (self.bidirectional, False)}
        return text + "".join(f", {name}={value}" for name, (value, default) in flags.items() if value != default)

    def _read_state(self, state: object, name: str, batch: int, batched: bool, like: Tensor) -> list[Tensor]:
        """One ``[1, B, H_i]`` tensor per layer-direction, from a stacked tensor or one entry per layer-direction."""
        flat, count = self._flat_sizes, len(self._flat_sizes)
        if state is None:
            return [like.new_zeros(1, batch, size) for size in flat]
        if isinstance(state, Tensor):
            if state.dim() != (3 if batched else 2):
                raise ValueError(f"{name} must be {3 if batched else 2}-D for {'' if batched else 'un'}batched "
                                 f"input, got shape {tuple(state.shape)}")
            entries = list((state if batched else state.unsqueeze(1)).split(1, 0))
        elif isinstance(state, (tuple, list)) and all(isinstance(entry, Tensor) for entry in state):
            entries = [entry.unsqueeze(0) if entry.dim() == (2 if batched else 1) else entry for entry in state]
            entries = [entry if batched or entry.dim() != 2 else entry.unsqueeze(1) for entry in entries]
        else:
            raise TypeError(f"{name} must be a tensor or a sequence of tensors, got {type(state).__name__}")
        if len(entries) != count:
            raise ValueError(f"{name} has {len(entries)} layer-directions, expected {count} (num_layers * directions)")
        if any(entry.dim() != 3 or entry.shape[:2] != (1, batch) for entry in entries):
            got = [tuple(entry.shape) for entry in entries]
            raise ValueError(f"{name} entries must be [1, {batch}, H] or [{batch}, H] for batch size {batch}, "
                             f"got {got}")
        original = [size for sizes in self.original_sizes or [] for size in sizes]
        given = [entry.shape[2] for entry in entries]
        result = []
        for index, (entry, size) in enumerate(zip(entries, given)):
            if size != flat[index] and original and size == original[index]:
                layer, direction = divmod(index, len(self.hidden_sizes[0]))
                kept = getattr(self, "_kept" + direction_suffix(layer, direction), None)
                if kept is not None:
                    entry = entry.index_select(2, kept)
                elif not bool(entry.any()):  # zeros at the original size: every kept unit starts at zero
                    entry = entry.new_zeros(1, batch, flat[index])
                else:
                    raise ValueError(f"{name} has the original sizes {original}, but which units this module kept "
                                     "is not recorded, so only an all-zero state of those sizes can be read")
            elif size != flat[index]:
                also = f" (or the original sizes {original})" if original else ""
                raise ValueError(f"{name} hidden sizes per layer-direction: expected {flat}{also}, got {given}")
            result.append(entry)
        return result

    def _run(self, input: Tensor | PackedSequence, hx: list[State | None]
             ) -> tuple[Tensor | PackedSequence, list[State]]:
        """Every layer-direction through its fused kernel; returns the output and each stacked final state."""
        layout, sorted_indices, unsorted_indices = None, None, None
        if isinstance(input, PackedSequence):
            x, batch_sizes, sorted_indices, unsorted_indices = input
            layout, batched = PackedLayout.of(input), True
        elif input.dim() in (2, 3):
            batched = input.dim() == 3
            x = input.transpose(0, 1) if batched and self.batch_first else input if batched else input.unsqueeze(1)
        else:
            raise ValueError(f"input must be [T, B, {self.input_size}], [T, {self.input_size}] or a PackedSequence, "
                             f"got shape {tuple(input.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input has {x.shape[-1]} features, the module expects input_size={self.input_size}")
        batch = layout.batch if layout is not None else x.shape[1]
        states = [permute(self._read_state(part, name, batch, batched, x), sorted_indices)
                  for part, name in zip(hx, ("h_0", "c_0"))]
        kernel, index = KERNELS[self.mode], 0
        finals: list[list[Tensor]] = [[] for _ in states]
        flip: Callable[[Tensor], Tensor] = ((lambda t: t.flip(0)) if layout is None
                                            else (lambda t: t.index_select(0, layout.reverse)))
        for layer, sizes in enumerate(self.hidden_sizes):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, True)
            outputs = []
            for direction in range(len(sizes)):
                sequence = flip(x) if direction else x
                state = tuple(part[index] for part in states) if self.mode == "lstm" else states[0][index]
                args = (sequence, state) if layout is None else (sequence, batch_sizes, state)
                result = kernel(*args, self._weights(layer, direction), self.bias, 1, 0.0, self.training, False,
                                *((False,) if layout is None else ()))
                output, last = (flip(result[0]) if direction else result[0]), list(result[1:])
                if self._unit_probe is not None:
                    output, last = self._probe(layer, direction, output, last, layout)
                outputs.append(output)
                for part, tensor in zip(finals, last):
                    part.append(tensor)
                index += 1
            x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, -1)
        stacked = [self._stack(permute(part, unsorted_indices), batched) for part in finals]
        if layout is not None:
            return PackedSequence(x, batch_sizes, sorted_indices, unsorted_indices), stacked
        return (x.transpose(0, 1) if self.batch_first else x) if batched else x.squeeze(1), stacked

    def _probe(self, layer: int, direction: int, output: Tensor, last: list[Tensor],
               layout: PackedLayout | None) -> tuple[Tensor, list[Tensor]]:
        """Apply ``_unit_probe``; packed input is shown padded with zeros, time-major, in the caller's batch order."""
        assert self._unit_probe is not None
        if layout is not None:
            output, last = layout.pad(output), permute(last, layout.unsorted_indices)
        output, state = self._unit_probe(layer, direction, output, tuple(last) if self.mode == "lstm" else last[0])
        last = [state] if isinstance(state, Tensor) else list(state)
        if layout is not None:
            output, last = layout.pack(output), permute(last, layout.sorted_indices)
        return output, last

    def _stack(self, part: list[Tensor], batched: bool) -> State:
        """``[L*D, B, H]`` like ``nn.LSTM`` when all sizes agree, else a tuple of ``[B, H_i]`` (unbatched ``[H_i]``)."""
        if self.hidden_size is not None:
            stacked = torch.cat(part, 0)
            return stacked if batched else stacked.squeeze(1)
        return tuple(tensor[0] if batched else tensor[0, 0] for tensor in part)

    @classmethod
    def _copy(cls: type[_Module], module: nn.Module, torch_type: type[nn.RNNBase], **extra: Any) -> _Module:
        """The drop-in of ``module``'s sizes, flags, device and dtype, holding a copy of its weights."""
        if isinstance(module, torch_type):
            if getattr(module, "proj_size", 0):
                raise ValueError(PROJ_SIZE_REFUSED)
            sizes: HiddenSizes = module.hidden_size
            layers: int | None = module.num_layers
        elif isinstance(module, cls):
            sizes, layers = module.hidden_sizes, None
        else:
            raise TypeError(f"{cls.__name__}.from_module takes an nn.{torch_type.__name__} or an isscli.nn."
                            f"{cls.__name__}, got {type(module).__name__}")
        weight = module.all_weights[0][0]
        new = cls(module.input_size, sizes, layers, bias=module.bias, batch_first=module.batch_first,
                  dropout=module.dropout, bidirectional=module.bidirectional, device=weight.device,
                  dtype=weight.dtype, **extra)
        new.load_state_dict(module.state_dict(), strict=True)
        new.train(module.training)
        if isinstance(module, _RecurrentBase) and module.original_sizes is not None:
            kept = [[getattr(module, "_kept" + direction_suffix(layer, direction)) for direction in range(len(sizes))]
                    for layer, sizes in enumerate(module.hidden_sizes)] if hasattr(module, "_kept_l0") else None
            new.set_kept_units(kept, module.original_sizes)
        return new


class LSTM(_RecurrentBase):
    """``nn.LSTM`` whose layers and directions may each have their own hidden size.

    Args:
        input_size: features per step of the input.
        hidden_size: an int (every layer and direction, as ``nn.LSTM``), or one entry per layer: an int, or
            for a bidirectional module a ``(forward, reverse)`` pair.
        num_layers: layers; inferred from a sequence ``hidden_size`` when left out (else 1).
        bias, batch_first, dropout, bidirectional, device, dtype: as ``nn.LSTM``.
        proj_size: must be 0 (projections are refused with a ValueError).

    Examples:
        >>> lstm = LSTM(8, [(40, 20), 32], bidirectional=True)
        >>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 8))
        >>> output.shape, [tuple(h.shape) for h in h_n]
        (torch.Size([5, 3, 64]), [(3, 40), (3, 20), (3, 32), (3, 32)])
    """

    mode = "lstm"
    proj_size = 0

    def __init__(self, input_size: int, hidden_size: HiddenSizes, num_layers: int | None = None, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Device = None, dtype: torch.dtype | None = None) -> None:
        if proj_size != 0:
            raise ValueError(PROJ_SIZE_REFUSED)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype)

    def forward(self, input: Tensor | PackedSequence, hx: tuple[State, State] | None = None
                ) -> tuple[Tensor | PackedSequence, tuple[State, State]]:
        """Run every layer-direction, as ``nn.LSTM.forward``.

        Args:
            input: ``[T, B, input_size]`` (``[B, T, …]`` with batch_first), unbatched ``[T, input_size]``, or a
                ``PackedSequence``.
            hx: ``None`` (zeros) or ``(h_0, c_0)``, each a ``[L*D, B, H]`` tensor (equal sizes only) or one tensor
                per layer-direction, ``[B, H_i]`` or ``[1, B, H_i]``; original sizes work after ``set_kept_units``.

        Returns:
            ``(output, (h_n, c_n))``; ``h_n``/``c_n`` are ``[L*D, B, H]`` tensors when all sizes agree, else
            tuples of ``[B, H_i]`` in ``nn.LSTM``'s order (layer-major, forward then reverse).
        """
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("hx of an LSTM must be a pair (h_0, c_0)")
        output, (h_n, c_n) = self._run(input, [None, None] if hx is None else list(hx))
        return output, (h_n, c_n)

    @classmethod
    def from_module(cls, module: nn.Module) -> LSTM:
        """The drop-in equivalent of an ``nn.LSTM`` (or a copy of an ``isscli.nn.LSTM``), weights copied.

        Examples:
            >>> LSTM.from_module(nn.LSTM(4, 6, num_layers=2)).hidden_sizes
            [[6], [6]]
        """
        return cls._copy(module, nn.LSTM)


class GRU(_RecurrentBase):
    """``nn.GRU`` whose layers and directions may each have their own hidden size (arguments as :class:`LSTM`).

    Examples:
        >>> output, h_n = GRU(8, [16, 4], batch_first=True)(torch.randn(3, 5, 8))
        >>> output.shape, h_n[-1].shape
        (torch.Size([3, 5, 4]), torch.Size([3, 4]))
    """

    mode = "gru"

    def forward(self, input: Tensor | PackedSequence, hx: State | None = None) -> tuple[Tensor | PackedSequence, State]:
        """As :meth:`LSTM.forward` with a single state: returns ``(output, h_n)``."""
        output, (h_n,) = self._run(input, [hx])
        return output, h_n

    @classmethod
    def from_module(cls, module: nn.Module) -> GRU:
        """The drop-in equivalent of an ``nn.GRU`` (or a copy of an ``isscli.nn.GRU``), weights copied."""
        return cls._copy(module, nn.GRU)


class RNN(_RecurrentBase):
    """``nn.RNN`` (tanh or relu) whose layers and directions may each have their own hidden size.

    Args:
        nonlinearity: ``"tanh"`` or ``"relu"`` (fourth positional argument, as in ``nn.RNN``); the rest as
            :class:`LSTM`.

    Examples:
        >>> RNN(8, 16, nonlinearity="relu").mode
        'rnn_relu'
    """

    def __init__(self, input_size: int, hidden_size: HiddenSizes, num_layers: int | None = None,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Device = None, dtype: torch.dtype | None = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.mode = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype)

    def forward(self, input: Tensor | PackedSequence, hx: State | None = None) -> tuple[Tensor | PackedSequence, State]:
        """As :meth:`LSTM.forward` with a single state: returns ``(output, h_n)``."""
        output, (h_n,) = self._run(input, [hx])
        return output, h_n

    def extra_repr(self) -> str:
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")

    @classmethod
    def from_module(cls, module: nn.Module) -> RNN:
        """The drop-in equivalent of an ``nn.RNN`` (or a copy of an ``isscli.nn.RNN``), weights copied."""
        return cls._copy(module, nn.RNN, nonlinearity=getattr(module, "nonlinearity", "tanh"))
