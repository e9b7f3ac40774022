"""The ISS groups of a live ``nn.Module``, found by running the user's own forward on an example input.

Parameter names cannot say where unit k of a recurrent layer goes: to a head after mean pooling, to both
directions of a tagger's next LSTM, to a decoder through a bridge, into a tied embedding. So isscli asks
the model. On a copy in which every ``nn.LSTM/GRU/RNN`` is the equivalent :mod:`isscli.nn` module, each
layer-direction's outputs (its output sequence and its final state) are replaced by fixed noise, some of
its units are zeroed, and the gradient of a random projection of the model's outputs is taken: a weight
line (a column of a ``Linear``, of the next layer's ``weight_ih``, of a tied embedding…) that multiplies
only h_k has an exactly zero gradient whenever unit k is zeroed (:mod:`isscli.live.probe`).

Then every set is checked, half of its units at a time: with their receiver lines zeroed, two different
noises in those units (the other half computing as usual) must give the same model outputs. If they do
not, h_k reaches the result by a path that is not a weight line (a LayerNorm over units, attention scores,
a sum over units) and removing units would change the model, so isscli refuses the model by name rather
than guess.

Two recurrent modules share one set when one's final state is handed unchanged to the other as its
initial state (an encoder–decoder): unit k of the encoder's layer l *is* unit k of the decoder's layer l.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from isscli.io.errors import IsscliError
from isscli.iss.spec.schema import GroupSpec, IssSet, TensorSlice
from isscli.live.model import (
    DropIn,
    Member,
    TracedModel,
    as_drop_in,
    call_model,
    members,
    output_tensors,
    recurrent_modules,
    replace_module,
    untie,
)
from isscli.live.probe import UnitProbe, embedding_chain, input_dims, probe_receivers
from isscli.models.config import GATES_PER_CELL

#: Relative change of the outputs that still counts as "unchanged" in the final check (float32 rounding).
CHECK_TOLERANCE = 1e-6


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


def hidden_part(module: DropIn, state: Any) -> Any:
    """``h`` of an LSTM's ``(h, c)``; the state itself otherwise."""
    return state[0] if module.mode == "lstm" and isinstance(state, (tuple, list)) else state


def storage_key(tensor: Tensor) -> tuple[int, tuple[int, ...]]:
    return tensor.data_ptr(), tuple(tensor.shape)


def find_couplings(traced: TracedModel, example_input: Any) -> list[tuple[Member, Member]]:
    """Pairs (producer, consumer): the consumer's initial state of that layer-direction *is* the producer's final
    state. A nonzero initial state that isscli cannot follow is refused."""
    produced: dict[tuple[int, tuple[int, ...]], Member] = {}
    received: list[tuple[str, Any]] = []
    alive: list[Tensor] = []
    handles = []
    for name, module in traced.recurrent.items():
        count = len(members(name, module))

        def before(module: DropIn, args: tuple[Any, ...], kwargs: Mapping[str, object], name: str = name) -> None:
            state = kwargs.get("hx", args[1] if len(args) > 1 else None)
            received.append((name, state))

        def after(module: DropIn, args: tuple[Any, ...], output: Any, name: str = name, count: int = count) -> None:
            parts = state_parts(hidden_part(module, output[1]), count) or []
            for member, part in zip(members(name, module), parts):
                produced[storage_key(part)] = member
                alive.append(part)  # a freed state's address could come back as another tensor's

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


def structural_slices(member: Member, module: DropIn) -> list[TensorSlice]:
    """What the recurrent module itself says of unit k: its gate rows (producers) and its recurrent column."""
    hidden = module.hidden_sizes[member.layer][member.direction]

    def rows(kind: str, penalize: bool = True) -> TensorSlice:
        return TensorSlice(member.tensor(kind), dim=0, offset=0, blocks=GATES_PER_CELL[module.mode],
                           block_stride=hidden, role="producer", penalize=penalize)

    slices = [rows("weight_ih"), rows("weight_hh")]
    if module.bias:
        slices += [rows(kind, penalize=False) for kind in ("bias_ih", "bias_hh")]
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
    alive: list[Tensor] = []  # held until the end: a freed state's memory could hold an output, at the same address

    def record(module: DropIn, args: tuple[Any, ...], output: Any) -> None:
        state = output[1] if module.mode != "lstm" else output[1][0:2]
        for part in (state if isinstance(state, (tuple, list)) else (state,)):
            for tensor in (part if isinstance(part, (tuple, list)) else (part,)):
                storages.add(tensor.untyped_storage().data_ptr())
                alive.append(tensor)

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
    """With the receiver lines of half the units zeroed, noise in those units must not reach the outputs.

    Half at a time (even units, then odd), while the other half keeps its real values: a path that mixes units
    (attention scores, a LayerNorm) then carries the noise into units whose lines are not zeroed.
    """
    components = sizes[active[0]]
    for parity in (0, 1):
        chosen = torch.arange(components) % 2 == parity
        if bool(chosen.any()):
            results = [outputs_with_noise(traced, example_input, active, receivers, chosen, seed) for seed in (11, 12)]
            for first, second in zip(*results, strict=True):
                scale = float(first.abs().max()) if first.numel() else 0.0
                if first.numel() and float((first - second).abs().max()) > CHECK_TOLERANCE * max(scale, 1.0):
                    labels = ", ".join(m.label for m in active)
                    raise IsscliError(
                        f"the units of {labels} reach the model's outputs by a path that is not a weight column "
                        "(e.g. a LayerNorm or softmax over units, attention scores, a sum over units), so removing "
                        "units would change the model", "write a group spec by hand for the layers isscli can shrink")


def outputs_with_noise(traced: TracedModel, example_input: Any, active: list[Member], receivers: list[TensorSlice],
                       chosen: Tensor, seed: int) -> list[Tensor]:
    """The model's outputs (less returned recurrent states) with the chosen units' receiver lines zeroed and their
    outputs replaced by noise of ``seed``; the weights are restored after."""
    parameters = dict(traced.copy.named_parameters())
    names = {name for piece in receivers for name in traced.copies(piece.tensor)}
    saved = {name: parameters[name].detach().clone() for name in names}
    units = torch.nonzero(chosen).flatten()
    probe = UnitProbe(seed)
    try:
        for piece in receivers:
            for name in traced.copies(piece.tensor):
                index = piece.indices(len(chosen))[:, units].flatten().to(parameters[name].device)
                parameters[name].index_fill_(piece.dim, index, 0)
        probe.install(traced.recurrent)
        probe.masks = {member: torch.ones(len(chosen)) for member in active}
        probe.real = {member: ~chosen for member in active}
        with recorded_states(traced) as states:
            outputs = output_tensors(call_model(traced.copy, example_input))
        return [out for out in outputs if out.untyped_storage().data_ptr() not in states]
    finally:
        for module in traced.recurrent.values():
            module._unit_probe = None
        for name, value in saved.items():
            parameters[name].copy_(value)


# -- the whole model --------------------------------------------------------------------------------------------


def trace_model(model: nn.Module, example_input: Any) -> TracedModel:
    """A probing copy of ``model`` (recurrent modules as :mod:`isscli.nn` ones, eval mode) and its ISS sets."""
    recurrent = recurrent_modules(model)
    probing = copy.deepcopy(model)
    drop_ins = {name: as_drop_in(probing.get_submodule(name)) for name in recurrent}
    for name, module in drop_ins.items():
        replace_module(probing, name, module)
    probing.eval()
    traced = TracedModel(probing, drop_ins, aliases=untie(probing))
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
        A :class:`~isscli.iss.spec.GroupSpec`; raises :class:`~isscli.io.errors.IsscliError` where the model routes
        units in a way isscli cannot shrink exactly.

    Examples:
        >>> class Tagger(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lstm, self.head = nn.LSTM(8, 6, batch_first=True), nn.Linear(6, 3)
        ...     def forward(self, x):
        ...         return self.head(self.lstm(x)[0])
        >>> spec = derive_module_spec(Tagger(), torch.randn(4, 20, 8))
        >>> [(s.name, s.components) for s in spec.sets]
        [('lstm.l0', 6)]
        >>> [(piece.tensor, piece.dim) for piece in spec.sets[0].slices if piece.role == "receiver"]
        [('lstm.weight_hh_l0', 1), ('head.weight', 1)]
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
