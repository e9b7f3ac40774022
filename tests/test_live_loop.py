"""IssTraining: ISS in the user's own loop reaches exact sizes, adds exactly λ·∂R/∂w, resumes bit for bit."""

from __future__ import annotations

import doctest
import io
import json
import math
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch import nn

import isscli.learn.your_loop.loop
from isscli.io.errors import IsscliError
from isscli.iss.spec import GroupSpec, derive_spec
from isscli.iss.surgery import compact, group_sum_of_squares
from isscli.learn.controller.targets import TargetOrigin, fraction_grid, receiver_units, sizes_at
from isscli.learn.run import TrainingDiverged
from isscli.learn.your_loop.loop import IssTraining, compacted_parameters, sizes_for_budget

SAMPLES, BATCH, STEPS = 2048, 64, 16


class Forecaster(nn.Module):
    """A user's own model: a 2-layer LSTM read at its last step by a linear head."""

    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, hidden, 2, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])


def waves(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-harmonic waves of random frequency and phase; predict the next value (noise 0.1, an MSE floor of 0.01)."""
    generator = torch.Generator().manual_seed(seed)
    frequency = 0.3 + 0.5 * torch.rand(count, 1, generator=generator)
    angle = frequency * torch.arange(STEPS + 1.0) + 2 * math.pi * torch.rand(count, 1, generator=generator)
    wave = torch.sin(angle) + 0.5 * torch.sin(2 * angle)
    inputs = torch.stack([wave[:, :STEPS], torch.cos(angle[:, :STEPS]), frequency.expand(count, STEPS),
                          0.1 * torch.randn(count, STEPS, generator=generator)], dim=-1)
    return inputs, wave[:, STEPS:] + 0.1 * torch.randn(count, 1, generator=generator)


TRAIN, VALID = waves(SAMPLES, 0), waves(256, 1)


def batches(epoch: int, samples: int = SAMPLES) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(samples, generator=torch.Generator().manual_seed(epoch))
    for index in order.split(BATCH):
        yield TRAIN[0][index], TRAIN[1][index]


def valid_loss(model: nn.Module) -> float:
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(VALID[0]), VALID[1]))


def spec_of(model: nn.Module) -> GroupSpec:
    return derive_spec({name: p.detach() for name, p in model.named_parameters()})


def make(optimizer: str = "adam", seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = Forecaster()
    if optimizer == "adam":
        return model, torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, iss: IssTraining | None, epochs: int,
          samples: int = SAMPLES, stop: tuple[int, int] | None = None, watch: list | None = None) -> list[float]:
    """The user's loop (IssTraining's three calls where ``iss`` is given); it continues at ``iss.epoch``/``iss.batch``
    and returns before batch ``stop`` = (epoch, batch)."""
    losses = []
    first_epoch, skip = (iss.epoch, iss.batch) if iss is not None else (1, 0)
    for epoch in range(first_epoch, epochs + 1):
        for index, (x, y) in enumerate(batches(epoch, samples), start=1):
            if epoch == first_epoch and index <= skip:
                continue
            if stop == (epoch, index):
                return losses
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            if iss is not None:
                iss.after_backward(loss)
            optimizer.step()
            if iss is not None:
                iss.after_step()
                if watch is not None:
                    watch.append((iss.phase, iss.units))
        losses.append(valid_loss(model))
        if iss is not None:
            iss.end_epoch(losses[-1])
        if stop == (epoch + 1, 0):
            return losses
    return losses


# -- size targets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_target_hidden_ends_exactly_at_the_targets_and_close_to_the_dense_model(optimizer: str) -> None:
    model, opt = make(optimizer)
    spec = spec_of(model)
    targets = {"lstm.l0": 10, "lstm.l1": 6}
    iss = IssTraining(model, opt, batches_per_epoch=SAMPLES // BATCH, spec=spec, target_hidden=[10, 6],
                      prune_epochs=4, recover_epochs=3)
    watch: list = []
    pruned = train(model, opt, iss, iss.epochs, watch=watch)
    dense_model, dense_opt = make(optimizer)
    dense = train(dense_model, dense_opt, None, 7)

    assert iss.units == targets and receiver_units(spec, dict(model.named_parameters())) == targets
    assert iss.phase == "recover" and set(iss.lambdas.values()) == {0.0}
    assert all(units[name] >= targets[name] for _, units in watch for name in targets)  # never below, any batch
    recovery = [units for phase, units in watch if phase == "recover"]
    assert len(recovery) >= 3 * SAMPLES // BATCH and all(units == targets for units in recovery)
    assert pruned[-1] <= 2 * dense[-1], (pruned, dense)
    summary = iss.summary()
    assert summary.optimizer == optimizer and summary.optimizer_class == type(opt).__name__
    assert summary.lowest_units == targets and summary.epochs == 7
    assert summary.compacted_parameters == compact({n: p.detach() for n, p in model.named_parameters()},
                                                   spec).parameters_after
    assert summary.optimizer_reset_at_epoch == 4  # recovery starts with a fresh optimizer state...
    if optimizer == "adam":  # ...rebuilt by the recovery's own steps since
        assert {int(state["step"]) for state in opt.state.values()} == {3 * SAMPLES // BATCH}


def test_the_optimizer_state_is_kept_at_recovery_when_asked() -> None:
    model, opt = make("adam")
    iss = IssTraining(model, opt, batches_per_epoch=8, spec=spec_of(model), target_hidden=[12, 8],
                      prune_epochs=1, recover_epochs=1, reset_optimizer=False)
    train(model, opt, iss, 1, samples=8 * BATCH)
    assert iss.phase == "recover" and iss.summary().optimizer_reset_at_epoch is None
    assert all(int(state["step"]) == 8 for state in opt.state.values())  # not restarted


def test_target_params_fits_the_budget_and_one_more_unit_would_not(tmp_path: Path) -> None:
    model, opt = make()
    spec = spec_of(model)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    limit = 3000
    log = tmp_path / "iss.log.jsonl"
    iss = IssTraining(model, opt, batches_per_epoch=8, spec=spec, target_params=limit, prune_epochs=2,
                      recover_epochs=1, log=log)
    targets = iss.targets
    assert targets is not None
    count = compacted_parameters(spec, shapes, targets)
    grid = fraction_grid([24, 24])
    kept = Fraction(targets["lstm.l0"], 24)
    larger = dict(zip(targets, sizes_at(grid[grid.index(kept) + 1], [24, 24])))
    assert count <= limit < compacted_parameters(spec, shapes, larger)
    assert sizes_for_budget(spec, shapes, {"lstm.l0": 24, "lstm.l1": 24}, limit) == (targets, count)

    train(model, opt, iss, iss.epochs, samples=8 * BATCH)
    after = compact({n: p.detach() for n, p in model.named_parameters()}, spec)
    assert iss.units == targets and after.parameters_after == count
    assert iss.summary().origin == TargetOrigin("target_params", limit, limit=limit, parameters=count)
    kinds = [json.loads(line)["kind"] for line in log.read_text(encoding="utf-8").splitlines()]
    assert kinds[0] == "start" and kinds.count("epoch") == 3 and "recover" in kinds  # the controller's own records


@pytest.mark.parametrize(("stop", "position"), [((3, 0), (3, 0)), ((2, 5), (2, 4))])
def test_resume_from_state_dict_continues_bit_for_bit(stop: tuple[int, int], position: tuple[int, int]) -> None:
    arguments = {"target_hidden": {"lstm.l0": 12}, "prune_epochs": 2, "recover_epochs": 1}
    samples = 10 * BATCH

    def start() -> tuple[nn.Module, torch.optim.Optimizer, IssTraining]:
        model, opt = make()
        return model, opt, IssTraining(model, opt, batches_per_epoch=10, spec=spec_of(model), **arguments)

    model, opt, uninterrupted = start()
    train(model, opt, uninterrupted, 3, samples)
    whole = {name: p.detach().clone() for name, p in model.named_parameters()}

    model, opt, iss = start()
    train(model, opt, iss, 3, samples, stop=stop)
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iss": iss.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved)  # weights_only: plain values and tensors
    model, opt, resumed = start()
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["iss"])
    assert (resumed.epoch, resumed.batch) == position  # where the loop goes on
    train(model, opt, resumed, 3, samples)

    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), whole[name]), name
    assert resumed.units == {"lstm.l0": 12, "lstm.l1": 24}
    assert resumed.summary().to_json() == uninterrupted.summary().to_json()


# -- a fixed λ ------------------------------------------------------------------------------------


def test_a_fixed_lambda_and_tau_zero_whole_groups() -> None:
    model, opt = make("sgd")
    iss = IssTraining(model, opt, spec=spec_of(model), group_lasso=0.15, tau=1e-2)
    before = iss.regularizer.penalty()
    train(model, opt, iss, 2, samples=16 * BATCH)
    alive = iss.regularizer.alive()  # group vectors with a nonzero weight
    assert iss.regularizer.penalty() < before / 10
    assert all(0 < count < 24 for count in alive.values()), alive
    assert all(0 < iss.units[name] <= alive[name] for name in alive)  # τ may zero a unit's receivers first
    assert iss.phase == "fixed" and iss.epochs is None and iss.lambdas == {"lstm.l0": 0.15, "lstm.l1": 0.15}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_zero_lambda_and_tau_change_nothing(optimizer: str) -> None:
    model, opt = make(optimizer)
    train(model, opt, None, 1, samples=4 * BATCH)
    plain = [p.detach().clone() for p in model.parameters()]
    model, opt = make(optimizer)
    iss = IssTraining(model, opt, spec=spec_of(model))
    assert iss.tau == 0 and iss.l1 == 0 and iss.group_lasso == 0
    train(model, opt, iss, 1, samples=4 * BATCH)
    assert all(torch.equal(a, b.detach()) for a, b in zip(plain, model.parameters()))


def test_the_added_gradient_is_lambda_times_the_gradient_of_the_group_lasso_formula() -> None:
    model, opt = make()
    spec = spec_of(model)
    lam, strength = 0.013, 0.0007
    iss = IssTraining(model, opt, spec=spec, group_lasso=lam, l1=strength)
    x, y = next(batches(1))
    nn.functional.mse_loss(model(x), y).backward()
    data = {name: p.grad.clone() for name, p in model.named_parameters()}
    iss.after_backward()

    live = {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}
    penalty = sum(iss_set.multiplier * torch.sqrt(1e-8 + group_sum_of_squares(live, iss_set)).sum()
                  for iss_set in spec.sets)
    names = iss.regularizer.tensor_names
    objective = lam * penalty + strength * sum(live[name].abs().sum() for name in names)
    objective.backward()
    for name, p in model.named_parameters():
        expected = live[name].grad if live[name].grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(p.grad - data[name], expected, rtol=1e-5, atol=1e-8, msg=name)
    assert sum(float(live[name].grad.abs().sum()) for name in names) > 0


def test_losses_that_cannot_double_are_left_out_and_a_nan_loss_stops() -> None:
    model, opt = make()
    iss = IssTraining(model, opt, batches_per_epoch=4, spec=spec_of(model), target_hidden=12, prune_epochs=1)
    iss.after_step()  # before any after_backward: fine
    iss.after_backward(torch.tensor(0.0))
    iss.after_step()
    iss.end_epoch(-1.0)
    assert iss.summary().losses_skipped == 2 and iss.epoch == 2
    with pytest.raises(TrainingDiverged, match="the loss became nan at batch 1"):
        iss.after_backward(torch.tensor(float("nan")))
    with pytest.raises(IsscliError, match=r"`loss` has shape \(2,\), not one number"):
        iss.after_backward(torch.ones(2))
    model, opt = make()
    logged = IssTraining(model, opt, batches_per_epoch=4, spec=spec_of(model), target_hidden=12, prune_epochs=1,
                         log_loss=True)
    logged.after_backward(torch.tensor(-3.0))  # a log-likelihood may be negative
    logged.after_step()
    logged.end_epoch(-2.5)
    assert logged.summary().losses_skipped == 0


# -- bad input ------------------------------------------------------------------------------------


BAD = [
    ({"target_hidden": [30, 6]}, "`target_hidden`: set lstm.l0 has 24 units, fewer than the target 30"),
    ({"target_hidden": [0, 6]}, "`target_hidden`: set lstm.l0 needs at least 1 unit (got 0)"),
    ({"target_hidden": [10]}, "`target_hidden` gives 1 size(s) but the model has 2 ISS sets"),
    ({"target_hidden": 2.5}, "`target_hidden` must be a whole number (got 2.5)"),
    ({"target_hidden": True}, "`target_hidden` must be a whole number (got True)"),
    ({"target_hidden": {"lstm.l9": 3}}, "`target_hidden` names set 'lstm.l9', which the spec does not have"),
    ({"target_hidden": [24, 24]}, "`target_hidden`: every set is already at its target size"),
    ({"target_hidden": 10, "target_params": 3000}, "give one target, not `target_hidden` and `target_params`"),
    ({"target_params": 40}, "`target_params` 40: even one unit per set leaves 46 parameters"),
    ({"target_params": 10**6}, "`target_params` 1,000,000 is not below the 7,705 parameters the model has"),
    ({"target_hidden": 10, "batches_per_epoch": None}, "a target needs `batches_per_epoch`"),
    ({"target_hidden": 10, "prune_epochs": None}, "a target needs `prune_epochs`"),
    ({"target_hidden": 10, "prune_epochs": 0}, "`prune_epochs` must be ≥ 1 (got 0)"),
    ({"target_hidden": 10, "recover_epochs": 0}, "`recover_epochs` must be ≥ 1 (got 0)"),
    ({"target_hidden": 10, "check_every": 0}, "`check_every` must be ≥ 1 (got 0)"),
    ({"batches_per_epoch": 0}, "`batches_per_epoch` must be ≥ 1 (got 0)"),
    ({"prune_epochs": 3}, "`prune_epochs` and `recover_epochs` belong to a target"),
    ({"group_lasso": -1.0}, "`group_lasso` must be a finite number ≥ 0 (got -1.0)"),
    ({"tau": float("nan")}, "`tau` must be a finite number ≥ 0 (got nan)"),
    ({"spec": None}, "IssTraining needs `spec` or `example_input`"),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_bad_arguments_are_one_line_errors(changes: dict, message: str) -> None:
    model, opt = make()
    arguments = {"batches_per_epoch": 8, "spec": spec_of(model), "prune_epochs": 2, **changes}
    if "target_hidden" not in arguments and "target_params" not in arguments and "prune_epochs" not in changes:
        arguments.pop("prune_epochs")
    with pytest.raises(IsscliError) as raised:
        IssTraining(model, opt, **arguments)
    assert message in raised.value.message and "\n" not in str(raised.value) and raised.value.hint


def test_a_spec_or_optimizer_that_does_not_fit_the_model_is_refused() -> None:
    model, opt = make()
    other = Forecaster()
    other.rnn = other.lstm
    del other.lstm
    with pytest.raises(IsscliError, match=r"`spec` names tensor 'rnn\.\w+', which `model\.named_parameters\(\)`"):
        IssTraining(model, opt, spec=spec_of(other))
    with pytest.raises(IsscliError, match="`optimizer` does not update 'lstm.bias_hh_l0'"):
        IssTraining(model, torch.optim.Adam(model.head.parameters()), spec=spec_of(model))
    with pytest.raises(IsscliError, match="`optimizer` must be a torch.optim.Optimizer \\(got generator\\)"):
        IssTraining(model, model.parameters(), spec=spec_of(model))  # type: ignore[arg-type]
    with pytest.raises(IsscliError, match="`model` must be an nn.Module \\(got dict\\)"):
        IssTraining(dict(model.named_parameters()), opt, spec=spec_of(model))  # type: ignore[arg-type]
    saved = IssTraining(model, opt, batches_per_epoch=8, spec=spec_of(model), target_hidden=10, prune_epochs=2)
    other_target = IssTraining(model, opt, batches_per_epoch=8, spec=spec_of(model), target_hidden=9, prune_epochs=2)
    with pytest.raises(IsscliError, match=r"the state was saved with other settings \(controller\)"):
        other_target.load_state_dict(saved.state_dict())


def test_the_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(isscli.learn.your_loop.loop, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 10


def test_a_validation_blow_up_backs_off_and_says_loss(caplog: pytest.LogCaptureFixture) -> None:
    model, opt = make("adam")
    iss = IssTraining(model, opt, batches_per_epoch=8, spec=spec_of(model), target_hidden=[12, 8], prune_epochs=4)
    train(model, opt, iss, 1, samples=8 * BATCH)
    iss.controller.state.lambdas = [0.01, 0.02]  # as if it had been steering
    with caplog.at_level("WARNING", logger="isscli.learn.your_loop.loop"):
        iss.end_epoch(1.5)  # the first epoch's was below 0.75
    assert re.search(r"controller: validation loss 1.5 is over 2× its best \(0\.\d+\); "
                     r"λ halved \(lstm.l0 0.005, lstm.l1 0.01\)", caplog.text), caplog.text
    assert iss.lambdas == {"lstm.l0": 0.005, "lstm.l1": 0.01}
