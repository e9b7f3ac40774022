"""Compaction of a live ``nn.Module``: the user's own class, physically smaller, checked on an example input.

:func:`compact_module` removes every ISS component whose receivers are all zero (exactly what
:func:`isscli.iss.surgery.compact` removes from a checkpoint), then rebuilds the model around the smaller
tensors: each recurrent module that changes becomes the :mod:`isscli.nn` module of the new per-layer,
per-direction sizes (same parameter names, same forward contract), each other module gets its smaller
weights and its size attributes (``Linear.in_features``, ``Embedding.embedding_dim``…), tied weights stay
tied. The user's ``forward`` then runs unchanged, and the result is kept only if it computes what the
input model computes on the example input.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from isscli import nn as drop_in
from isscli.io.errors import IsscliError
from isscli.iss.equivalence import compare as equivalence_compare
from isscli.iss.spec.schema import GroupSpec, check_spec
from isscli.iss.surgery import SetChange, compact as compact_tensors
from isscli.iss.verification import CompactionMismatch
from isscli.live.model import (
    DROP_INS,
    DropIn,
    Member,
    Recurrent,
    call_model,
    drop_in_kind,
    evaluating,
    layer_sizes,
    members,
    named_outputs,
    parameter_tensors,
    recurrent_modules,
    replace_module,
    tied_names,
)
from isscli.live.trace import derive_module_spec

#: Largest allowed output difference per unit of the largest |output| (as ``isscli compact``).
TOLERANCE = 1e-5


@dataclass
class ModuleCompaction:
    """A compacted copy of the user's model and what changed.

    ``max_difference`` is the largest |output difference| on the example input over the largest |output|;
    ``not_compared`` names outputs whose shape changed (returned recurrent states), which cannot be compared.
    """

    model: nn.Module
    spec: GroupSpec
    sets: list[SetChange]
    parameters_before: int
    parameters_after: int
    max_difference: float
    compared: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    @property
    def units(self) -> dict[str, int]:
        """Units kept per ISS set."""
        return {change.name: change.after for change in self.sets}


@torch.no_grad()
def evaluated(model: nn.Module, example_input: Any) -> dict[str, Tensor]:
    """The model's outputs in eval mode (its own mode restored after)."""
    with evaluating(model):
        return dict(named_outputs(call_model(model, example_input)))


class RecurrentOptions(TypedDict):
    """What a rebuilt recurrent module keeps of the module it replaces (all but its sizes)."""

    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    device: torch.device
    dtype: torch.dtype


def rebuilt_recurrent(module: Recurrent, prefix: str, tensors: Mapping[str, Tensor]) -> DropIn:
    """The :mod:`isscli.nn` module of the sizes ``tensors`` hold for ``module``'s parameters."""
    sizes: list[list[int]] = [[] for _ in layer_sizes(module)]
    for member in members("", module):
        sizes[member.layer].append(int(tensors[prefix + member.tensor("weight_hh")].shape[1]))
    layers = [pair[0] if len(pair) == 1 else tuple(pair) for pair in sizes]
    weight = module.get_parameter("weight_hh_l0")
    options = RecurrentOptions(bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                               bidirectional=module.bidirectional, device=weight.device, dtype=weight.dtype)
    input_size = int(tensors[prefix + "weight_ih_l0"].shape[1])
    kind = drop_in_kind(module)
    rebuilt: DropIn
    if kind is drop_in.RNN:
        nonlinearity = "relu" if "relu" in module.mode.lower() else "tanh"
        rebuilt = drop_in.RNN(input_size, layers, len(layers), nonlinearity=nonlinearity, **options)
    else:
        rebuilt = kind(input_size, layers, len(layers), **options)
    rebuilt.load_state_dict({name: tensors[prefix + name] for name, _ in rebuilt.named_parameters()})
    return rebuilt


def kept_units(spec: GroupSpec, sets: list[SetChange]) -> dict[str, list[int]]:
    """Original indices of the units each layer-direction kept, by its ``weight_hh`` name."""
    kept = {}
    for iss, change in zip(spec.sets, sets, strict=True):
        for piece in iss.slices:
            if piece.role == "producer" and piece.dim == 0 and "weight_hh_l" in piece.tensor:
                kept[piece.tensor] = change.kept
    return kept


def fix_size_attributes(module: nn.Module) -> None:
    """Keep a module's size attributes true to its (smaller) weights."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor):
        return
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = weight.shape
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = weight.shape
    elif isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        module.out_channels, module.in_channels = weight.shape[0], weight.shape[1] * module.groups


def shrink_parameters(model: nn.Module, tensors: dict[str, Tensor], skip: set[str]) -> None:
    """Give every module the smaller version of each parameter it holds; a tied parameter stays one object."""
    by_identity = {id(p): name for name, p in model.named_parameters()}
    replacements: dict[int, nn.Parameter] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        if any(prefix == s or prefix.startswith(s + ".") for s in skip):
            continue
        for attribute, parameter in list(module._parameters.items()):
            name = by_identity.get(id(parameter)) if parameter is not None else None
            if name is None or tensors[name].shape == parameter.shape:
                continue
            if id(parameter) not in replacements:
                replacements[id(parameter)] = nn.Parameter(tensors[name].clone(), requires_grad=parameter.requires_grad)
            setattr(module, attribute, replacements[id(parameter)])
            fix_size_attributes(module)


def compare(before: dict[str, Tensor], after: dict[str, Tensor]) -> tuple[float, list[str], list[str]]:
    """Largest |difference| / largest |output| over the outputs of equal shape (NaN if any is not finite, so the
    check fails); which were and were not compared."""
    compared = [name for name in before if name in after and before[name].shape == after[name].shape]
    skipped = [name for name in before if name not in compared]
    if not compared:
        raise IsscliError("no output of the compacted model has the shape of the input model's, so nothing could "
                          "be compared", "return the model's predictions from forward")
    pairs = [(before[n].double(), after[n].double()) for n in compared if before[n].numel()]
    worst, scale = equivalence_compare(pairs) if pairs else (0.0, 0.0)
    return worst / max(scale, 1e-30), compared, skipped


def compact_module(model: nn.Module, example_input: Any, spec: GroupSpec | None = None,
                   tolerance: float = TOLERANCE) -> ModuleCompaction:
    """Remove the zero ISS groups of a live model: a physically smaller copy of the user's own class.

    Every unit whose receivers are all zero goes, with its gate rows and its columns in every receiver;
    the input model is not modified. The copy is returned only if its outputs on ``example_input`` equal the
    input model's to ``tolerance`` × the largest |output| (eval mode); else
    :class:`~isscli.iss.verification.CompactionMismatch` is raised.

    Args:
        model: the pruned model (zero groups, e.g. after :class:`~isscli.learn.your_loop.loop.IssTraining`).
        example_input: what ``model`` takes (a tensor, a tuple of arguments or a dict of keyword arguments).
        spec: the ISS groups; by default derived from the model and the example input
            (:func:`~isscli.live.trace.derive_module_spec`).
        tolerance: the largest relative output difference accepted.

    Returns:
        A :class:`ModuleCompaction`: ``.model`` is the smaller model, ``.units`` the units kept per set.

    Example::

        small = compact_module(model, torch.randn(4, 20, 8))  # e.g. after IssTraining zeroed some units
        small.model, small.units, small.parameters_before, small.parameters_after, small.max_difference
    """
    given = spec is not None
    spec = spec if spec is not None else derive_module_spec(model, example_input)
    tensors = parameter_tensors(model)
    check_spec(spec, tensors)
    compacted = compact_tensors(tensors, spec)
    result = copy.deepcopy(model)
    kept = kept_units(spec, compacted.sets)
    rebuilt = set()
    for name, module in recurrent_modules(result).items():
        prefix = f"{name}." if name else ""
        own = [prefix + n for n, _ in module.named_parameters()]
        if all(compacted.tensors[n].shape == tensors[n].shape for n in own):
            continue
        smaller = rebuilt_recurrent(module, prefix, compacted.tensors)
        units = [kept.get(Member(name, m.layer, m.direction).tensor("weight_hh")) for m in members(name, module)]
        if all(u is not None for u in units):
            remember_kept_units(smaller, module, regrouped(units, module))
        replace_module(result, name, smaller)
        rebuilt.add(name)
    shrink_parameters(result, compacted.tensors, rebuilt)
    before = evaluated(model, example_input)
    try:
        after = evaluated(result, example_input)
    except Exception as error:  # the user's own forward on new sizes: say what broke, in one line
        first_line = str(error).splitlines()[0] if str(error) else ""
        hint = ("the spec given may miss a receiver: derive it from the model (spec=None)" if given else
                "read sizes from tensors (h.shape[-1]), not numbers fixed at construction")
        raise IsscliError(f"the model's own forward failed on the compacted model ({type(error).__name__}: "
                          f"{first_line})", hint) from error
    difference, compared, skipped = compare(before, after)
    if not difference <= tolerance:
        raise CompactionMismatch(f"the compacted model's outputs differ from the input model's by {difference:.3g} "
                                 f"of the largest |output| (allowed {tolerance:g})",
                                 "the spec misses a receiver: derive it from the model (spec=None)")
    return ModuleCompaction(result, spec, compacted.sets, compacted.parameters_before, compacted.parameters_after,
                            difference, compared, skipped)


def remember_kept_units(smaller: DropIn, module: Recurrent, kept: list[list[list[int]]]) -> None:
    """Which units of the first, dense model ``smaller`` holds, so a dense-sized state still fits: ``kept`` indexes
    ``module``'s units, and a module compacted before maps them on to its own dense original."""
    original = module.original_sizes if isinstance(module, DROP_INS) else None
    if original is None:
        smaller.set_kept_units(kept, layer_sizes(module))
    elif hasattr(module, "_kept_l0"):
        earlier = [[getattr(module, f"_kept_l{layer}{'_reverse' if d else ''}") for d in range(len(sizes))]
                   for layer, sizes in enumerate(kept)]
        smaller.set_kept_units([[earlier[layer][d][torch.tensor(units, dtype=torch.long)]
                                 for d, units in enumerate(sizes)] for layer, sizes in enumerate(kept)], original)
    else:
        smaller.set_kept_units(None, original)


def regrouped(units: list[list[int] | None], module: Recurrent) -> list[list[list[int]]]:
    """A flat per-layer-direction list → per layer, per direction."""
    per_layer = 2 if module.bidirectional else 1
    return [[list(u or []) for u in units[i:i + per_layer]] for i in range(0, len(units), per_layer)]


def load_compacted(model: nn.Module, state_dict: dict[str, Tensor]) -> nn.Module:
    """Load a compacted checkpoint back into the user's own (dense-sized) class, in place.

    Every recurrent module whose sizes differ becomes the :mod:`isscli.nn` module of the checkpoint's sizes,
    every other parameter takes the checkpoint's shape (with its module's size attributes), tied parameters
    stay tied; then the weights are loaded with ``strict=True``. ``state_dict`` may hold a tied weight once
    (as isscli's safetensors files do) or under each name (as ``torch.save(model.state_dict())`` does).

    Args:
        model: a freshly built instance of the user's class (the dense sizes).
        state_dict: the compacted tensors, by ``model.named_parameters()`` names (``isscli.load(path).tensors``
            or ``safetensors.torch.load_file(path)``).

    Returns:
        ``model`` itself, now of the checkpoint's sizes.

    Example::

        model = load_compacted(RNNModel("LSTM", 10000, 650, 650, 2), isscli.load("small.safetensors").tensors)
    """
    aliases = tied_names(model)
    stored = {aliases.get(name, name): tensor for name, tensor in state_dict.items()}  # a tie under any of its names
    tensors = {name: stored.get(name) for name, _ in model.named_parameters()}
    missing = [name for name, tensor in tensors.items() if tensor is None]
    if missing:
        raise IsscliError(f"the checkpoint has no tensor {missing[0]!r} of the model", "check that it is this model's")
    full = {name: tensor for name, tensor in tensors.items() if tensor is not None}
    for name, module in recurrent_modules(model).items():
        prefix = f"{name}." if name else ""
        if any(full[prefix + n].shape != p.shape for n, p in module.named_parameters()):
            smaller = rebuilt_recurrent(module, prefix, full)
            smaller.set_kept_units(None, layer_sizes(module))  # zeros of the dense sizes (init_hidden) still fit
            replace_module(model, name, smaller)
    shrink_parameters(model, full, set())
    names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    buffers = {name: tensor for name, tensor in state_dict.items() if name not in names}
    model.load_state_dict({**buffers, **full, **{alias: full[name] for alias, name in aliases.items()}}, strict=True)
    return model
