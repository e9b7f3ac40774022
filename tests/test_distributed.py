"""Training on 2 gloo ranks (torchrun, CPU): the same model as one process, only rank 0 writes, a killed rank is
restarted and the run ends as if nothing happened, and a run resumes on another number of ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

import isscli
from tests.conftest import write_toy_corpus

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform != "linux",
                                reason="needs torch.distributed (gloo) and Linux's /proc")

QUICK = {"epochs": 2, "batch_size": 4, "bptt": 8, "max_batches": 20, "eval_batch_size": 4}
FLAGS = ["--epochs", "2", "--batch-size", "4", "--bptt", "8", "--max-batches", "20", "--eval-batch-size", "4",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ddp")
    corpus = write_toy_corpus(folder, (300, 30, 30))
    config = folder / "model.json"
    config.write_text(json.dumps({"embedding_size": 16, "hidden_sizes": [[32], [24]]}), encoding="utf-8")
    dense = folder / "dense.safetensors"
    isscli.train(isscli.TrainRequest(preset="tiny", config=config, data=corpus, output=dense, device="cpu",
                                     settings={**QUICK, "epochs": 1}))
    return {"corpus": corpus, "config": config, "dense": dense}


def torchrun(*args: object, ranks: int = 2, restarts: int = 0, tag: str = "",
             background: bool = False) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               f"--max-restarts={restarts}", "-m", "isscli", *map(str, args)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "ISSCLI_TEST_TAG": tag}
    if background:
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=180)


def largest_difference(a: Path, b: Path) -> float:
    first, second = isscli.load(a).tensors, isscli.load(b).tensors
    return max(float((first[name] - second[name]).abs().max()) for name in first)


@pytest.mark.parametrize("variant", ["lambda", "target", "set"])
def test_two_ranks_train_the_model_one_process_trains(toy, tmp_path: Path, variant: str) -> None:  # noqa: ANN001
    if variant == "set":
        request = isscli.TrainRequest(preset="tiny", config=toy["config"], data=toy["corpus"], method="set",
                                      density=0.3, output=tmp_path / "one.safetensors", device="cpu",
                                      settings={**QUICK, "group_lasso": 0.01})
        command = ["train", "--preset", "tiny", "--config", toy["config"], "--method", "set", "--density", "0.3",
                   "--lambda", "0.01"]
    elif variant == "target":
        request = isscli.FinetuneRequest(checkpoint=toy["dense"], data=toy["corpus"], target_hidden=[8, 6],
                                         prune_epochs=2, recover_epochs=1, output=tmp_path / "one.safetensors",
                                         device="cpu", settings={**QUICK, "weight_threshold": 1e-3})
        command = ["finetune", toy["dense"], "--target-hidden", "8,6", "--prune-epochs", "2", "--recover-epochs", "1",
                   "--weight-threshold", "1e-3"]
    else:
        request = isscli.FinetuneRequest(checkpoint=toy["dense"], data=toy["corpus"], device="cpu",
                                         output=tmp_path / "one.safetensors", settings={**QUICK, "group_lasso": 0.02})
        command = ["finetune", toy["dense"], "--lambda", "0.02"]
    alone = isscli.train(request) if variant == "set" else isscli.finetune(request)
    done = torchrun(*command, "--data", toy["corpus"], *FLAGS, "-o", tmp_path / "two.safetensors",
                    "--json", tmp_path / "two.json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert largest_difference(tmp_path / "one.safetensors", tmp_path / "two.safetensors") < 1e-5
    two = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))
    assert two["best_epoch"] == alone.best_epoch and two["test"]["perplexity"] == pytest.approx(alone.test.perplexity,
                                                                                                 rel=1e-5)
    if variant == "set":
        masks = isscli.load(tmp_path / "one.safetensors").masks, isscli.load(tmp_path / "two.safetensors").masks
        assert all(torch.equal(masks[0][name], masks[1][name]) for name in masks[0])
    if variant == "target":
        assert two["controller"]["units"] == {"rnn.l0": 8, "rnn.l1": 6}
    # only rank 0 spoke and wrote: one log, one start record, one of each line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == [
        "two.json", "two.log.jsonl", "two.safetensors"]
    events = [json.loads(line)["event"] for line in (tmp_path / "two.log.jsonl").read_text().splitlines()]
    epochs = 3 if variant == "target" else 2
    assert events.count("start") == 1 and events.count("end") == 1 and events.count("epoch") == epochs
    assert done.stdout.count("best epoch") == 1


def workers(tag: str, rank: int) -> list[int]:
    """The PIDs of this test's training processes of ``rank`` (their environment carries the tag)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"ISSCLI_TEST_TAG={tag}".encode() in environment and f"RANK={rank}".encode() in environment:
            found.append(int(entry.name))
    return found


def test_a_killed_rank_is_restarted_and_the_run_ends_as_if_nothing_happened(toy, tmp_path: Path) -> None:  # noqa: ANN001
    flags = ["finetune", toy["dense"], "--lambda", "0.02", "--data", toy["corpus"], "--epochs", "2", "--batch-size",
             "4", "--bptt", "8", "--eval-batch-size", "4", "--max-batches", "80", "--save-every", "10"]
    straight = torchrun(*flags, "-o", tmp_path / "straight.safetensors")  # the same ranks, never interrupted
    assert straight.returncode == 0, straight.stderr[-2000:]
    tag = uuid.uuid4().hex
    output = tmp_path / "killed.safetensors"
    run = torchrun(*flags, "-o", output, restarts=1, tag=tag, background=True)
    resume = output.with_suffix(".resume.safetensors")
    deadline = time.monotonic() + 120
    while not resume.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.02)
    victims = workers(tag, 1)
    assert victims, "rank 1 was not found running"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=180)
    assert run.returncode == 0, "\n".join(line for line in stderr.splitlines() if "error" in line.lower())[-3000:]
    assert "internal error" not in stderr  # the surviving rank says what happened, in one line, and that it resumes
    if "error:" in stderr:  # rank 0 was in a collective when rank 1 died (else the agent just restarted it)
        assert "rank 0 lost contact with another rank of the run" in stderr and "resumable" in stderr
    events = [json.loads(line)["event"] for line in output.with_suffix(".log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "resume" in events and events[-1] == "end"
    assert largest_difference(tmp_path / "straight.safetensors", output) < 1e-5
    assert not resume.exists()


def test_a_run_resumes_on_another_number_of_ranks(toy, tmp_path: Path) -> None:  # noqa: ANN001
    request = isscli.FinetuneRequest(checkpoint=toy["dense"], data=toy["corpus"], output=tmp_path / "one.safetensors",
                                     device="cpu", settings={**QUICK, "group_lasso": 0.02, "epochs": 3})
    isscli.finetune(request)
    half = torchrun("finetune", toy["dense"], "--lambda", "0.02", "--data", toy["corpus"], *FLAGS, "--epochs", "3",
                    "--stop-after", "1", "-o", tmp_path / "moved.safetensors")
    assert half.returncode == 0, half.stderr[-2000:]
    finished = isscli.finetune(isscli.FinetuneRequest(
        checkpoint=toy["dense"], data=toy["corpus"], output=tmp_path / "moved.safetensors", device="cpu",
        resume=True, settings={**QUICK, "group_lasso": 0.02, "epochs": 3}))
    assert finished.resumed_from_epoch == 1
    assert largest_difference(tmp_path / "one.safetensors", tmp_path / "moved.safetensors") < 1e-5


def test_the_batch_must_split_evenly_over_the_ranks(toy, tmp_path: Path) -> None:  # noqa: ANN001
    done = torchrun("finetune", toy["dense"], "--lambda", "0.02", "--data", toy["corpus"], *FLAGS, "--batch-size", "5",
                    "-o", tmp_path / "x.safetensors")
    assert done.returncode != 0 and "--batch-size 5 is not a multiple of the 2 ranks" in done.stderr
