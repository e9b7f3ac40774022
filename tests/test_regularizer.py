"""The group-Lasso regularizer against a hand computation of paper Eq. 2–4, L1 and thresholding."""

from __future__ import annotations

import pytest
import torch

from isscli.io.errors import SpecError
from isscli.iss.regularizer import EPSILON, GroupLasso
from isscli.iss.spec import derive_spec
from isscli.iss.spec.schema import GroupSpec, IssSet, TensorSlice
from isscli.iss.surgery import alive_components, group_norms, group_sum_of_squares
from isscli.models import build_model, model_tensors

GATES = 4


def small_lm(seed: int = 0, **changes: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = {"family": "lm", "vocab_size": 7, "embedding_size": 3, "hidden_sizes": [[2], [3]], "cell": "lstm"}
    config.update(changes)
    return build_model(config)


def hand_groups(sizes: tuple[int, int]) -> list[list[list[tuple[str, object]]]]:
    """Per set, per component: the (tensor, index) pieces of its group vector, written out by hand.

    Layer l's component k owns row g·H+k of each gate block g of weight_ih_l and weight_hh_l,
    column k of weight_hh_l (which crosses those rows: 4 weights in two pieces) and column k of
    whatever receives h_k next (weight_ih_l1 for layer 0, the decoder for layer 1).
    """
    sets = []
    for layer, hidden in enumerate(sizes):
        receiver = "rnn.weight_ih_l1" if layer == 0 else "decoder.weight"
        components = []
        for k in range(hidden):
            rows = [gate * hidden + k for gate in range(GATES)]
            components.append([
                (f"rnn.weight_ih_l{layer}", (rows, slice(None))),
                (f"rnn.weight_hh_l{layer}", (rows, slice(None))),
                (f"rnn.weight_hh_l{layer}", (slice(None), k)),
                (receiver, (slice(None), k)),
            ])
        sets.append(components)
    return sets


def test_penalty_and_gradient_equal_a_hand_computation() -> None:
    model = small_lm()
    parameters = dict(model.named_parameters())
    spec = derive_spec(model_tensors(model))
    spec.sets[1].multiplier = 2.5
    regularizer = GroupLasso(spec, parameters)
    penalty = regularizer.penalty()
    regularizer.add_gradient_(1.0)

    weights = {name: p.detach() for name, p in parameters.items()}
    expected_penalty = 0.0
    expected_grad = {name: torch.zeros_like(w) for name, w in weights.items()}
    for multiplier, components in zip((1.0, 2.5), hand_groups((2, 3)), strict=True):
        for pieces in components:
            squares = sum(float(weights[name][index].pow(2).sum()) for name, index in pieces)
            norm = (EPSILON + squares) ** 0.5
            expected_penalty += multiplier * norm
            for name, index in pieces:  # d/dw sqrt(ε + Σw²) = w/‖w‖, once per piece that holds w
                expected_grad[name][index] += multiplier * weights[name][index] / norm

    assert penalty == pytest.approx(expected_penalty, rel=1e-6)
    for name, parameter in parameters.items():
        grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        assert torch.allclose(grad, expected_grad[name], atol=1e-6), name
    # the overlap: weight_hh_l0[row g·2+k, column k] sits in two pieces of component k
    overlap = expected_grad["rnn.weight_hh_l0"][0, 0]
    norm0 = float(torch.sqrt(EPSILON + regularizer.squared_norms()[0].detach()))
    assert float(overlap) == pytest.approx(2 * float(weights["rnn.weight_hh_l0"][0, 0]) / norm0, rel=1e-5)
    assert parameters["rnn.bias_ih_l0"].grad is None and parameters["encoder.weight"].grad is None
    before = parameters["decoder.weight"].grad.clone()
    regularizer.add_gradient_(0.5)  # gradients accumulate, scaled by λ
    assert torch.allclose(parameters["decoder.weight"].grad, 1.5 * before, atol=1e-7)


@pytest.mark.parametrize("config", [
    {"tie_weights": True, "embedding_size": 3, "hidden_sizes": [[2], [3]]},
    {"family": "classifier", "cell": "gru", "num_classes": 3, "hidden_sizes": [[4, 2], [3, 5]], "vocab_size": 9},
])
def test_group_norms_match_the_surgery_module(config: dict[str, object]) -> None:
    model = small_lm(1, **config)
    tensors = model_tensors(model)
    spec = derive_spec(tensors)
    regularizer = GroupLasso(spec, dict(model.named_parameters()))
    expected = torch.cat([group_norms(tensors, iss, EPSILON) for iss in spec.sets])
    assert torch.allclose(regularizer.norms(), expected, rtol=1e-5)
    # the in-place gradient equals autograd through surgery's gather-based group sums
    parameters = dict(model.named_parameters())
    reference = sum(torch.sqrt(group_sum_of_squares(parameters, iss) + EPSILON).sum() for iss in spec.sets)
    reference.backward()
    autograd = {name: p.grad.clone() for name, p in parameters.items() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    regularizer.add_gradient_(1.0)
    assert autograd.keys() == {name for name, p in parameters.items() if p.grad is not None}
    for name, grad in autograd.items():
        assert torch.allclose(parameters[name].grad, grad, atol=1e-6), name
    assert regularizer.alive() == {iss.name: int(alive_components(tensors, iss).sum()) for iss in spec.sets}


def test_l1_sums_absolute_values_of_the_regularized_tensors_only() -> None:
    model = small_lm()
    parameters = dict(model.named_parameters())
    regularizer = GroupLasso(derive_spec(model_tensors(model)), parameters)
    names = ["decoder.weight", "rnn.weight_hh_l0", "rnn.weight_hh_l1", "rnn.weight_ih_l0", "rnn.weight_ih_l1"]
    assert regularizer.tensor_names == names
    with torch.no_grad():
        expected = sum(float(parameters[name].abs().sum()) for name in names)
    assert regularizer.l1() == pytest.approx(expected, rel=1e-6)
    regularizer.add_l1_gradient_(0.25)
    for name in names:
        assert torch.equal(parameters[name].grad, 0.25 * torch.sign(parameters[name].detach()))
    assert parameters["encoder.weight"].grad is None


def test_thresholding_makes_whole_groups_exactly_zero() -> None:
    model = small_lm()
    parameters = dict(model.named_parameters())
    spec = derive_spec(model_tensors(model))
    with torch.no_grad():
        for parameter in parameters.values():
            parameter.copy_(torch.where(torch.rand_like(parameter) < 0.5, 0.5, -0.5))
        for name, index in hand_groups((2, 3))[0][1]:  # every weight of layer 0's component 1 is tiny
            parameters[name][index] = 3e-5
        parameters["rnn.bias_ih_l0"].fill_(3e-5)  # not regularized, so never thresholded
    regularizer = GroupLasso(spec, parameters)
    assert regularizer.alive() == {"rnn.l0": 2, "rnn.l1": 3}

    regularizer.threshold_(1e-4)

    tensors = model_tensors(model)
    assert alive_components(tensors, spec.sets[0]).tolist() == [True, False]
    assert float(group_norms(tensors, spec.sets[0])[1]) == 0.0
    assert regularizer.alive() == {"rnn.l0": 1, "rnn.l1": 3}
    assert torch.all(parameters["rnn.bias_ih_l0"] == 3e-5)
    assert int((tensors["decoder.weight"] == 0).sum()) == 0  # large weights are left alone


def test_thresholding_zeroes_exactly_the_weights_below_tau() -> None:
    model = small_lm()
    parameters = dict(model.named_parameters())
    regularizer = GroupLasso(derive_spec(model_tensors(model)), parameters)
    tau = 1e-4
    at = torch.tensor(tau, dtype=torch.float32)
    just_below = float(torch.nextafter(at, torch.tensor(0.0)))
    values = torch.tensor([tau, -tau, just_below, -just_below, 0.0, 2e-4, -3e-5])
    with torch.no_grad():
        parameters["decoder.weight"].view(-1)[: len(values)] = values
    regularizer.threshold_(tau)
    kept = parameters["decoder.weight"].detach().view(-1)[: len(values)]
    assert kept.tolist() == pytest.approx([float(at), -float(at), 0.0, 0.0, 0.0, 2e-4, 0.0])


def test_a_spec_naming_a_missing_tensor_is_refused() -> None:
    model = small_lm()
    spec = GroupSpec([IssSet("x", 2, [TensorSlice("nowhere.weight", dim=0)])])
    with pytest.raises(SpecError, match="nowhere.weight"):
        GroupLasso(spec, dict(model.named_parameters()))


def test_penalty_cost_does_not_grow_with_python_loops_over_components() -> None:
    """One index tensor per (tensor, dim), built once: the per-batch work is a few tensor calls."""
    model = small_lm(hidden_sizes=[[40], [30]], embedding_size=5)
    regularizer = GroupLasso(derive_spec(model_tensors(model)), dict(model.named_parameters()))
    # rows of ih_l0, hh_l0, ih_l1, hh_l1; columns of hh_l0, ih_l1, hh_l1, decoder: 70 components, 8 groups
    assert len(regularizer.groups) == 8
    assert regularizer.owners.numel() == sum(g.lines.numel() for g in regularizer.groups)


def test_per_set_strengths_scale_each_set_alone() -> None:
    """λ per set (the controller's): set s adds per_set[s] × its own group-Lasso gradient."""
    model = small_lm(2)
    parameters = dict(model.named_parameters())
    spec = derive_spec(model_tensors(model))
    regularizer = GroupLasso(spec, parameters)
    alone = []
    for index in range(len(spec.sets)):
        model.zero_grad(set_to_none=True)
        GroupLasso(GroupSpec([spec.sets[index]]), parameters).add_gradient_(1.0)
        alone.append({name: p.grad.clone() for name, p in parameters.items() if p.grad is not None})
    model.zero_grad(set_to_none=True)
    regularizer.add_gradient_(2.0, per_set=[0.5, 3.0])
    for name, parameter in parameters.items():
        expected = sum(2.0 * weight * grads.get(name, torch.zeros_like(parameter))
                       for weight, grads in zip((0.5, 3.0), alone, strict=True))
        got = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        assert torch.allclose(got, expected, atol=1e-6), name
    with pytest.raises(ValueError, match="per-set"):
        regularizer.add_gradient_(1.0, per_set=[1.0])


def test_component_sums_and_line_filling_follow_the_groups() -> None:
    model = small_lm(3)
    parameters = dict(model.named_parameters())
    spec = derive_spec(model_tensors(model))
    regularizer = GroupLasso(spec, parameters)
    ones = {name: torch.ones_like(p) for name, p in parameters.items()}
    lengths = [iss.group_length({n: tuple(p.shape) for n, p in parameters.items()}) for iss in spec.sets]
    counts = regularizer.component_sums(ones).split(regularizer.sizes)
    assert [c.tolist() for c in counts] == [[float(lengths[0])] * 2, [float(lengths[1])] * 3]
    assert torch.equal(regularizer.entries(), regularizer.component_sums(ones))
    chosen = torch.tensor([False, True, False, False, True])  # rnn.l0 unit 1, rnn.l1 unit 2
    with torch.no_grad():
        regularizer.fill_lines_(parameters, chosen, 0.0)
    tensors = model_tensors(model)
    assert alive_components(tensors, spec.sets[0]).tolist() == [True, False]
    assert alive_components(tensors, spec.sets[1]).tolist() == [True, True, False]
    assert regularizer.split(regularizer.component_sums(ones))["rnn.l1"].shape == (3,)
