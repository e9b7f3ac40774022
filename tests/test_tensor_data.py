"""Tensor data (.safetensors/.npz) and TensorTask: loading, splitting, validation, losses and scores checked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from isscli.data.tensors import OBJECTIVES, TensorData, is_tensor_file, load_tensor_data, load_tensor_inputs
from isscli.io.errors import IsscliError
from isscli.learn.distributed import Ranks
from isscli.learn.tasks import Evaluation, TensorTask

CPU = torch.device("cpu")


class Forecaster(nn.Module):
    """Float x [B, T, F] → one value per sample ([B], or [B, 1] with ``column``), plus a state to show tuples work."""

    def __init__(self, features: int = 3, column: bool = False) -> None:
        super().__init__()
        self.rnn = nn.LSTM(features, 5, batch_first=True)
        self.head = nn.Linear(5, 1)
        self.column = column

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        out, state = self.rnn(x)
        value = self.head(out[:, -1])
        return (value if self.column else value.squeeze(1)), state


class Classifier(nn.Module):
    """Token ids [B, T] and lengths → [B, C] logits from the last real step."""

    def __init__(self, vocab: int = 7, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 4)
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out[torch.arange(x.shape[0]), lengths - 1])


class Tagger(nn.Module):
    """Token ids [B, T] → [B, T, C] logits, one per step."""

    def __init__(self, vocab: int = 7, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 4)
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0])


def save(path: Path, arrays: dict[str, torch.Tensor]) -> Path:
    """Write ``arrays`` as .safetensors or .npz, by ``path``'s suffix."""
    if path.suffix == ".npz":
        np.savez(path, **{key: value.numpy() for key, value in arrays.items()})
    else:
        save_file({key: value.clone().contiguous() for key, value in arrays.items()}, str(path))
    return path


def series(count: int = 10, steps: int = 6, features: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"x": torch.randn(count, steps, features, generator=generator),
            "y": torch.randn(count, generator=generator)}


def message(error: pytest.ExceptionInfo[IsscliError]) -> str:
    return str(error.value)


# ---- loading and splitting


def test_split_rule_cuts_in_file_order(tmp_path: Path) -> None:
    arrays = series()
    arrays["x"][:, 0, 0] = torch.arange(10.0)  # the row number, to see which rows each split got
    data = load_tensor_data(save(tmp_path / "d.safetensors", arrays), "regression")
    assert [len(split) for split in data.splits.values()] == [8, 1, 1]
    assert data.splits["train"].x[:, 0, 0].tolist() == list(range(8))
    assert data.splits["valid"].x[:, 0, 0].tolist() == [8.0]
    assert data.splits["test"].x[:, 0, 0].tolist() == [9.0]
    assert torch.equal(data.splits["valid"].y, arrays["y"][8:9])
    assert data.split_rule == "x, y split in file order: 8 train, 1 valid, 1 test (`split_rule` 0.8,0.1,0.1)"
    assert data.num_classes is None and data.objective == "regression"
    described = data.describe()
    assert described["call"] == "model(x)"
    assert described["splits"]["train"] == {"count": 8, "x_shape": [8, 6, 3], "x_dtype": "float32", "y_shape": [8],
                                            "has_lengths": False}
    assert len(described["sha256"]) == 64 and described["split_rule"] == data.split_rule
    assert [t.shape for t in data.example_input(3)] == [torch.Size([3, 6, 3])]
    assert [t.shape for t in data.example_input(50)] == [torch.Size([8, 6, 3])]  # train is smaller


def test_two_fraction_rule_has_no_test(tmp_path: Path) -> None:
    data = load_tensor_data(save(tmp_path / "d.safetensors", series()), "regression", split_rule="0.7, 0.3")
    assert list(data.splits) == ["train", "valid"] and len(data.splits["valid"]) == 3
    assert "no test" in data.split_rule
    task = TensorTask(data, 4, 4, 0, CPU)
    with pytest.raises(IsscliError, match="d.safetensors has no test split"):
        task.evaluate(Forecaster(), "test")


@pytest.mark.parametrize("separator", ["_", ".", "/"])
def test_per_split_keys(tmp_path: Path, separator: str) -> None:
    arrays = {f"{split}{separator}{name}": value for split, count in (("train", 6), ("valid", 2), ("test", 3))
              for name, value in series(count).items()}
    data = load_tensor_data(save(tmp_path / "d.safetensors", arrays), "regression")
    assert {name: len(split) for name, split in data.splits.items()} == {"train": 6, "valid": 2, "test": 3}
    assert torch.equal(data.splits["test"].y, arrays[f"test{separator}y"])
    assert data.split_rule == "the file's train/valid/test splits: 6 train, 2 valid, 3 test"


def test_per_split_without_test(tmp_path: Path) -> None:
    arrays = {f"{split}.{name}": value for split in ("train", "valid") for name, value in series(4).items()}
    data = load_tensor_data(save(tmp_path / "d.npz", arrays), "regression")
    assert data.split_rule == "the file's train/valid splits: 4 train, 4 valid, no test"
    with pytest.raises(IsscliError, match="d.npz has no test split"):
        data.split("test")
    with pytest.raises(IsscliError, match="`split_rule` applies to a file holding x and y"):
        load_tensor_data(tmp_path / "d.npz", "regression", split_rule="0.5,0.5")


def test_npz_and_safetensors_agree(tmp_path: Path) -> None:
    arrays = {"x": torch.randint(0, 7, (10, 5)), "y": torch.randint(0, 3, (10,)),
              "lengths": torch.tensor([5, 4, 3, 2, 1, 5, 4, 3, 2, 1])}
    a = load_tensor_data(save(tmp_path / "d.npz", arrays), "classification")
    b = load_tensor_data(save(tmp_path / "d.safetensors", arrays), "classification")
    assert a.num_classes == b.num_classes == int(arrays["y"].max()) + 1
    for name in ("train", "valid", "test"):
        for field in ("x", "y", "lengths"):
            assert torch.equal(getattr(a.splits[name], field), getattr(b.splits[name], field))
    assert a.describe()["call"] == "model(x, lengths)"
    assert is_tensor_file("d.npz") and is_tensor_file(tmp_path / "D.SAFETENSORS") and not is_tensor_file("d.pt")


# ---- the three objectives, scored by hand


def test_regression_loss_and_evaluation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = load_tensor_data(save(tmp_path / "d.safetensors", series(20)), "regression")
    task, model = TensorTask(data, 4, 3, 1, CPU), Forecaster()
    rows = next(iter(task.batches(1, None)))
    train = data.splits["train"]
    expected = F.mse_loss(model(train.x[rows])[0], train.y[rows])
    loss = task.step(model, rows)
    assert loss.count == 4 and loss.total / loss.count == pytest.approx(expected.item(), rel=1e-6)
    assert loss.objective.item() == pytest.approx(expected.item(), rel=1e-6)
    model.train()
    score = task.evaluate(model, "valid")
    assert model.training  # its mode restored
    with torch.no_grad():
        hand = F.mse_loss(model.eval()(data.splits["valid"].x)[0], data.splits["valid"].y)
    assert score.count == 2 and score.accuracy is None and score.objective == "regression"
    assert score.loss == pytest.approx(float(hand), rel=1e-6)
    trivial = float(((data.splits["valid"].y - data.splits["train"].y.mean()) ** 2).mean())
    assert score.trivial_loss == pytest.approx(trivial, rel=1e-6)
    assert score.rank() == (score.loss,) and score.metric.name == "loss"
    assert score.guard_value == pytest.approx(score.loss + trivial)  # a blow-up against the targets' own spread


def test_regression_with_vector_targets_averages_elements(tmp_path: Path) -> None:
    """y [N, 2]: the objective is the mean over all elements, total the sum of each sample's mean."""
    arrays = series(10)
    arrays["y"] = torch.randn(10, 2)
    data = load_tensor_data(save(tmp_path / "d.npz", arrays), "regression")

    class Two(Forecaster):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.head(self.rnn(x)[0][:, -1])] * 2, dim=1) * torch.tensor([1.0, -1.0])

    model, rows = Two(), torch.tensor([0, 3, 5])
    loss = TensorTask(data, 3, 3, 0, CPU).step(model, rows)
    expected = F.mse_loss(model(data.splits["train"].x[rows]), data.splits["train"].y[rows])
    assert loss.count == 3 and loss.total / 3 == pytest.approx(expected.item(), rel=1e-6)
    assert loss.objective.item() == pytest.approx(expected.item(), rel=1e-6)


def test_regression_refuses_broadcast(tmp_path: Path) -> None:
    data = load_tensor_data(save(tmp_path / "d.safetensors", series()), "regression")
    with pytest.raises(IsscliError) as error:
        TensorTask(data, 4, 4, 0, CPU).step(Forecaster(column=True), torch.tensor([0, 1, 2, 3]))
    assert "output has shape [4, 1] but y has shape [4]" in message(error)
    assert "return shape [B] from forward, or store y as [N, 1]" in message(error)


def test_classification_loss_and_accuracy(tmp_path: Path) -> None:
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    arrays = {"x": torch.randint(0, 7, (30, 6), generator=generator),
              "y": torch.randint(0, 3, (30,), generator=generator),
              "lengths": torch.randint(1, 7, (30,), generator=generator)}
    data = load_tensor_data(save(tmp_path / "d.safetensors", arrays), "classification", split_rule="0.6,0.2,0.2")
    assert data.num_classes == 3
    task, model = TensorTask(data, 5, 4, 0, CPU), Classifier()
    rows = torch.tensor([1, 7, 2, 9, 11])
    train = data.splits["train"]
    expected = F.cross_entropy(model(train.x[rows], train.lengths[rows]), train.y[rows])
    loss = task.step(model, rows)
    assert loss.count == 5 and loss.total / 5 == pytest.approx(expected.item(), rel=1e-6)
    assert loss.objective.item() == pytest.approx(expected.item(), rel=1e-6)
    score = task.evaluate(model, "test")
    test = data.splits["test"]
    with torch.no_grad():
        logits = model(test.x, test.lengths)
    assert score.count == 6
    assert score.accuracy == int((logits.argmax(1) == test.y).sum()) / 6
    assert score.loss == pytest.approx(float(F.cross_entropy(logits, test.y)), rel=1e-6)
    assert score.metric.name == "accuracy" and score.rank() == (-score.accuracy, score.loss)
    assert set(score.to_dict()) == {"split", "loss", "perplexity", "count", "accuracy", "objective"}
    with pytest.raises(IsscliError, match=r"needs \[5, C\] with C ≥ 4"):
        TensorTask(load_tensor_data(tmp_path / "d.safetensors", "classification", split_rule="0.6,0.2,0.2",
                                    num_classes=4), 5, 4, 0, CPU).step(model, rows)


def test_tagging_ignores_minus_100_and_padding(tmp_path: Path) -> None:
    torch.manual_seed(2)
    x = torch.randint(0, 7, (4, 5))
    y = torch.tensor([[0, 1, 2, 3, 1], [2, -100, 1, 0, 0], [1, 1, 9, 9, 9], [3, 2, 1, -100, 0]])
    lengths = torch.tensor([5, 4, 2, 5])  # row 2: steps 2… are padding (their label 9 is not a class)
    arrays = {"train.x": x, "train.y": y, "train.lengths": lengths,
              "valid.x": x, "valid.y": y, "valid.lengths": lengths}
    data = load_tensor_data(save(tmp_path / "d.safetensors", arrays), "tagging")
    assert data.num_classes == 4  # the padding's 9 does not count
    counted = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 1]], dtype=torch.bool)
    model, task = Tagger(), TensorTask(data, 4, 3, 0, CPU)
    loss = task.step(model, torch.arange(4))
    logits = model(x)
    expected = F.cross_entropy(logits[counted], y[counted])
    assert loss.count == int(counted.sum()) == 14
    assert loss.total / loss.count == pytest.approx(expected.item(), rel=1e-6)
    assert loss.objective.item() == pytest.approx(expected.item(), rel=1e-6)
    score = task.evaluate(model, "valid")
    assert score.count == 14
    assert score.accuracy == int((logits.argmax(2)[counted] == y[counted]).sum()) / 14
    assert score.loss == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(IsscliError, match=r"tagging needs \[4, 5, C\] with C ≥ 4"):
        task.step(Tagger(classes=3), torch.arange(4))


def test_tagging_accepts_output_cut_at_longest_length(tmp_path: Path) -> None:
    """``pad_packed_sequence`` returns only the batch's longest length: the steps cut off are all ignored anyway."""
    x = torch.randint(0, 7, (3, 6))
    arrays = {"x": x, "y": torch.randint(0, 4, (3, 6)), "lengths": torch.tensor([3, 2, 3])}
    data = load_tensor_data(save(tmp_path / "d.safetensors", arrays), "tagging", split_rule="0.34,0.33,0.33")

    class Packed(Tagger):
        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[:, : int(lengths.max())]

    loss = TensorTask(data, 1, 1, 0, CPU).step(Packed(), torch.tensor([0]))
    assert loss.count == 3


# ---- batches


def test_batches_are_reproducible_and_resumable(tmp_path: Path) -> None:
    data = load_tensor_data(save(tmp_path / "d.safetensors", series(50)), "regression")
    task = TensorTask(data, 8, 8, 3, CPU)
    first = [b.tolist() for b in task.batches(1, None)]
    assert first == [b.tolist() for b in TensorTask(data, 8, 8, 3, CPU).batches(1, None)]
    assert first != [b.tolist() for b in task.batches(2, None)]
    assert [len(b) for b in first] == [8, 8, 8, 8, 8] and task.num_batches(None) == 5
    assert sorted(sum(first, [])) == list(range(40))
    assert [b.tolist() for b in task.batches(1, None, start=2)] == first[2:]
    assert [b.tolist() for b in task.batches(1, 3, start=1)] == first[1:3] and task.num_batches(3) == 3
    assert task.carried() == {}


# ---- errors


@pytest.mark.parametrize("objective", [None, "forecast"])
def test_objective_is_required(tmp_path: Path, objective: str | None) -> None:
    with pytest.raises(IsscliError) as error:
        load_tensor_data(save(tmp_path / "d.safetensors", series()), objective)
    assert "`objective`" in message(error) and all(name in message(error) for name in OBJECTIVES)


def bad(tmp_path: Path, arrays: dict[str, torch.Tensor], objective: str = "regression", **options: object) -> str:
    with pytest.raises(IsscliError) as error:
        load_tensor_data(save(tmp_path / "d.safetensors", arrays), objective, **options)
    assert "\n" not in message(error)
    return message(error)


def test_bad_data_is_one_line(tmp_path: Path) -> None:
    arrays = series()
    assert "y is float32; classification needs integer class ids" in bad(tmp_path, arrays, "classification")
    assert "`split_rule` '0.8,0.1,0.2' sums to 1.1, not 1" in bad(tmp_path, arrays, split_rule="0.8,0.1,0.2")
    assert "leaves the test split" in bad(tmp_path, series(4), split_rule="0.8,0.1,0.1")
    nan = dict(arrays, x=arrays["x"].clone())
    nan["x"][3, 2, 1] = float("nan")
    assert "x holds NaN or infinite values" in bad(tmp_path, nan)
    long = dict(arrays, lengths=torch.tensor([6] * 9 + [7]))
    assert "lengths range 6…7, outside 1…6" in bad(tmp_path, long)
    assert "sample counts differ on dim 0 (x 10, y 9)" in bad(tmp_path, dict(arrays, y=arrays["y"][:9]))
    assert "has no y (found x)" in bad(tmp_path, {"x": arrays["x"]})
    assert "has no valid.x, valid.y (found train.x, train.y)" in bad(
        tmp_path, {"train.x": arrays["x"], "train.y": arrays["y"]})
    assert "label -1; classes must be ≥ 0" in bad(
        tmp_path, {"x": torch.zeros(10, 3, dtype=torch.long), "y": torch.tensor([0] * 9 + [-1])}, "classification")
    assert "float x needs [N, T, F]" in bad(tmp_path, dict(arrays, x=arrays["x"][:, :, 0]))
    assert "does not read: lenghts" in bad(tmp_path, dict(arrays, lenghts=torch.ones(10, dtype=torch.long)))
    assert "`num_classes` is for classification" in bad(tmp_path, arrays, num_classes=3)


def test_unreadable_files(tmp_path: Path) -> None:
    for name in ("bad.safetensors", "bad.npz"):
        (tmp_path / name).write_bytes(b"not a tensor file at all")
        with pytest.raises(IsscliError, match=f"cannot read tensor data .*{name}"):
            load_tensor_data(tmp_path / name, "regression")
    with pytest.raises(IsscliError, match="neither .safetensors nor .npz"):
        load_tensor_data(tmp_path / "data.csv", "regression")
    with pytest.raises(IsscliError, match="not found"):
        load_tensor_data(tmp_path / "missing.npz", "regression")


# ---- Evaluation records


def test_evaluation_records() -> None:
    regression = Evaluation("valid", 0.25, 10, objective="regression")
    assert regression.to_dict() == {"split": "valid", "loss": 0.25, "count": 10, "objective": "regression"}
    assert regression.rank() == (0.25,) and regression.guard_value == 0.25 and regression.metric.name == "loss"
    assert Evaluation("valid", 0.25, 10, objective="regression", trivial_loss=1.0).guard_value == 1.25
    language = Evaluation("valid", 4.0, 100)
    assert list(language.to_dict()) == ["split", "loss", "perplexity", "count"]
    assert language.guard_value == language.perplexity and language.metric.name == "perplexity"
    assert list(Evaluation("test", 0.5, 8, 0.75).to_dict()) == ["split", "loss", "perplexity", "count", "accuracy"]
    assert isinstance(load_tensor_data, object) and TensorData  # the public names import


def test_ranks_share_a_batch_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks' objectives average to the whole batch's mean (tagging: over the whole batch's counted steps)."""
    x = torch.randint(0, 7, (4, 5))
    y = torch.tensor([[0, 1, 2, 3, 1], [2, -100, 1, 0, 0], [1, -100, -100, -100, -100], [3, 2, 1, -100, 0]])
    arrays = {"train.x": x, "train.y": y, "valid.x": x, "valid.y": y}
    task = TensorTask(load_tensor_data(save(tmp_path / "d.safetensors", arrays), "tagging"), 4, 4, 0, CPU)
    model, batch = Tagger(), torch.arange(4)
    whole = task.step(model, batch)
    parts = []
    for rank in (0, 1):
        monkeypatch.setattr("isscli.learn.tensor_task.current", lambda rank=rank: Ranks(rank, 2))
        parts.append(task.step(model, batch))
    assert [part.count for part in parts] == [9, 5] and whole.count == 14
    assert sum(part.objective.item() for part in parts) / 2 == pytest.approx(whole.objective.item(), rel=1e-6)
    assert sum(part.total for part in parts) == pytest.approx(whole.total, rel=1e-6)


def test_inputs_only(tmp_path: Path) -> None:
    """Tracing or timing a model needs x (and lengths) only: no objective, no y."""
    x = torch.randn(6, 4, 2, dtype=torch.float64)
    split = load_tensor_inputs(save(tmp_path / "x.safetensors", {"train_x": x, "train_lengths": torch.full((6,), 4)}))
    assert len(split) == 6 and split.x.dtype == torch.float32 and split.lengths.tolist() == [4] * 6
    assert [t.shape for t in split.model_input(slice(0, 2), CPU)] == [torch.Size([2, 4, 2]), torch.Size([2])]
    with pytest.raises(IsscliError, match="has no x"):
        load_tensor_inputs(save(tmp_path / "y.safetensors", {"y": torch.zeros(3)}))
