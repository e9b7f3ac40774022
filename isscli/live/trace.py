"""The ISS groups of a live ``nn.Module``, found by running the user's own forward on an example input.

Parameter names cannot say where unit k of a recurrent layer goes: to a head after mean pooling, to both
directions of a tagger's next LSTM, to a decoder through a bridge, into a tied embedding. So isscli asks
the model. On a copy in which every ``nn.LSTM/GRU/RNN`` is the equivalent :mod:`isscli.nn` module, each
layer-direction's outputs (its output sequence and its final state) are replaced by fixed noise, some of
its units are zeroed, and the gradient of a random projection of the model's outputs is taken. A weight
line (a column of a ``Linear``, of the next layer's ``weight_ih``, of a tied embedding…) that multiplies
only h_k has an exactly zero gradient whenever unit k is zeroed, and a nonzero one otherwise.

Group testing keeps it short: pass ``A_b`` zeroes the units whose bit b is set, pass ``B_b`` the others.
A receiver of unit k is zero in exactly one of them for every bit, and its pattern spells k, so a set of
H units costs 2 + 2·⌈log₂ H⌉ forward/backward passes (the last zeroes every unit: a receiver must be zero
there too). A line that depends on several units is zero in neither pass of some bit and is not taken. The
test runs twice, with other noise and another projection, and a receiver must be found by both, so a line
that a ReLU happened to silence in one pass is not taken for one.

Then every set is checked: with all its receiver lines zeroed, two different noises in its units must
give the same model outputs. If they do not, h_k reaches the result by a path that is not a weight
line (a LayerNorm over units, attention scores, a sum over units) and removing units would change the
model, so isscli refuses the model by name rather than guess.

Two recurrent modules share one set when one's final state is handed unchanged to the other as its
initial state (an encoder–decoder): unit k of the encoder's layer l *is* unit k of the decoder's layer l.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from isscli.errors import IsscliError
from isscli.spec.schema import GroupSpec, IssSet, TensorSlice

#: Gate blocks per cell kind (isscli.nn's ``mode``).
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
#: Relative change of the outputs that still counts as "unchanged" in the final check (float32 rounding).
CHECK_TOLERANCE = 1e-6


@dataclass(frozen=True, order=True)
class Member:
    """One layer-direction of one recurrent module (``module`` is its qualified name in the model)."""

    module: str
    layer: int
    direction: int

    def tensor(self, kind: str) -> str:
        """The parameter's name in the model, as ``nn.LSTM`` names it: ``lstm.weight_hh_l1_reverse``."""
        prefix = f"{self.module}." if self.module else ""
        return f"{prefix}{kind}_l{self.layer}{'_reverse' if self.direction else ''}"

    @property
    def label(self) -> str:
        return f"{self.module or 'rnn'}.l{self.layer}{'_reverse' if self.direction else ''}"


@dataclass
class TracedModel:
    """What tracing found: the probing copy and, per ISS set, the layer-directions it spans."""

    copy: nn.Module
    recurrent: dict[str, nn.Module]
    sets: list[list[Member]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # untied copy's name → the model's (tied) name
    dims: dict[str, list[int]] = field(default_factory=dict)  # the dims of each parameter that may receive units

    def canonical(self, piece: TensorSlice) -> TensorSlice:
        """The slice under the model's own parameter name."""
        return dataclasses.replace(piece, tensor=self.aliases.get(piece.tensor, piece.tensor))

    def copies(self, name: str) -> list[str]:
        """The names a model parameter has in the untied copy."""
        return [name, *(alias for alias, target in self.aliases.items() if target == name)]


# -- calling the user's model ----------------------------------------------------------------------------------


def call_model(model: nn.Module, example_input: Any) -> Any:
    """``model(*x)`` for a tuple, ``model(**x)`` for a dict, else ``model(x)``."""
    if isinstance(example_input, tuple):
        return model(*example_input)
    if isinstance(example_input, dict):
        return model(**example_input)
    return model(example_input)


def output_tensors(result: Any) -> list[Tensor]:
    """Every floating-point tensor in a model's result (nested tuples, lists, dicts, packed sequences)."""
    if isinstance(result, Tensor):
        return [result] if result.is_floating_point() else []
    if isinstance(result, nn.utils.rnn.PackedSequence):
        return output_tensors(result.data)
    if isinstance(result, dict):
        return [t for value in result.values() for t in output_tensors(value)]
    if isinstance(result, (tuple, list)):
        return [t for value in result for t in output_tensors(value)]
    return []


def recurrent_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``nn.LSTM/GRU/RNN`` (or :mod:`isscli.nn` module) by qualified name; cells and projections refused."""
    from isscli import nn as drop_in

    found = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNCellBase):
            raise IsscliError(
                f"`{name}` is an {type(module).__name__}: isscli shrinks whole recurrent layers "
                "(nn.LSTM/GRU/RNN or isscli.nn.LSTM/GRU/RNN), not a loop over a cell",
                "run the sequence through an nn.LSTM/GRU/RNN, or write a group spec by hand")
        if isinstance(module, nn.LSTM) and module.proj_size:
            raise IsscliError(f"`{name}` is an nn.LSTM with proj_size={module.proj_size}: LSTMs with projections "
                              "are not supported", "use proj_size=0, or write a group spec by hand")
        if isinstance(module, (nn.RNNBase, drop_in.LSTM, drop_in.GRU, drop_in.RNN)):
            found[name] = module
    if not found:
        raise IsscliError("the model has no nn.LSTM, nn.GRU or nn.RNN module",
                          "isscli learns ISS in recurrent layers; check that you passed the right model")
    return found


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` is (inside Sequential/ModuleList too)."""
    parent_name, _, attribute = name.rpartition(".")
    if not name:
        raise IsscliError("the model is itself a recurrent module", "wrap it in an nn.Module with a head")
    setattr(root.get_submodule(parent_name) if parent_name else root, attribute, new)


def as_drop_in(module: nn.Module) -> nn.Module:
    """The equivalent :mod:`isscli.nn` module (weights copied)."""
    from isscli import nn as drop_in

    for torch_kind, kind in ((nn.LSTM, drop_in.LSTM), (nn.GRU, drop_in.GRU), (nn.RNN, drop_in.RNN)):
        if isinstance(module, (torch_kind, kind)):
            return kind.from_module(module)
    raise TypeError(f"not a recurrent module: {type(module).__name__}")


def layer_sizes(module: nn.Module) -> list[list[int]]:
    """Units per layer and direction of an ``nn.LSTM/GRU/RNN`` or :mod:`isscli.nn` module."""
    if hasattr(module, "hidden_sizes"):
        return [list(sizes) for sizes in module.hidden_sizes]
    return [[module.hidden_size] * (2 if module.bidirectional else 1) for _ in range(module.num_layers)]


def untie(model: nn.Module) -> dict[str, str]:
    """Give every second holder of a shared parameter (a decoder tied to an embedding) its own copy, so that each
    use has its own gradient; returns copy name → the name ``named_parameters`` gives the shared one."""
    first: dict[int, str] = {}
    aliases = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for attribute, parameter in list(module._parameters.items()):
            if parameter is None:
                continue
            name = f"{prefix}.{attribute}" if prefix else attribute
            if id(parameter) in first and first[id(parameter)] != name:
                setattr(module, attribute, nn.Parameter(parameter.detach().clone()))
                aliases[name] = first[id(parameter)]
            else:
                first.setdefault(id(parameter), name)
    return aliases


def members(name: str, module: nn.Module) -> list[Member]:
    return [Member(name, layer, direction) for layer, sizes in enumerate(layer_sizes(module))
            for direction in range(len(sizes))]


# -- the probe --------------------------------------------------------------------------------------------------


class UnitProbe:
    """Replaces the outputs of the active layer-directions with fixed noise and zeroes the masked units."""

    def __init__(self, seed: int = 0) -> None:
        self.masks: dict[Member, Tensor] = {}
        self.seed = seed
        self.noise: dict[tuple[Member, int, tuple[int, ...]], Tensor] = {}

    def install(self, recurrent: dict[str, nn.Module]) -> None:
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
        return self.noise[key] * self.masks[member].to(like)


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
        loss = sum((out * weight).sum() for out, weight in zip(outputs, projections, strict=True))
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


# -- couplings: a final state handed on as an initial state -------------------------------------------------------


def state_parts(state: Any, count: int) -> list[Tensor] | None:
    """The per-layer-direction ``h`` tensors of a state in any accepted format (a tensor or a sequence)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return list(state.unbind(0)) if state.dim() >= 2 and state.shape[0] == count else None
    if isinstance(state, (tuple, list)) and len(state) == count and all(isinstance(s, Tensor) for s in state):
        return list(state)
    return None


def hidden_part(module: nn.Module, state: Any) -> Any:
    """``h`` of an LSTM's ``(h, c)``; the state itself otherwise."""
    return state[0] if module.mode == "lstm" and isinstance(state, (tuple, list)) else state


def storage_key(tensor: Tensor) -> tuple[int, tuple[int, ...]]:
    return tensor.data_ptr(), tuple(tensor.shape)


def find_couplings(traced: TracedModel, example_input: Any) -> list[tuple[Member, Member]]:
    """Pairs (producer, consumer): the consumer's initial state of that layer-direction *is* the producer's final
    state. A nonzero initial state that isscli cannot follow is refused."""
    produced: dict[tuple[int, tuple[int, ...]], Member] = {}
    received: list[tuple[str, Any]] = []
    handles = []
    for name, module in traced.recurrent.items():
        count = len(members(name, module))

        def before(module: nn.Module, args: tuple, kwargs: dict, name: str = name) -> None:
            state = kwargs.get("hx", args[1] if len(args) > 1 else None)
            received.append((name, state))

        def after(module: nn.Module, args: tuple, output: Any, name: str = name, count: int = count) -> None:
            parts = state_parts(hidden_part(module, output[1]), count) or []
            for member, part in zip(members(name, module), parts):
                produced[storage_key(part)] = member

        handles += [module.register_forward_pre_hook(before, with_kwargs=True), module.register_forward_hook(after)]
    try:
        with torch.no_grad():
            call_model(traced.copy, example_input)
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for name, state in received:
        module = traced.recurrent[name]
        own = members(name, module)
        parts = state_parts(hidden_part(module, state), len(own))
        if state is not None and parts is None:
            raise IsscliError(f"the initial state given to `{name}` has a shape isscli does not know",
                              "pass (h_0, c_0) as nn.LSTM takes it")
        for member, part in zip(own, parts or []):
            source = produced.get(storage_key(part))
            if source is not None:
                pairs.append((source, member))
            elif bool((part != 0).any()):
                raise IsscliError(
                    f"the initial state of `{member.label}` is computed from other values, which isscli cannot follow",
                    "pass zeros, or another recurrent module's final state unchanged (an encoder's (h_n, c_n)), "
                    "or write a group spec by hand")
    return pairs


def joined_sets(traced: TracedModel, couplings: list[tuple[Member, Member]]) -> list[list[Member]]:
    """Layer-directions grouped into ISS sets: coupled ones together (union-find), in model order."""
    parent: dict[Member, Member] = {m: m for name, module in traced.recurrent.items() for m in members(name, module)}

    def root(member: Member) -> Member:
        while parent[member] != member:
            member = parent[member]
        return member

    for a, b in couplings:
        parent[root(b)] = root(a)
    groups: dict[Member, list[Member]] = {}
    for member in parent:
        groups.setdefault(root(member), []).append(member)
    return list(groups.values())


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


def channel_receivers(traced: TracedModel, example_input: Any, module: nn.Module, offset: int, components: int,
                      skip: set[str]) -> list[TensorSlice]:
    """Receivers of output channels ``offset … offset + components`` of a plain module."""
    state: dict[str, Tensor | None] = {"mask": None}

    def zero_channels(_module: nn.Module, _args: tuple, output: Tensor) -> Tensor:
        return output if state["mask"] is None else output * state["mask"].to(output)

    def zero(mask: Tensor | None, seed: int) -> None:
        state["mask"] = None
        if mask is not None:
            state["mask"] = torch.ones(module.weight.shape[1])
            state["mask"][offset + torch.nonzero(mask).flatten()] = 0

    handle = module.register_forward_hook(zero_channels)
    try:
        return group_test(traced, example_input, components, zero, skip)
    finally:
        handle.remove()


def structural_slices(member: Member, module: nn.Module) -> list[TensorSlice]:
    """What the recurrent module itself says of unit k: its gate rows (producers) and its recurrent column."""
    hidden = module.hidden_sizes[member.layer][member.direction]
    rows = {"dim": 0, "offset": 0, "blocks": GATES[module.mode], "block_stride": hidden, "role": "producer"}
    slices = [TensorSlice(member.tensor("weight_ih"), **rows), TensorSlice(member.tensor("weight_hh"), **rows)]
    if module.bias:
        slices += [TensorSlice(member.tensor(kind), penalize=False, **rows) for kind in ("bias_ih", "bias_hh")]
    slices.append(TensorSlice(member.tensor("weight_hh"), dim=1))
    if member.layer + 1 < len(module.hidden_sizes):
        offset = 0 if member.direction == 0 else module.hidden_sizes[member.layer][0]
        slices += [TensorSlice(Member(member.module, member.layer + 1, d).tensor("weight_ih"), dim=1, offset=offset)
                   for d in range(len(module.hidden_sizes[member.layer + 1]))]
    return slices


@contextmanager
def recorded_states(traced: TracedModel) -> Iterator[set[int]]:
    """The storages of every final state the recurrent modules return meanwhile: a model that returns its state
    (a stateful LM) returns the units themselves, which shrink with the model rather than pass through weights."""
    storages: set[int] = set()

    def record(module: nn.Module, args: tuple, output: Any) -> None:
        state = output[1] if module.mode != "lstm" else output[1][0:2]
        for part in (state if isinstance(state, (tuple, list)) else (state,)):
            for tensor in (part if isinstance(part, (tuple, list)) else (part,)):
                storages.add(tensor.untyped_storage().data_ptr())

    handles = [module.register_forward_hook(record) for module in traced.recurrent.values()]
    try:
        yield storages
    finally:
        for handle in handles:
            handle.remove()


# -- the check --------------------------------------------------------------------------------------------------


@torch.no_grad()
def check_explained(traced: TracedModel, example_input: Any, active: list[Member], sizes: dict[Member, int],
                    receivers: list[TensorSlice]) -> None:
    """With every receiver line zeroed, the set's units must no longer reach the outputs (module docstring)."""
    parameters = dict(traced.copy.named_parameters())
    names = {name for piece in receivers for name in traced.copies(piece.tensor)}
    saved = {name: parameters[name].detach().clone() for name in names}
    try:
        for piece in receivers:
            for name in traced.copies(piece.tensor):
                index = piece.indices(sizes[active[0]]).flatten().to(parameters[name].device)
                parameters[name].index_fill_(piece.dim, index, 0)
        results = []
        for seed in (11, 12):
            probe = UnitProbe(seed)
            probe.install(traced.recurrent)
            probe.masks = {member: torch.ones(sizes[member]) for member in active}
            with recorded_states(traced) as states:
                outputs = output_tensors(call_model(traced.copy, example_input))
            results.append([out for out in outputs if out.untyped_storage().data_ptr() not in states])
    finally:
        for module in traced.recurrent.values():
            module._unit_probe = None
        for name, value in saved.items():
            parameters[name].copy_(value)
    for first, second in zip(*results, strict=True):
        scale = float(first.abs().max()) if first.numel() else 0.0
        if first.numel() and float((first - second).abs().max()) > CHECK_TOLERANCE * max(scale, 1.0):
            labels = ", ".join(m.label for m in active)
            raise IsscliError(
                f"the units of {labels} reach the model's outputs by a path that is not a weight column "
                "(e.g. a LayerNorm or softmax over units, attention scores, a sum over units), so removing units "
                "would change the model", "write a group spec by hand for the layers isscli can shrink")


# -- the whole model --------------------------------------------------------------------------------------------


def trace_model(model: nn.Module, example_input: Any) -> TracedModel:
    """A probing copy of ``model`` (recurrent modules as :mod:`isscli.nn` ones, eval mode) and its ISS sets."""
    recurrent = recurrent_modules(model)
    probing = copy.deepcopy(model)
    for name in recurrent:
        replace_module(probing, name, as_drop_in(probing.get_submodule(name)))
    probing.eval()
    traced = TracedModel(probing, {name: probing.get_submodule(name) for name in recurrent}, aliases=untie(probing))
    traced.dims = input_dims(probing)
    traced.sets = joined_sets(traced, find_couplings(traced, example_input))
    return traced


def derive_module_spec(model: nn.Module, example_input: Any) -> GroupSpec:
    """The ISS group spec of a live model: one set per layer-direction (or per coupled group of them), with
    every weight line that receives its units, named as in ``model.named_parameters()``.

    Args:
        model: any ``nn.Module`` holding ``nn.LSTM/GRU/RNN`` (or :mod:`isscli.nn`) modules.
        example_input: what ``model`` takes: one tensor, a tuple of positional arguments or a dict of
            keyword arguments; a small batch is enough (its values matter only through which weights they reach).

    Returns:
        A :class:`~isscli.spec.GroupSpec`; raises :class:`~isscli.errors.IsscliError` where the model routes
        units in a way isscli cannot shrink exactly.

    Example:
        >>> spec = derive_module_spec(model, torch.randn(4, 20, 8))
        >>> [(s.name, s.components) for s in spec.sets]
    """
    traced = trace_model(model, example_input)
    sets = []
    for group in traced.sets:
        sizes = {m: traced.recurrent[m.module].hidden_sizes[m.layer][m.direction] for m in group}
        if len(set(sizes.values())) != 1:
            raise IsscliError(f"{', '.join(m.label for m in group)} share their state but not their size",
                              "check the model")
        own = {m.tensor(kind) for m in group for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        slices = [piece for m in group for piece in structural_slices(m, traced.recurrent[m.module])]
        receivers = [traced.canonical(p) for p in probe_receivers(traced, example_input, group, sizes, own)]
        receivers += embedding_chain(traced, example_input, receivers, sizes[group[0]])
        slices = list(dict.fromkeys(slices + receivers))
        check_explained(traced, example_input, group, sizes, [s for s in slices if s.role == "receiver"])
        sets.append(IssSet("+".join(m.label for m in group), sizes[group[0]], slices))
    return GroupSpec(sets, "derived by isscli from the live model: receivers found by probing its forward")


def named_members(spec: GroupSpec) -> Iterator[tuple[int, str]]:
    """(set index, producer tensor) for every ``weight_hh`` producer slice: which layer-directions a set spans."""
    for index, iss in enumerate(spec.sets):
        for piece in iss.slices:
            if piece.role == "producer" and piece.dim == 0 and "weight_hh_l" in piece.tensor:
                yield index, piece.tensor
