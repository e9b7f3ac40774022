"""Property tests: the compacted model computes exactly what the pruned model computes."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from isscli.iss.equivalence import max_output_difference
from isscli.iss.spec import check_spec, derive_spec
from isscli.iss.surgery import alive_components, compact, prune, removable_components, zero_components
from isscli.models import build_model, model_tensors
from isscli.models.registry import config_after_surgery
from tests.strategies import architectures


@st.composite
def removals(draw: st.DrawFn, sizes: list[list[int]]) -> list[list[int]]:
    """Per layer-direction, the units to remove: none, all but one, or any proper subset."""
    chosen = []
    for layer in sizes:
        for size in layer:
            kind = draw(st.sampled_from(["none", "all-but-one", "subset"]))
            units = list(range(size))
            if kind == "none":
                chosen.append([])
            elif kind == "all-but-one":
                survivor = draw(st.sampled_from(units))
                chosen.append([u for u in units if u != survivor])
            else:
                subset = draw(st.lists(st.sampled_from(units), unique=True, max_size=size - 1))
                chosen.append(sorted(subset))
    return chosen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compacted_outputs_equal_pruned_outputs(data: st.DataObject) -> None:
    config = data.draw(architectures())
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    model = build_model(config)
    tensors = model_tensors(model)
    spec = derive_spec(tensors)
    check_spec(spec, tensors)
    removed = data.draw(removals(model.config.hidden_sizes))
    through_prune = data.draw(st.booleans())
    for iss, units in zip(spec.sets, removed):
        if through_prune:  # shrink the groups, then let `prune` find them by their norm
            for piece in iss.penalized:
                index = piece.indices(iss.components)[:, units].flatten()
                tensors[piece.tensor].index_copy_(
                    piece.dim, index, tensors[piece.tensor].index_select(piece.dim, index) * 1e-9
                )
        else:
            mask = torch.zeros(iss.components, dtype=torch.bool)
            mask[units] = True
            zero_components(tensors, iss, mask)
    if through_prune:
        tensors = prune(tensors, spec, group_threshold=1e-6).tensors
    pruned = build_model(config)
    pruned.load_state_dict(tensors, strict=False)

    result = compact(tensors, spec)
    new_config = config_after_surgery(model.config, result.tensors)
    assert new_config is not None
    compacted = build_model(new_config)
    state = dict(result.tensors)
    if model.config.tie_weights or model.config.family == "rhn":
        state["decoder.weight"] = state["encoder.weight"]
    compacted.load_state_dict(state, strict=True)

    expected_sizes = [
        size - len(units) for size, units in zip((s for layer in model.config.hidden_sizes for s in layer), removed)
    ]
    assert [s for layer in new_config.hidden_sizes for s in layer] == expected_sizes
    assert [change.after for change in result.sets] == expected_sizes
    assert result.parameters_after <= result.parameters_before
    assert max_output_difference(pruned, compacted, model.config) <= 1e-5


def test_a_nonzero_receiver_keeps_its_unit() -> None:
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": 11, "embedding_size": 4, "hidden_sizes": [3, 3]})
    tensors = model_tensors(model)
    spec = derive_spec(tensors)
    first = spec.sets[0]
    zero_components(tensors, first, torch.tensor([True, True, False]))
    assert removable_components(tensors, first).tolist() == [True, True, False]
    tensors["rnn.weight_ih_l1"][0, 1] = 0.5  # unit 1 now feeds layer 2 again
    assert removable_components(tensors, first).tolist() == [True, False, False]
    assert [change.after for change in compact(tensors, spec).sets] == [2, 3]


def test_prune_zeroes_exactly_the_groups_at_or_below_threshold() -> None:
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": 11, "embedding_size": 4, "hidden_sizes": [4, 3]})
    tensors = model_tensors(model)
    spec = derive_spec(tensors)
    first = spec.sets[0]
    for piece in first.penalized:  # shrink unit 2's group to a norm of about 1e-3
        index = piece.indices(first.components)[:, 2]
        tensors[piece.tensor].index_fill_(piece.dim, index, 1e-6)
    zero_components(tensors, first, torch.tensor([False, True, False, False]))
    result = prune(tensors, spec, group_threshold=1e-2)
    assert alive_components(result.tensors, first).tolist() == [True, False, False, True]
    assert [(c.before, c.after) for c in result.sets] == [(3, 2), (3, 3)]
    assert result.sparsity_after > result.sparsity_before
    assert alive_components(tensors, first).tolist() == [True, False, True, True]  # input untouched
    untouched = [n for n in tensors if n not in spec.tensor_names()]
    assert all(torch.equal(tensors[n], result.tensors[n]) for n in untouched)


def test_weight_threshold_zeroes_small_single_weights() -> None:
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": 11, "embedding_size": 4, "hidden_sizes": [4]})
    tensors = model_tensors(model)
    spec = derive_spec(tensors)
    tensors["rnn.weight_hh_l0"][0, 0] = 1e-5
    result = prune(tensors, spec, group_threshold=0.0, weight_threshold=1e-4)
    assert result.tensors["rnn.weight_hh_l0"][0, 0] == 0
    assert float(tensors["rnn.weight_hh_l0"][0, 0]) > 0  # the input is untouched
    assert result.tensors["encoder.weight"].equal(tensors["encoder.weight"])
