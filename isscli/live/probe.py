"""Which weight lines receive each unit: group testing over gradients (see :mod:`isscli.live.trace`).

Each layer-direction's outputs are replaced by fixed noise and some of its units zeroed; a weight line that
multiplies only h_k has an exactly zero gradient whenever unit k is zeroed. Pass ``A_b`` zeroes the units
whose bit b is set, pass ``B_b`` the others: a receiver of unit k is zero in exactly one of them for every
bit, and its pattern spells k. A set of H units costs 2 + 2·⌈log₂ H⌉ forward/backward passes (the last
zeroes every unit: a receiver must be zero there too). A line that depends on several units is zero in
neither pass of some bit and is not taken. The test runs twice, with other noise and another projection,
and a receiver must be found by both, so a line that a ReLU happened to silence in one pass is not taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from isscli.io.errors import IsscliError
from isscli.iss.spec.schema import TensorSlice
from isscli.live.model import DropIn, Member, TracedModel, call_model, output_tensors

# -- the probe --------------------------------------------------------------------------------------------------


class UnitProbe:
    """Replaces the outputs of the active layer-directions with fixed noise and zeroes the masked units; units
    marked in ``real`` keep what the layer computed."""

    def __init__(self, seed: int = 0) -> None:
        self.masks: dict[Member, Tensor] = {}
        self.real: dict[Member, Tensor] = {}
        self.seed = seed
        self.noise: dict[tuple[Member, int, tuple[int, ...]], Tensor] = {}

    def install(self, recurrent: Mapping[str, DropIn]) -> None:
        for name, module in recurrent.items():
            module._unit_probe = self.hook(name)

    def hook(self, name: str) -> Callable[[int, int, Tensor, Any], tuple[Tensor, Any]]:
        def probe(layer: int, direction: int, sequence: Tensor, state: Any) -> tuple[Tensor, Any]:
            member = Member(name, layer, direction)
            if member not in self.masks:
                return sequence, state
            if isinstance(state, tuple):
                return self.fill(member, 0, sequence), tuple(self.fill(member, i + 1, s) for i, s in enumerate(state))
            return self.fill(member, 0, sequence), self.fill(member, 1, state)
        return probe

    def fill(self, member: Member, slot: int, like: Tensor) -> Tensor:
        key = (member, slot, tuple(like.shape))
        if key not in self.noise:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + len(self.noise))
            self.noise[key] = torch.randn(like.shape, generator=generator).to(like)
        filled = self.noise[key] * self.masks[member].to(like)
        return torch.where(self.real[member].to(like.device), like, filled) if member in self.real else filled


def input_dims(model: nn.Module) -> dict[str, list[int]]:
    """The dims along which each parameter reads its input: where a receiver of unit k can sit.

    ``Linear``/``Embedding``/convolution weights and a recurrent module's ``weight_ih`` read features along
    dim 1 (a transposed convolution along dim 0); their other parameters never receive a unit; a parameter of
    any other module (the user's own ``x @ self.w``) may receive along any of its dims.
    """
    from isscli import nn as drop_in

    recurrent = (nn.RNNBase, drop_in.LSTM, drop_in.GRU, drop_in.RNN)
    dims = {}
    for prefix, module in model.named_modules():
        for attribute, parameter in module._parameters.items():
            if parameter is None or parameter.dim() < 2:
                continue
            name = f"{prefix}.{attribute}" if prefix else attribute
            if isinstance(module, recurrent):
                dims[name] = [1] if attribute.startswith("weight_ih") else []
            elif isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.Bilinear)):
                reading = [1, 2] if isinstance(module, nn.Bilinear) else [1]
                dims[name] = ([0] if getattr(module, "transposed", False) else reading) if attribute == "weight" else []
            else:
                dims[name] = list(range(parameter.dim()))
    return dims


def line_gradients(model: nn.Module, example_input: Any, dims: dict[str, list[int]], seed: int,
                   ) -> dict[tuple[str, int], Tensor]:
    """Σ|∂L/∂w| of every line along each receiving dim of every parameter, for L = a random projection (fixed by
    ``seed``) of the model's outputs."""
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        outputs = output_tensors(call_model(model, example_input))
        if not outputs:
            raise IsscliError("the model's forward returned no floating-point tensor",
                              "return the model's outputs (logits, predictions) from forward")
        generator = torch.Generator().manual_seed(seed)
        projections = [torch.randn(out.shape, generator=generator).to(out) for out in outputs]
        terms = [(out * weight).sum() for out, weight in zip(outputs, projections, strict=True)]
        loss = sum(terms[1:], terms[0])
        loss.backward()
    sums = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            continue
        grad = parameter.grad.detach().abs().double()
        for dim in dims.get(name, []):
            sums[name, dim] = grad.sum(dim=[d for d in range(grad.dim()) if d != dim])
    return sums


GradientPass = dict[tuple[str, int], Tensor]


def decode_receivers(baseline: GradientPass, passes: list[tuple[GradientPass, GradientPass]], all_zeroed: GradientPass,
                     components: int, skip: set[str]) -> list[TensorSlice]:
    """Lines whose zero pattern over the bit passes spells one unit (and which are zero when every unit is), as
    slices (see the module docstring)."""
    slices = []
    for (name, dim), base in baseline.items():
        if name in skip:
            continue
        owner = torch.zeros_like(base, dtype=torch.long)
        clean = (base > 0) & (all_zeroed[name, dim] == 0)
        for bit, (zeroing_ones, zeroing_zeros) in enumerate(passes):
            zero_a, zero_b = zeroing_ones[name, dim] == 0, zeroing_zeros[name, dim] == 0
            clean &= zero_a ^ zero_b
            owner += zero_a.long() << bit
        clean &= owner < components
        slices += lines_to_slices(name, dim, torch.nonzero(clean).flatten(), owner, components, base.numel())
    return slices


def lines_to_slices(name: str, dim: int, lines: Tensor, owner: Tensor, components: int, size: int,
                    ) -> list[TensorSlice]:
    """Receiver lines → slices ``offset + b·stride + k``: the offsets must not depend on k (units whose lines
    had no gradient, e.g. an all-zero unit, are filled in by that pattern)."""
    if lines.numel() == 0:
        return []
    by_unit: dict[int, list[int]] = {}
    for line in lines.tolist():
        by_unit.setdefault(int(owner[line]), []).append(line)
    counts = {len(found) for found in by_unit.values()}
    if len(counts) != 1:
        return []
    offsets = [{found[i] - unit for unit, found in by_unit.items()} for i in range(counts.pop())]
    if any(len(values) != 1 for values in offsets):
        return []
    starts = sorted(next(iter(values)) for values in offsets)
    if starts[0] < 0 or starts[-1] + components > size or any(b - a < components for a, b in zip(starts, starts[1:])):
        return []
    strides = {b - a for a, b in zip(starts, starts[1:])}
    if len(strides) == 1:
        return [TensorSlice(name, dim, offset=starts[0], blocks=len(starts), block_stride=strides.pop())]
    return [TensorSlice(name, dim, offset=start) for start in starts]


# -- the receivers of one set ---------------------------------------------------------------------------------


def bit_passes(components: int) -> int:
    return max(1, math.ceil(math.log2(components))) if components > 1 else 1


#: Independent repetitions of the group test (other noise, other projection); a receiver must appear in all, so a
#: line that a ReLU happened to silence in one pass is not taken.
REPETITIONS = 2


def group_test(traced: TracedModel, example_input: Any, components: int, zero: Callable[[Tensor | None, int], None],
               skip: set[str]) -> list[TensorSlice]:
    """The receivers of ``components`` units; ``zero(mask, seed)`` makes the next forward zero the units where
    ``mask`` is true (None: stop zeroing). Passes and decoding: see the module docstring."""
    units = torch.arange(components)
    found: list[set[TensorSlice]] = []
    try:
        for seed in range(REPETITIONS):
            def run(zeroed: Tensor, seed: int = seed) -> GradientPass:
                zero(zeroed, seed)
                return line_gradients(traced.copy, example_input, traced.dims, seed)

            baseline = run(units < 0)
            bits = range(bit_passes(components))
            passes = [(run((units >> bit & 1) == 1), run((units >> bit & 1) == 0)) for bit in bits]
            found.append(set(decode_receivers(baseline, passes, run(units >= 0), components, skip)))
    finally:
        zero(None, 0)
    common = set.intersection(*found)
    return [piece for piece in found[0] if piece in common]


def probe_receivers(traced: TracedModel, example_input: Any, active: list[Member], sizes: dict[Member, int],
                    skip: set[str]) -> list[TensorSlice]:
    """The weight lines that receive each unit of the active layer-directions."""
    probes: dict[int, UnitProbe] = {}

    def zero(mask: Tensor | None, seed: int) -> None:
        if mask is None:
            for module in traced.recurrent.values():
                module._unit_probe = None
            return
        probe = probes.setdefault(seed, UnitProbe(seed))
        probe.install(traced.recurrent)
        probe.masks = {member: (~mask).float() for member in active}

    return group_test(traced, example_input, sizes[active[0]], zero, skip)


def embedding_chain(traced: TracedModel, example_input: Any, receivers: list[TensorSlice], components: int,
                    ) -> list[TensorSlice]:
    """With tied weights a receiver column is also an embedding's output channel: what receives that channel
    must lose it too (the paper's tied LM: the first layer's ``weight_ih`` column k)."""
    names = {id(p): n for n, p in traced.copy.named_parameters()}
    chained = []
    for module in traced.copy.modules():
        if not isinstance(module, nn.Embedding):
            continue
        name = names[id(module.weight)]
        canonical = traced.aliases.get(name, name)
        for piece in [r for r in receivers if r.tensor == canonical and r.dim == 1 and r.blocks == 1]:
            found = channel_receivers(traced, example_input, module, piece.offset, components, {name})
            chained += [traced.canonical(p) for p in found]
    return chained


def channel_receivers(traced: TracedModel, example_input: Any, module: nn.Embedding, offset: int, components: int,
                      skip: set[str]) -> list[TensorSlice]:
    """Receivers of output channels ``offset … offset + components`` of an embedding."""
    state: dict[str, Tensor | None] = {"mask": None}

    def zero_channels(_module: nn.Embedding, _args: tuple[Any, ...], output: Tensor) -> Tensor:
        kept = state["mask"]
        return output if kept is None else output * kept.to(output)

    def zero(mask: Tensor | None, seed: int) -> None:
        state["mask"] = None
        if mask is not None:
            kept = torch.ones(module.weight.shape[1])
            kept[offset + torch.nonzero(mask).flatten()] = 0
            state["mask"] = kept

    handle = module.register_forward_hook(zero_channels)
    try:
        return group_test(traced, example_input, components, zero, skip)
    finally:
        handle.remove()
