"""Target-driven ISS: the λ controller reaches exact sizes, never goes below them, and resumes; size translations."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from isscli.io.errors import IsscliError
from isscli.io.parsing import parse_count
from isscli.iss.accounting import parameter_count
from isscli.iss.regularizer import GroupLasso
from isscli.iss.spec import derive_spec
from isscli.iss.surgery import alive_components, group_norms
from isscli.learn.controller import ControllerSettings, ControllerState
from isscli.learn.controller.targets import sized_config, sizes_at, sizes_for_parameters, sizes_for_speedup
from isscli.learn.controller.units import SetLayout, UnitGuard
from isscli.learn.state import load_run_state
from isscli.models import build_model, model_tensors
from isscli.models.checkpoint import load_checkpoint
from isscli.models.config import ModelConfig
from isscli.models.presets import preset_config

BATCHES = ["--batch-size", "4", "--bptt", "8", "--max-batches", "20", "--eval-batch-size", "4"]
TARGETS = {"rnn.l0": 6, "rnn.l1": 5}


# `corpus` and `dense` (a 2-layer LSTM LM of 16 and 12 units, one short epoch) come from conftest.


def finetune(run_cli, dense: Path, corpus: Path, output: Path, *extra: object):  # noqa: ANN001, ANN201
    return run_cli("finetune", dense, "--data", corpus, "-o", output, "--preset", "tiny", *BATCHES, *extra)


def records(output: Path) -> list[dict]:
    lines = output.with_suffix(".log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def units_after_compaction(run_cli, checkpoint: Path) -> dict[str, int]:  # noqa: ANN001
    result = run_cli("compact", checkpoint, "-o", checkpoint.with_suffix(".compact.safetensors"), "--force",
                     "--json", "-")
    assert result.code == 0, result.stderr
    return {s["name"]: s["components_after"] for s in json.loads(result.stdout)["sets"]}


def dead_groups(checkpoint: Path) -> dict[str, list[int]]:
    tensors = load_checkpoint(checkpoint).tensors
    return {iss.name: torch.nonzero(~alive_components(tensors, iss)).flatten().tolist()
            for iss in derive_spec(tensors).sets}


def test_target_hidden_ends_at_exactly_the_targets_and_never_below(run_cli, dense, corpus, tmp_path) -> None:  # noqa: ANN001
    output = tmp_path / "target.safetensors"
    result = finetune(run_cli, dense, corpus, output, "--target-hidden", "6,5", "--prune-epochs", "3",
                      "--recover-epochs", "1", "--json", tmp_path / "report.json")
    assert result.code == 0, result.stderr
    assert "targets: rnn.l0 16→6, rnn.l1 12→5" in result.stderr

    log = records(output)
    epochs = [r for r in log if r["event"] == "epoch"]
    assert len(epochs) == 4  # 3 pruning epochs, 1 recovery epoch
    for record in epochs:  # the whole group count (isscli groups' "nonzero") never drops below a target
        assert all(record["alive"][name] >= target for name, target in TARGETS.items()), record["alive"]
    assert epochs[-1]["alive"] == TARGETS
    checks = [r for r in log if r.get("kind") == "epoch" and r["trajectory"]]
    assert checks, "the controller logs its checks"
    for record in checks:  # and neither does the unit count at any check
        for name, target in TARGETS.items():
            assert min(record["trajectory"]["units"][name]) >= target
            assert len(record["trajectory"]["lambda"][name]) == len(record["trajectory"]["batch"])

    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["controller"]
    assert report["units"] == TARGETS and report["lowest_units"] == TARGETS  # measured after every batch
    assert set(report["frozen"]) == set(TARGETS) and report["phase"] == "recover"
    assert all(len(values) == 4 for values in report["lambda_per_epoch"].values())
    assert all(values[-1] == 0 for values in report["lambda_per_epoch"].values())  # recovery: λ = 0
    freezes = [r for r in log if r.get("kind") == "freeze"]
    assert {r["set"] for r in freezes} == set(TARGETS) and all(r["units"] == TARGETS[r["set"]] for r in freezes)

    provenance = load_checkpoint(output).provenance or {}
    assert provenance["operation"] == "finetune" and provenance["parameters"]["target_hidden"] == "6,5"
    assert provenance["result"]["controller"]["targets"] == TARGETS
    assert units_after_compaction(run_cli, output) == TARGETS
    tensors = load_checkpoint(output).tensors
    for iss in derive_spec(tensors).sets:  # removed units are exactly zero, not merely small
        norms = group_norms(tensors, iss)
        assert int((norms == 0).sum()) == iss.components - TARGETS[iss.name]


def test_thresholding_can_never_take_a_set_below_its_target(run_cli, dense, corpus, tmp_path) -> None:  # noqa: ANN001
    # τ = 10 zeroes every regularized weight after each batch: a plain run dies in epoch 1 (test_training);
    # with a target, the strongest units keep their receivers and every set stays exactly at its target
    output = tmp_path / "harsh.safetensors"
    result = finetune(run_cli, dense, corpus, output, "--target-hidden", "6,5", "--weight-threshold", "10",
                      "--prune-epochs", "1", "--recover-epochs", "1", "--json", tmp_path / "r.json")
    assert result.code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["controller"]
    assert report["lowest_units"] == TARGETS and report["units"] == TARGETS
    assert units_after_compaction(run_cli, output) == TARGETS


def test_a_capped_lambda_ends_with_the_weakest_groups_zeroed(run_cli, dense, corpus, tmp_path) -> None:  # noqa: ANN001
    output = tmp_path / "capped.safetensors"
    before = load_checkpoint(dense).tensors
    result = finetune(run_cli, dense, corpus, output, "--target-hidden", "6,5", "--lambda", "1e-7",
                      "--prune-epochs", "1", "--recover-epochs", "1", "--json", tmp_path / "r.json")
    assert result.code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["controller"]
    assert report["cap"] == 1e-7 and report["final_cut"] == {"rnn.l0": 10, "rnn.l1": 7}
    assert max(max(v) for v in report["lambda_per_epoch"].values()) <= 1e-7
    assert units_after_compaction(run_cli, output) == TARGETS
    # the cut took the weakest groups (ranked at the end of pruning, after 20 batches of training)
    for iss in derive_spec(before).sets:
        norms, dead = group_norms(before, iss), dead_groups(output)[iss.name]
        survivors = sorted(set(range(iss.components)) - set(dead))
        assert len(survivors) == TARGETS[iss.name]
        assert float(norms[survivors].mean()) > float(norms[dead].mean())


def test_resume_mid_run_continues_exactly_and_dead_groups_stay_zero(run_cli, dense, corpus, tmp_path) -> None:  # noqa: ANN001
    flags = ["--target-hidden", "6,5", "--prune-epochs", "2", "--recover-epochs", "2", "--seed", "3"]
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    assert finetune(run_cli, dense, corpus, straight, *flags).code == 0
    first = finetune(run_cli, dense, corpus, resumed, *flags, "--stop-after", "2")  # stops right after pruning
    assert first.code == 0, first.stderr
    weights = load_run_state(resumed.with_suffix(".resume.safetensors")).model
    spec = derive_spec(weights)
    pruned_dead = {iss.name: torch.nonzero(~alive_components(weights, iss)).flatten().tolist() for iss in spec.sets}
    assert {name: len(dead) for name, dead in pruned_dead.items()} == {"rnn.l0": 10, "rnn.l1": 7}

    changed = finetune(run_cli, dense, corpus, resumed, *flags[2:], "--target-hidden", "7,5", "--resume")
    assert changed.code == 2 and "--target" in changed.stderr.splitlines()[-1]
    second = finetune(run_cli, dense, corpus, resumed, *flags, "--resume")
    assert second.code == 0, second.stderr
    a, b = load_checkpoint(straight).tensors, load_checkpoint(resumed).tensors
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert dead_groups(resumed) == pruned_dead  # two recovery epochs revived nothing


@pytest.mark.parametrize("flags, message", [
    (["--target-hidden", "6,13"], "fewer than the target 13"),
    (["--target-hidden", "0,5"], "at least 1 unit"),
    (["--target-hidden", "6"], "gives 1 size(s) but the model has 2 ISS sets"),
    (["--target-hidden", "16,12"], "nothing to prune"),
    (["--target-hidden", "6,5", "--target-params", "1k"], "give one target"),
    (["--target-params", "10"], "even one unit per layer leaves"),
    (["--target-params", "lots"], "is not a count"),
    (["--target-speedup", "0.5"], "is not a speed-up"),
    (["--prune-epochs", "2"], "belong to a target run"),
    (["--target-hidden", "6,5", "--recover-epochs", "0"], "must be ≥ 1"),
])
def test_bad_targets_are_one_line_errors(run_cli, dense, corpus, tmp_path, flags, message) -> None:  # noqa: ANN001
    output = tmp_path / "never.safetensors"
    result = finetune(run_cli, dense, corpus, output, *flags)
    assert result.code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in result.stderr
    assert not output.exists()


def test_parse_count() -> None:
    assert [parse_count(t) for t in ("20M", "1.5k", "123456", "2.5e6", "3G")] == [
        20_000_000, 1500, 123456, 2_500_000, 3_000_000_000]
    for bad in ("", "M", "-5", "1.2.3", "0"):
        with pytest.raises(IsscliError):
            parse_count(bad)


@pytest.mark.parametrize("config", [
    {**preset_config("large")},
    {"family": "lm", "vocab_size": 500, "embedding_size": 40, "hidden_sizes": [[40], [30], [40]], "tie_weights": True},
    {"family": "classifier", "vocab_size": 300, "embedding_size": 16, "hidden_sizes": [[24, 20]], "num_classes": 2,
     "cell": "gru"},
])
def test_target_params_gives_the_largest_sizes_within_the_budget(config: dict) -> None:
    model = ModelConfig.from_dict(config)
    full = [size for sizes in model.hidden_sizes for size in sizes]
    dense, least = parameter_count(model), parameter_count(sized_config(model, [1] * len(full)))
    for limit in (int(least + share * (dense - least)) for share in (0.1, 0.5, 0.9)):
        sizes, count = sizes_for_parameters(model, limit)
        assert count == parameter_count(sized_config(model, sizes)) <= limit
        assert parameter_count(sized_config(model, [s + 1 for s in sizes])) > limit  # one more unit per set: over
        fraction = max(Fraction(s, k) for s, k in zip(sizes, full))
        assert sizes == sizes_at(fraction, full)  # the same share of every set
    sizes, count = sizes_for_parameters(ModelConfig.from_dict(preset_config("large")), 20_000_000)
    assert (sizes, count) == ([260, 260], 19_985_360)  # the same share of both layers of the paper's LM


def test_target_speedup_bisects_on_measured_speedups() -> None:
    model = ModelConfig.from_dict({"family": "lm", "vocab_size": 50, "embedding_size": 8, "hidden_sizes": [[40], [20]]})
    probes: list[list[int]] = []

    def measure(sizes: list[int]) -> float:  # a fake clock: time grows with the units kept
        probes.append(sizes)
        return 60 / (sizes[0] + sizes[1])

    sizes, measured = sizes_for_speedup(model, 4.0, measure)
    assert measured >= 4.0 and sum(sizes) <= 15 and 60 / (sum(sizes) + 3) < 4.0
    assert sizes[0] == 2 * sizes[1] or abs(sizes[0] - 2 * sizes[1]) <= 1
    assert len(probes) <= 8  # a bisection, not a scan of every size
    with pytest.raises(IsscliError, match="only 30.00× faster"):
        sizes_for_speedup(model, 100.0, measure)


def test_controller_settings_are_checked() -> None:
    with pytest.raises(IsscliError, match="recover_epochs"):
        ControllerSettings({"a": 1}, 2, 0).validate()
    with pytest.raises(IsscliError, match="group_lasso"):
        ControllerSettings({"a": 1}, 2, 1, cap=0.0).validate()


def bound_guard(targets: dict[str, int]) -> tuple[UnitGuard, dict[str, torch.nn.Parameter]]:
    """The controller's unit guard on a fresh model's live parameters."""
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": 30, "embedding_size": 6, "hidden_sizes": [[8], [7]]})
    parameters = dict(model.named_parameters())
    spec = derive_spec(model_tensors(model))
    layout = SetLayout.of(spec, targets, {name: tuple(p.shape) for name, p in parameters.items()})
    state = ControllerState(dead=torch.zeros(sum(iss.components for iss in spec.sets), dtype=torch.bool))
    return UnitGuard(GroupLasso(spec, parameters), layout, state), parameters


def test_the_fast_and_the_exact_enforcement_agree() -> None:
    controller, parameters = bound_guard({"rnn.l0": 3, "rnn.l1": 2})
    with torch.no_grad():
        for parameter in parameters.values():
            parameter.mul_(torch.where(torch.rand_like(parameter) < 0.5, 1e-3, 1.0))
        parameters["rnn.weight_hh_l0"][:, 5] *= 1e-3  # unit 5 of layer 0: every receiver tiny
        parameters["rnn.weight_ih_l1"][:, 5] *= 1e-3
    start = {name: p.detach().clone() for name, p in parameters.items()}
    for tau in (0.0, 1e-3, 0.02):
        assert controller.enforce_fast(tau)  # far above the targets: the bound allows plain thresholding
        fast = {name: p.detach().clone() for name, p in parameters.items()}
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(start[name])
        controller.enforce_exact(tau)
        assert all(torch.equal(fast[name], parameters[name]) for name in parameters), tau
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(start[name])
    assert controller.units()["rnn.l0"] == 8
    controller.enforce(0.02)
    assert controller.units()["rnn.l0"] == 7  # unit 5 died: nothing protected it, 7 ≥ 3


def test_protection_keeps_the_strongest_of_the_dying_units() -> None:
    controller, parameters = bound_guard({"rnn.l0": 6, "rnn.l1": 2})
    norms = controller.main.norms()[:8]
    assert not controller.enforce_fast(10.0)  # τ = 10 would kill every unit: the bound refuses
    controller.enforce(10.0)
    units = controller.unit_mask()[:8]
    assert int(units.sum()) == 6 and controller.units()["rnn.l1"] == 2
    assert set(torch.nonzero(units).flatten().tolist()) == set(norms.topk(6).indices.tolist())
    assert controller.state.lowest_units == {"rnn.l0": 6, "rnn.l1": 2}


def test_train_from_scratch_with_a_target(run_cli, corpus, tmp_path) -> None:  # noqa: ANN001
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[16], [12]]}), encoding="utf-8")
    output = tmp_path / "scratch.safetensors"
    result = run_cli("train", "--preset", "tiny", "--config", config, "--data", corpus, "-o", output, *BATCHES,
                     "--target-hidden", "5,4", "--epochs", "1")
    assert result.code == 0, result.stderr
    assert [r["event"] for r in records(output) if r["event"] == "epoch"] == ["epoch", "epoch"]  # 1 + 1 recovery
    assert units_after_compaction(run_cli, output) == {"rnn.l0": 5, "rnn.l1": 4}
