"""Unstructured baselines: SET (Erdős–Rényi masks, prune and regrow), magnitude pruning, masked checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from hypothesis import given, settings, strategies as st

from isscli.data.corpus import load_corpus
from isscli.iss.spec import derive_spec
from isscli.learn.corpus import CorpusSummary
from isscli.learn.loop import RunPaths, Trainer, TrainingHook, TrainingRun, prepare_outputs
from isscli.learn.mask_hooks import GradualPruning, MaskHook, SetEvolution, set_hook
from isscli.learn.masks import (
    REGROW_VALUE,
    erdos_renyi_counts,
    erdos_renyi_masks,
    gradual_sparsity,
    magnitude_prune,
    maskable_names,
    one_shot,
    prune_and_regrow,
    sparsity_keep,
)
from isscli.learn.recipes import TrainSettings, recipe
from isscli.learn.tasks import LanguageModelTask
from isscli.models import build_model, load_model, model_tensors
from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_config
from tests.test_bench import doc_json
from tests.test_training import model_json, sentences

BATCHES = ["--batch-size", "4", "--bptt", "8", "--max-batches", "6", "--eval-batch-size", "4"]
FAST_BENCH = ["--repeats", "1", "--warmup", "0", "--steps", "3", "--batch", "2"]

shapes_strategy = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.tuples(st.integers(1, 30), st.integers(1, 30)),
    min_size=1, max_size=5,
)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for split, count, seed in (("train", 200, 1), ("valid", 30, 2), ("test", 30, 3)):
        (folder / f"ptb.{split}.txt").write_text(sentences(count, seed), encoding="utf-8")
    return folder


def kept(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in masks.items()}


# --- Erdős–Rényi masks ---------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(shapes=shapes_strategy, density=st.floats(0.001, 1.0))
def test_erdos_renyi_hits_the_density_exactly(shapes: dict[str, tuple[int, int]], density: float) -> None:
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    counts = erdos_renyi_counts(shapes, density)
    assert sum(counts.values()) == math.floor(density * total + 0.5)
    assert all(0 <= counts[name] <= sizes[name] for name in shapes)
    # Erdős–Rényi: the matrices not kept whole hold ε(n_in + n_out) connections, within rounding
    open_ = [name for name in shapes if counts[name] < sizes[name]]
    for a in open_:
        for b in open_:
            spread_a, spread_b = sum(shapes[a]), sum(shapes[b])
            assert abs(counts[a] / spread_a - counts[b] / spread_b) <= 1 / spread_a + 1 / spread_b
    masks = erdos_renyi_masks(shapes, density, torch.Generator().manual_seed(0))
    assert kept(masks) == counts and all(masks[name].shape == shapes[name] for name in shapes)


def test_erdos_renyi_favours_small_matrices_and_caps_at_one() -> None:
    counts = erdos_renyi_counts({"big": (100, 100), "small": (3, 2)}, 0.5)
    # ε·(3 + 2) > 6: the small matrix is kept whole, the big one gets the rest of round(0.5 · 10,006)
    assert counts == {"big": 5003 - 6, "small": 6}
    assert erdos_renyi_counts({"x": (4, 5), "y": (2, 2)}, 1.0) == {"x": 20, "y": 4}


def test_set_masks_cover_the_embedding_and_recurrent_matrices_only() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    hook = set_hook(model, 0.25, None, seed=3)
    assert list(hook.masks) == maskable_names(model) == [
        "encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"]
    total = sum(mask.numel() for mask in hook.masks.values())
    assert sum(kept(hook.masks).values()) == round(0.25 * total)
    for name, parameter in model.named_parameters():
        if name in hook.masks:
            assert torch.all(parameter[~hook.masks[name]] == 0)
        else:
            assert torch.count_nonzero(parameter) == parameter.numel()  # decoder and biases stay dense
    again = set_hook(build_model(tiny_config()), 0.25, None, seed=3)
    assert all(torch.equal(again.masks[n], hook.masks[n]) for n in hook.masks)  # the seed fixes the topology


# --- SET prune and regrow ------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), zeta=st.floats(0.0, 0.99), seed=st.integers(0, 1000),
       fill=st.floats(0.05, 1.0))
def test_prune_and_regrow_keeps_the_count_and_removes_the_weights_nearest_zero(
    rows: int, cols: int, zeta: float, seed: int, fill: float
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=generator)
    weight[torch.rand(rows, cols, generator=generator) < 0.1] = 0.0  # exact zeros count as closest to zero
    mask = torch.rand(rows, cols, generator=generator) < fill
    new, changed, grown = prune_and_regrow(weight, mask, zeta, generator)
    assert int(new.sum()) == int(mask.sum())  # exactly the same count
    removed = mask & ~new | (mask & grown)  # removed, possibly drawn again
    positive, other = mask & (weight > 0), mask & (weight <= 0)
    removed_positive, removed_other = removed & positive, removed & other
    assert int(removed_positive.sum()) == math.floor(zeta * int(positive.sum()) + 1e-9)
    assert int(removed_other.sum()) == math.floor(zeta * int(other.sum()) + 1e-9)
    if removed_positive.any() and (positive & ~removed).any():
        assert weight[removed_positive].max() <= weight[positive & ~removed].min()
    if removed_other.any() and (other & ~removed).any():
        assert weight[removed_other].min() >= weight[other & ~removed].max()
    assert int(grown.sum()) == int(removed.sum()) and torch.all(new[grown])
    assert torch.equal(changed, removed | grown)


def test_evolve_keeps_every_matrix_count_and_regrows_at_the_documented_value() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    hook = set_hook(model, 0.3, 0.4, seed=0)
    before = kept(hook.masks)
    with torch.no_grad():  # what training does: kept weights move away from zero
        for name, parameter in hook.parameters.items():
            parameter.add_(torch.randn_like(parameter)).masked_fill_(~hook.masks[name], 0.0)
    old = {name: mask.clone() for name, mask in hook.masks.items()}
    regrown = hook.evolve(torch.Generator().manual_seed(5))
    assert kept(hook.masks) == before and sum(regrown.values()) > 0
    assert REGROW_VALUE == 0.0
    for name, parameter in hook.parameters.items():
        new_connections = hook.masks[name] & ~old[name]
        assert new_connections.any()
        assert torch.all(parameter[new_connections] == REGROW_VALUE)
        assert torch.all(parameter[~hook.masks[name]] == 0)  # removed weights are gone


class Checker(TrainingHook):
    """Runs after the mask hook: gradients and weights must be exactly zero off the mask at every batch."""

    name = "checker"

    def __init__(self, hook: MaskHook) -> None:
        self.hook, self.steps, self.counts = hook, 0, []

    def after_backward(self, trainer: Trainer) -> None:
        for name, parameter in self.hook.parameters.items():
            assert torch.all(parameter.grad[~self.hook.masks[name]] == 0), name

    def after_step(self, trainer: Trainer, epoch: int, index: int) -> None:
        self.steps += 1
        self.counts.append(sum(kept(self.hook.masks).values()))
        for name, parameter in self.hook.parameters.items():
            assert torch.all(parameter[~self.hook.masks[name]] == 0), name


def lm_run(corpus_dir: Path, output: Path, settings_: TrainSettings) -> TrainingRun:
    corpus = load_corpus(corpus_dir)
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": len(corpus.vocabulary), "embedding_size": 8,
                         "hidden_sizes": [[8], [6]], "init_range": 0.1})
    cpu = torch.device("cpu")
    task = LanguageModelTask(corpus, settings_.batch_size, settings_.bptt, settings_.eval_batch_size, cpu)
    return TrainingRun("train", model, task, settings_, derive_spec(model_tensors(model)), RunPaths(output), cpu,
                       parameters={"data": corpus.describe()}, corpus=CorpusSummary.of_text(corpus, "given", False))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masked_weights_stay_zero_through_training(corpus_dir: Path, tmp_path: Path, optimizer: str) -> None:
    settings_ = recipe("tiny").updated({"epochs": 2, "batch_size": 4, "bptt": 8, "max_batches": 5, "eval_batch_size": 4,
                                        "max_grad_norm": 0.5, "optimizer": optimizer,
                                        "lr": 1.0 if optimizer == "sgd" else 0.01})
    run = lm_run(corpus_dir, tmp_path / "set.safetensors", settings_)
    hook = set_hook(run.model, 0.2, 0.3, seed=1)
    start = {name: p.detach().clone() for name, p in hook.parameters.items()}
    checker = Checker(hook)
    run.hooks.extend([hook, checker])
    prepare_outputs(run.paths, (), force=False, resume=False)
    Trainer(run).train()
    assert checker.steps == 10 and set(checker.counts) == {sum(kept(hook.masks).values())}
    moved = sum(int((p.detach() != start[n])[hook.masks[n]].sum()) for n, p in hook.parameters.items())
    assert moved > 0  # kept weights train
    saved = load_checkpoint(run.paths.output)
    assert set(saved.masks) == set(hook.masks) and "mask.encoder.weight" not in saved.tensors
    assert saved.mask_info["method"] == "set" and saved.mask_info["zeta"] == 0.3
    assert saved.mask_info["kept"] == sum(kept(saved.masks).values())
    for name, mask in saved.masks.items():
        assert torch.all(saved.tensors[name][~mask] == 0)
    load_model(saved)  # a masked checkpoint is an ordinary model to every command


# --- checkpoints ---------------------------------------------------------------------------

def test_masks_round_trip_and_plain_tensors_named_mask_stay_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    hook = set_hook(model, 0.5, None, seed=0)
    path = save_checkpoint(tmp_path / "m.safetensors", model_tensors(model), model.config.to_dict(),
                           masks=hook.masks, mask_info={"method": "set"})
    loaded = load_checkpoint(path)
    assert loaded.mask_info == {"method": "set"}
    assert all(torch.equal(loaded.masks[n], hook.masks[n]) for n in hook.masks)
    assert set(loaded.tensors) == set(model_tensors(model))
    plain = save_checkpoint(tmp_path / "p.safetensors", {**model_tensors(model), "mask.x": torch.ones(2)})
    assert "mask.x" in load_checkpoint(plain).tensors and not load_checkpoint(plain).masks


def test_prune_keeps_the_masks(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model(tiny_config())
    hook = set_hook(model, 0.5, None, seed=0)
    source = save_checkpoint(tmp_path / "m.safetensors", model_tensors(model), model.config.to_dict(),
                             masks=hook.masks, mask_info={"method": "set"})
    for command in (["groups", source], ["show", source, "--json", "-"]):
        result = run_cli(*command)
        assert result.code == 0, result.stderr
    pruned = tmp_path / "pruned.safetensors"
    assert run_cli("prune", source, "--group-threshold", "0", "-o", pruned).code == 0
    assert kept(load_checkpoint(pruned).masks) == kept(hook.masks)


# --- magnitude pruning ---------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(shapes=shapes_strategy, sparsity=st.floats(0.01, 0.99), seed=st.integers(0, 1000))
def test_one_shot_magnitude_pruning_hits_the_count_and_removes_the_smallest(
    shapes: dict[str, tuple[int, int]], sparsity: float, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weights = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    full = {name: torch.ones(shape, dtype=torch.bool) for name, shape in shapes.items()}
    total = sum(w.numel() for w in weights.values())
    keep = sparsity_keep(total, sparsity)
    masks = magnitude_prune(weights, full, keep)
    assert sum(kept(masks).values()) == keep == total - math.floor(sparsity * total + 0.5)
    for name, mask in masks.items():
        # the same share each: within one weight of the matrix's share of the (rounded) total kept
        assert abs(int(mask.sum()) - keep * mask.numel() / total) < 1 + 1e-9 * total
        if mask.any() and (~mask).any():
            assert weights[name][~mask].abs().max() <= weights[name][mask].abs().min()


def test_one_shot_on_a_model_and_from_a_mask() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    masks = one_shot(model, 0.6)
    total = sum(m.numel() for m in masks.values())
    assert sum(kept(masks).values()) == total - round(0.6 * total)
    parameters = dict(model.named_parameters())
    assert all(torch.all(parameters[n][~m] == 0) for n, m in masks.items())
    further = one_shot(model, 0.9, masks)
    assert sum(kept(further).values()) == total - round(0.9 * total)
    assert all(torch.all(further[n] <= masks[n]) for n in masks)  # a mask only shrinks
    with pytest.raises(Exception, match="already"):
        one_shot(model, 0.5, further)


def test_gradual_schedule_is_zhu_and_gupta() -> None:
    start, end, initial, final = 10, 110, 0.0, 0.9
    assert gradual_sparsity(5, start, end, initial, final) == initial
    assert gradual_sparsity(start, start, end, initial, final) == initial
    assert gradual_sparsity(end, start, end, initial, final) == final
    assert gradual_sparsity(500, start, end, initial, final) == final
    for t in (11, 35, 60, 109):
        expected = final + (initial - final) * (1 - (t - start) / (end - start)) ** 3
        assert gradual_sparsity(t, start, end, initial, final) == pytest.approx(expected, abs=1e-15)
    assert gradual_sparsity(60, start, end, 0.2, 0.8) == pytest.approx(0.8 - 0.6 * 0.125)


def test_gradual_pruning_through_the_trainer(corpus_dir: Path, tmp_path: Path) -> None:
    settings_ = recipe("tiny").updated({"epochs": 3, "batch_size": 4, "bptt": 8, "max_batches": 5,
                                        "eval_batch_size": 4})
    run = lm_run(corpus_dir, tmp_path / "gradual.safetensors", settings_)
    full = {n: torch.ones_like(p, dtype=torch.bool) for n, p in run.model.named_parameters()
            if n in maskable_names(run.model)}
    hook = GradualPruning(run.model, full, 0.8, start=1, end=2, every=3)
    checker = Checker(hook)
    run.hooks.extend([hook, checker])
    prepare_outputs(run.paths, (), force=False, resume=False)
    Trainer(run).train()
    total = hook.total
    first, last = 1, 10  # epochs 1–2, 5 batches each
    expected = []
    current = total
    for step in range(1, 16):
        if first <= step <= last and ((step - first) % 3 == 0 or step == last):
            current = min(current, sparsity_keep(total, gradual_sparsity(step, first, last, 0.0, 0.8)))
        expected.append(current)
    assert checker.counts == expected
    assert checker.counts[9] == total - round(0.8 * total) and checker.counts[-1] == checker.counts[9]
    saved = load_checkpoint(run.paths.output)
    assert saved.mask_info["method"] == "magnitude" and saved.mask_info["schedule"] == "gradual"
    # OUT never holds an epoch of the way there (epoch 1), even when it validates best.
    assert saved.provenance["result"]["best_epoch"] >= 2
    assert saved.mask_info["kept"] == total - round(0.8 * total)


# --- the CLI -------------------------------------------------------------------------------

def train_set(run_cli, corpus_dir: Path, folder: Path, output: Path, *extra: Any) -> Any:  # noqa: ANN001
    return run_cli("train", "--preset", "tiny", "--config", model_json(folder), "--data", corpus_dir, "-o", output,
                   "--method", "set", "--density", "0.3", "--seed", "4", *BATCHES, *extra)


def test_set_train_eval_bench_finetune(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    output = tmp_path / "set.safetensors"
    result = train_set(run_cli, corpus_dir, tmp_path, output, "--epochs", "2", "--zeta", "0.2")
    assert result.code == 0, result.stderr
    saved = load_checkpoint(output)
    total = sum(m.numel() for m in saved.masks.values())
    assert sum(kept(saved.masks).values()) == round(0.3 * total)
    assert saved.mask_info["density"] == pytest.approx(round(0.3 * total) / total)
    assert saved.provenance["result"]["masks"]["zeta"] == 0.2
    evaluated = run_cli("eval", output, "--data", corpus_dir, "--json", "-")
    assert evaluated.code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["perplexity"] > 1

    bench = run_cli("bench", output, "--unstructured", *FAST_BENCH, "--json", "-")
    assert bench.code == 0, bench.stderr
    report = json.loads(bench.stdout)
    jsonschema.validate(report, doc_json("JSON schema"))
    model, baseline = report["models"]
    assert (model["role"], model["format"], baseline["format"]) == ("model", "csr", "dense")
    assert model["max_output_difference"] <= 1e-5
    nonzero = sum(int(torch.count_nonzero(t)) for name, t in saved.tensors.items())
    assert model["parameters"] == nonzero < baseline["parameters"]
    assert report["comparison"]["speedup"] > 0
    against = json.loads(run_cli("bench", output, "--against", output, "--unstructured", *FAST_BENCH,
                                 "--json", "-").stdout)
    assert [m["format"] for m in against["models"]] == ["csr", "dense"]

    tuned = tmp_path / "tuned.safetensors"
    result = run_cli("finetune", output, "--data", corpus_dir, "-o", tuned, "--epochs", "1", *BATCHES)
    assert result.code == 0, result.stderr
    after = load_checkpoint(tuned)
    assert all(torch.equal(after.masks[n], saved.masks[n]) for n in saved.masks)  # fine-tuning keeps the mask
    assert all(torch.all(after.tensors[n][~m] == 0) for n, m in after.masks.items())


def test_set_resume_is_bit_identical(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    common = ("--epochs", "3", "--keep", "last", "--zeta", "0.5")
    assert train_set(run_cli, corpus_dir, tmp_path, straight, *common).code == 0
    assert train_set(run_cli, corpus_dir, tmp_path, resumed, *common, "--stop-after", "1").code == 0
    for changed in (("--zeta", "0.4"), ("--zeta", "0.5", "--density", "0.4")):
        other = train_set(run_cli, corpus_dir, tmp_path, resumed, "--epochs", "3", "--keep", "last", *changed,
                          "--resume")
        assert other.code == 2 and "mask settings" in other.stderr
    dense = run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir, "-o", resumed,
                    "--seed", "4", *BATCHES, "--epochs", "3", "--keep", "last", "--resume")
    assert dense.code == 2 and "other training hooks" in dense.stderr
    again = train_set(run_cli, corpus_dir, tmp_path, resumed, *common, "--resume")
    assert again.code == 0, again.stderr
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a.tensors.keys() == b.tensors.keys() and a.masks.keys() == b.masks.keys()
    assert all(torch.equal(a.tensors[n], b.tensors[n]) for n in a.tensors)
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    initial = tmp_path / "initial.safetensors"  # one epoch: no evolution yet, the Erdős–Rényi masks
    assert train_set(run_cli, corpus_dir, tmp_path, initial, "--epochs", "1").code == 0
    evolved = load_checkpoint(initial).masks
    assert kept(evolved) == kept(a.masks) and any(not torch.equal(evolved[n], a.masks[n]) for n in a.masks)


def test_sparsify_and_gradual_finetune(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    base = tmp_path / "base.safetensors"
    assert run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir, "-o", base,
                   "--epochs", "1", *BATCHES).code == 0
    sparse = tmp_path / "sparse.safetensors"
    result = run_cli("sparsify", base, "--sparsity", "0.75", "-o", sparse, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kept"] == report["total"] - round(0.75 * report["total"])
    loaded = load_checkpoint(sparse)
    assert loaded.mask_info["schedule"] == "one-shot" and sum(kept(loaded.masks).values()) == report["kept"]
    bench = run_cli("bench", sparse, "--against", base, "--unstructured", *FAST_BENCH, "--json", "-")
    assert bench.code == 0, bench.stderr
    compared = json.loads(bench.stdout)
    assert [m["format"] for m in compared["models"]] == ["csr", "dense"]
    assert compared["comparison"]["parameter_reduction"] > 1 and compared["comparison"]["multiply_add_reduction"] > 1

    gradual = tmp_path / "gradual.safetensors"
    result = run_cli("finetune", base, "--magnitude-sparsity", "0.9", "--prune-end", "2", "--prune-every", "2",
                     "--keep", "last", "--data", corpus_dir, "-o", gradual, "--epochs", "2", *BATCHES)
    assert result.code == 0, result.stderr
    masks = load_checkpoint(gradual).masks
    total = sum(m.numel() for m in masks.values())
    assert sum(kept(masks).values()) == total - round(0.9 * total)
    oneshot = tmp_path / "oneshot.safetensors"
    result = run_cli("finetune", base, "--magnitude-sparsity", "0.5", "--data", corpus_dir, "-o", oneshot,
                     "--epochs", "1", *BATCHES)
    assert result.code == 0, result.stderr
    assert sum(kept(load_checkpoint(oneshot).masks).values()) == total - round(0.5 * total)


@pytest.mark.parametrize("args, words", [
    (["--method", "set", "--density", "0"], ["--density 0 is outside (0, 1]"]),
    (["--method", "set", "--density", "1.5"], ["--density 1.5 is outside"]),
    (["--method", "set", "--density", "0.5", "--zeta", "1"], ["--zeta 1 is outside [0, 1)"]),
    (["--method", "set", "--density", "0.5", "--zeta", "-0.1"], ["--zeta -0.1"]),
    (["--method", "set"], ["needs --density"]),
    (["--density", "0.5"], ["need --method=set"]),
    (["--method", "rigl", "--density", "0.5"], ["unknown --method"]),
])
def test_bad_set_options_are_one_line_errors(run_cli, corpus_dir: Path, tmp_path: Path, args, words) -> None:  # noqa: ANN001
    output = tmp_path / "x.safetensors"
    result = run_cli("train", "--preset", "tiny", "--data", corpus_dir, "-o", output, *args)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and " — " in lines[0]
    assert all(word in lines[0] for word in words), lines[0]
    assert not output.exists()


@pytest.mark.parametrize("command, words", [
    (["sparsify", "{ckpt}", "--sparsity", "1"], ["--sparsity 1 is outside (0, 1)"]),
    (["sparsify", "{ckpt}", "--sparsity", "0"], ["--sparsity 0"]),
    (["finetune", "{ckpt}", "--magnitude-sparsity", "0.5", "--prune-end", "9", "--epochs", "2"], ["--prune-end (9)"]),
    (["finetune", "{ckpt}", "--prune-end", "1"], ["need --magnitude-sparsity"]),
    (["finetune", "{ckpt}", "--magnitude-sparsity", "0.5", "--prune-every", "5"], ["needs --prune-end"]),
])
def test_bad_pruning_options_are_one_line_errors(run_cli, tiny_lm: Path, corpus_dir: Path, command, words) -> None:  # noqa: ANN001
    args = [str(tiny_lm) if part == "{ckpt}" else part for part in command]
    extra = ["--data", corpus_dir] if command[0] == "finetune" else []
    result = run_cli(*args, *extra)
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(word in lines[0] for word in words), result.stderr
    assert "Traceback" not in result.stderr


def test_a_mask_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    with pytest.raises(Exception, match="does not fit"):
        SetEvolution(model, {"encoder.weight": torch.ones(3, 3, dtype=torch.bool)}, 0.3, 0)
