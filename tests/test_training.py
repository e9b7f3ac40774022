"""train → finetune → prune → compact → eval, resuming, the divergence guard and the settings, on tiny corpora."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from isscli.data.corpus import load_corpus
from isscli.io.errors import IsscliError
from isscli.iss.spec import derive_spec
from isscli.iss.surgery import group_norms
from isscli.learn.corpus import CorpusSummary
from isscli.learn.loop import RunPaths, Trainer, TrainingDiverged, TrainingRun, prepare_outputs
from isscli.learn.recipes import RECIPES, TrainSettings, recipe
from isscli.learn.state import RunState, capture_rng, load_run_state, save_run_state
from isscli.learn.tasks import Evaluation, LanguageModelTask
from isscli.models import build_model, model_tensors
from isscli.models.checkpoint import load_checkpoint

SUBJECTS = ["the cat", "a dog", "the bird", "my friend"]
VERBS = ["sat on", "looked at", "ran to", "slept by"]
OBJECTS = ["the mat", "a tree", "the house", "the river"]
BATCHES = ["--batch-size", "4", "--bptt", "8", "--max-batches", "25", "--eval-batch-size", "4"]
QUICK = ["--epochs", "2", *BATCHES]
ONE_EPOCH = ["--epochs", "1", *BATCHES]


def sentences(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(f" {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} \n" for _ in range(count))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for split, count, seed in (("train", 300, 1), ("valid", 40, 2), ("test", 40, 3)):
        (folder / f"ptb.{split}.txt").write_text(sentences(count, seed), encoding="utf-8")
    return folder


def model_json(folder: Path, **fields: object) -> Path:
    path = folder / "model.json"
    path.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[8], [6]], **fields}), encoding="utf-8")
    return path


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).tensors


def log_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.with_suffix(".log.jsonl").read_text(encoding="utf-8").splitlines()]


def eval_json(run_cli, checkpoint: Path, data: Path) -> dict:  # noqa: ANN001
    result = run_cli("eval", checkpoint, "--data", data, "--json", "-")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_train_finetune_prune_compact_eval_keeps_the_perplexity(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    base, iss = tmp_path / "base.safetensors", tmp_path / "iss.safetensors"
    trained = run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir,
                      "-o", base, *QUICK)
    assert trained.code == 0, trained.stderr
    assert "epoch 1/2" in trained.stdout and "valid ppl" in trained.stdout and "test perplexity" in trained.stdout

    tuned = run_cli("finetune", base, "--lambda", "0.01", "--weight-threshold", "1e-3", "--data", corpus_dir, "-o", iss,
                    *QUICK)
    assert tuned.code == 0, tuned.stderr
    provenance = load_checkpoint(iss).provenance or {}
    parameters = provenance["parameters"]
    assert provenance["operation"] == "finetune" and provenance["invocation"]["via"] == "cli"
    assert parameters["settings"]["group_lasso"] == 0.01 and parameters["settings"]["weight_threshold"] == 1e-3
    assert "weight_threshold" not in json.dumps({k: v for k, v in parameters.items() if k != "settings"})  # τ: once
    assert provenance["parent_sha256"] == load_checkpoint(base).sha256
    assert parameters["spec"]["sets"][0]["name"] == "rnn.l0"
    assert parameters["data"]["vocabulary_size"] == len(load_corpus(corpus_dir).vocabulary)

    # prune at the smallest of the sets' median group norms, so that every set loses units and keeps some
    tensors = tensors_of(iss)
    tau = min(float(group_norms(tensors, s).median()) for s in derive_spec(tensors).sets)
    pruned, compacted = tmp_path / "pruned.safetensors", tmp_path / "compact.safetensors"
    assert run_cli("prune", iss, "--group-threshold", tau, "-o", pruned).code == 0
    assert run_cli("compact", pruned, "-o", compacted).code == 0
    assert sum(t.numel() for t in tensors_of(compacted).values()) < sum(t.numel() for t in tensors.values())

    before, after = eval_json(run_cli, pruned, corpus_dir), eval_json(run_cli, compacted, corpus_dir)
    assert before["perplexity"] == pytest.approx(after["perplexity"], rel=1e-5)
    assert before["count"] == after["count"] > 0 and after["split"] == "test"


def test_finetune_with_lambda_zeroes_whole_groups_and_logs_every_epoch(
    run_cli, corpus_dir: Path, tmp_path: Path  # noqa: ANN001
) -> None:
    base, iss = tmp_path / "base.safetensors", tmp_path / "iss.safetensors"
    assert run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir,
                   "-o", base, *QUICK).code == 0
    result = run_cli("finetune", base, "--lambda", "0.05", "--weight-threshold", "5e-3", "--data", corpus_dir,
                     "-o", iss, *QUICK, "--json", tmp_path / "report.json")
    assert result.code == 0, result.stderr
    records = log_records(iss)
    assert [r["event"] for r in records] == ["start", "epoch", "epoch", "end"]
    epoch = records[-2]
    assert set(epoch) >= {"lr", "train_perplexity", "valid_perplexity", "alive", "components", "sparsity", "penalty"}
    tensors = tensors_of(iss)
    spec = derive_spec(tensors)
    dead = [int((group_norms(tensors, s) == 0).sum()) for s in spec.sets]
    assert sum(dead) > 0  # whole groups are exactly zero, not merely small
    best = next(r for r in reversed(records) if r["event"] == "epoch" and r["best"])
    assert best["alive"] == {s.name: s.components - d for s, d in zip(spec.sets, dead, strict=True)}
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["best_epoch"] == best["epoch"] and report["test"]["perplexity"] > 1
    again = run_cli("finetune", base, "--lambda", "0.05", "--data", corpus_dir, "-o", iss, "--force", *QUICK,
                    "--json", "-")
    assert json.loads(again.stdout)["best_epoch"] >= 1  # stdout holds the JSON alone; epoch lines went to stderr
    assert "epoch 1/2" in again.stderr


def test_resume_continues_to_the_same_weights(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    config = model_json(tmp_path, dropout=0.3)  # dropout draws random numbers: the RNG state must be restored
    common = ["train", "--preset", "tiny", "--config", config, "--data", corpus_dir, "--seed", "7",
              "--lr-decay", "0.5", "--decay-after", "1", *BATCHES, "--epochs", "3"]
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    assert run_cli(*common, "-o", straight).code == 0

    first = run_cli(*common, "-o", resumed, "--stop-after", "1")
    assert first.code == 0 and "continue with --resume" in first.stdout
    assert resumed.with_suffix(".resume.safetensors").is_file()
    again = run_cli(*common, "-o", resumed)
    assert again.code == 2 and "--resume" in again.stderr  # an interrupted run is not silently restarted
    second = run_cli(*common, "-o", resumed, "--resume")
    assert second.code == 0, second.stderr

    a, b = tensors_of(straight), tensors_of(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert not resumed.with_suffix(".resume.safetensors").exists()
    events = [r["event"] for r in log_records(resumed)]
    assert events == ["start", "epoch", "stopped", "resume", "epoch", "epoch", "end"]
    changed = run_cli(*common, "-o", tmp_path / "other.safetensors", "--stop-after", "1")
    assert changed.code == 0
    mismatch = run_cli(*common, "-o", tmp_path / "other.safetensors", "--resume", "--lr", "0.5")
    assert mismatch.code == 2 and "changed: lr" in mismatch.stderr


def test_a_dead_model_is_never_written_silently(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    base, dead = tmp_path / "base.safetensors", tmp_path / "dead.safetensors"
    assert run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir,
                   "-o", base, *ONE_EPOCH).code == 0
    # τ = 10 zeroes every regularized weight after each batch: every unit dies in epoch 1
    result = run_cli("finetune", base, "--lambda", "0.01", "--weight-threshold", "10", "--data", corpus_dir, "-o", dead,
                     *QUICK)
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "no ISS component left" in errors[0] and "nothing was written" in errors[0] and "lower λ" in errors[0]
    assert not dead.exists()
    assert log_records(dead)[-1]["event"] == "diverged"


def test_an_exploding_run_stops_with_advice(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    output = tmp_path / "exploding.safetensors"
    result = run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir,
                     "-o", output, *QUICK, "--lr", "1e30", "--max-grad-norm", "1e30")
    assert result.code == 1
    assert "training diverged in epoch 1" in result.stderr and "lower the learning rate" in result.stderr
    assert not output.exists()


def lm_run(corpus_dir: Path, output: Path, settings: TrainSettings) -> TrainingRun:
    corpus = load_corpus(corpus_dir)
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": len(corpus.vocabulary), "embedding_size": 8,
                         "hidden_sizes": [[8]], "init_range": 0.1})
    cpu = torch.device("cpu")
    task = LanguageModelTask(corpus, settings.batch_size, settings.bptt, settings.eval_batch_size, cpu)
    return TrainingRun("train", model, task, settings, derive_spec(model_tensors(model)), RunPaths(output), cpu,
                       parameters={"data": corpus.describe()}, corpus=CorpusSummary.of_text(corpus, "given", False))


def test_a_validation_blow_up_keeps_the_last_good_checkpoint(corpus_dir: Path, tmp_path: Path) -> None:
    settings = recipe("tiny").updated({"epochs": 3, "batch_size": 4, "bptt": 8, "max_batches": 5})
    run = lm_run(corpus_dir, tmp_path / "out.safetensors", settings)
    scores = iter([2.0, 1.5, 1.5 + math.log(5)])  # the third epoch's perplexity is 5× the best
    run.task.evaluate = lambda model, split, limit=None: Evaluation(split, next(scores), 100)  # type: ignore[method-assign]
    prepare_outputs(run.paths, (), force=False, resume=False)
    with pytest.raises(TrainingDiverged, match=r"epoch 3: validation perplexity .* over 4× the best") as caught:
        Trainer(run).train()
    assert "keeps the model of epoch 2" in caught.value.message
    provenance = load_checkpoint(run.paths.output).provenance or {}
    assert provenance["result"]["best_epoch"] == 2
    assert run.paths.resume.is_file()  # the last good epoch stays resumable


@pytest.mark.parametrize("keep, kept_epoch", [("best", 2), ("last", 3)])
def test_keep_chooses_the_best_or_the_last_epoch(corpus_dir: Path, tmp_path: Path, keep: str, kept_epoch: int) -> None:
    settings = recipe("tiny").updated({"epochs": 3, "batch_size": 4, "bptt": 8, "max_batches": 5, "keep": keep})
    run = lm_run(corpus_dir, tmp_path / "out.safetensors", settings)
    scores = iter([2.0, 1.5, 1.8])  # epoch 2 is the best; epoch 3 is worse but no blow-up
    run.task.evaluate = lambda model, split, limit=None: Evaluation(split, next(scores, 1.8), 100)  # type: ignore[method-assign]
    prepare_outputs(run.paths, (), force=False, resume=False)
    result = Trainer(run).train()
    assert result.best_epoch == kept_epoch
    assert (load_checkpoint(run.paths.output).provenance or {})["result"]["best_epoch"] == kept_epoch


def test_a_nan_loss_stops_at_once(corpus_dir: Path, tmp_path: Path) -> None:
    settings = recipe("tiny").updated({"epochs": 2, "batch_size": 4, "bptt": 8, "group_lasso": 0.01})
    run = lm_run(corpus_dir, tmp_path / "out.safetensors", settings)
    with torch.no_grad():
        run.model.decoder.bias.fill_(float("nan"))
    expected = r"epoch 1: the loss became nan at batch 1; nothing was written"
    with pytest.raises(TrainingDiverged, match=expected) as caught:
        Trainer(run).train()
    assert caught.value.hint == "lower λ (e.g. --lambda 0.005)"
    assert not run.paths.output.exists()


def test_run_state_round_trips_an_adam_optimizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({"family": "classifier", "vocab_size": 9, "embedding_size": 3, "hidden_sizes": [[2, 2]],
                         "num_classes": 2})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randint(1, 9, (4, 3))).sum().backward()
    optimizer.step()
    save_run_state(tmp_path / "r.safetensors", RunState(3, model_tensors(model), optimizer.state_dict(),
                                                           capture_rng(), {"note": "x"}))
    state = load_run_state(tmp_path / "r.safetensors")
    assert state.epoch == 3 and state.info["note"] == "x" and torch.equal(state.rng["cpu"], torch.get_rng_state())
    restored = torch.optim.Adam(model.parameters(), lr=0.5)
    restored.load_state_dict(state.optimizer)
    assert restored.param_groups[0]["lr"] == 0.01
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            assert torch.equal(restored.state_dict()["state"][index][key], value)


def test_recipes_follow_zaremba_and_the_schedule_decays_after_max_epoch() -> None:
    small, medium, large = RECIPES["small"], RECIPES["medium"], RECIPES["large"]
    assert (small.epochs, small.bptt, small.lr_decay, small.decay_after, small.max_grad_norm) == (13, 20, 0.5, 4, 5)
    assert (medium.epochs, medium.bptt, medium.lr_decay, medium.decay_after) == (39, 35, 0.8, 6)
    assert (large.epochs, large.max_grad_norm, large.decay_after) == (55, 10, 14)
    assert large.lr_decay == pytest.approx(1 / 1.15)
    assert [small.lr_at(e) for e in (1, 4, 5, 6)] == [1.0, 1.0, 0.5, 0.25]
    stepped = large.updated({"lr_decay": 0.1, "decay_after": 1, "decay_every": 18})  # the authors' "sparselarge"
    assert [stepped.lr_at(e) for e in (1, 18, 19, 36, 37)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert small.tau == 0 and small.updated({"group_lasso": 0.001}).tau == 1e-4
    assert small.updated({"group_lasso": 0.001, "threshold": 0.0}).tau == 0  # the settings-file name before 0.2
    assert small.updated({"group_lasso": 0.001}).resolved().weight_threshold == 1e-4


def test_settings_file_then_flags(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"lambda": 0.002, "epochs": 1, "batch_size": 4, "bptt": 6, "max_batches": 3}))
    output = tmp_path / "s.safetensors"
    result = run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir, "-o", output,
                     "--settings", settings, "--bptt", "5")
    assert result.code == 0, result.stderr
    start = log_records(output)[0]
    assert start["settings"]["group_lasso"] == 0.002 and start["settings"]["bptt"] == 5
    assert start["settings"]["weight_threshold"] == 1e-4
    settings.write_text(json.dumps({"learning_rate": 1}))
    bad = run_cli("train", "--preset", "tiny", "--data", corpus_dir, "-o", tmp_path / "x.safetensors",
                  "--settings", settings)
    assert bad.code == 2 and "unknown setting(s) learning_rate" in bad.stderr
    with pytest.raises(IsscliError, match="lr_decay"):
        recipe("small").updated({"lr_decay": 1.5})


def test_outputs_are_checked_before_training(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    existing = tmp_path / "exists.safetensors"
    existing.write_bytes(b"keep me")
    result = run_cli("train", "--preset", "tiny", "--data", corpus_dir, "-o", existing)
    assert result.code == 2 and "already exists" in result.stderr
    assert existing.read_bytes() == b"keep me"
    nothing = run_cli("train", "--preset", "tiny", "--data", corpus_dir, "-o", tmp_path / "n.safetensors", "--resume")
    assert nothing.code == 2 and "no resumable run" in nothing.stderr
    assert run_cli("finetune", existing, "-o", existing, "--lambda", "1").code == 2


def test_eval_refuses_a_corpus_with_another_vocabulary(run_cli, corpus_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    base = tmp_path / "base.safetensors"
    assert run_cli("train", "--preset", "tiny", "--config", model_json(tmp_path), "--data", corpus_dir, "-o", base,
                   *ONE_EPOCH).code == 0
    other = tmp_path / "other"
    other.mkdir()
    for path in corpus_dir.iterdir():  # same number of words, one of them spelled differently
        (other / path.name).write_text(path.read_text(encoding="utf-8").replace("cat", "cow"), encoding="utf-8")
    result = run_cli("eval", base, "--data", other)  # the model reads with the vocabulary it carries: no "cow"
    assert result.code == 2 and "word 'cow' is not in the vocabulary (the vocabulary stored in" in result.stderr
    (other / "ptb.train.txt").write_text(" only three words \n", encoding="utf-8")
    (other / "ptb.valid.txt").write_text(" only \n", encoding="utf-8")
    (other / "ptb.test.txt").write_text(" words \n", encoding="utf-8")
    smaller = run_cli("eval", base, "--data", other)
    assert smaller.code == 2 and "word 'only' is not in the vocabulary" in smaller.stderr


def test_classifier_trains_and_evaluates_with_the_same_loop(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    rng = random.Random(0)
    folder = tmp_path / "sst"
    folder.mkdir()
    for split, count in (("train", 120), ("dev", 30), ("test", 30)):
        lines = []
        for _ in range(count):
            label = rng.randint(0, 1)
            words = [rng.choice(["film", "plot", "actor", "scene"]) for _ in range(rng.randint(2, 6))]
            words.insert(rng.randint(0, len(words)), "great" if label else "awful")
            lines.append(f"{label} {' '.join(words)}\n")
        (folder / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    config = tmp_path / "clf.json"
    config.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[4, 4]], "dropout": 0.0}))
    output = tmp_path / "clf.safetensors"
    result = run_cli("train", "--preset", "bilstm-classifier", "--config", config, "--data", folder, "-o", output,
                     "--epochs", "3", "--batch-size", "10", "--lr", "0.02", "--lambda", "0.001")
    assert result.code == 0, result.stderr
    assert "valid acc" in result.stdout and "rnn.l0_reverse" in result.stdout
    report = eval_json(run_cli, output, folder)
    assert report["accuracy"] > 0.6 and report["count"] == 30
    assert run_cli("train", "--preset", "bilstm-classifier", "-o", tmp_path / "y.safetensors").code == 2
