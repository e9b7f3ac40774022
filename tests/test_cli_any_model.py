"""The command line on models isscli did not make: a forecaster, a mean-pooling GRU classifier, a bidirectional
tagger and an encoder–decoder, written here in plain PyTorch, saved as plain state_dicts, run with
``--model models.py:Class`` on tensor data — and, without ``--model``, refused rather than guessed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from isscli.live.compact import load_compacted
from isscli.live.usermodel import import_model_class
from isscli.models.checkpoint import load_checkpoint
from tests.test_bench import doc_json

MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class Forecaster(nn.Module):
        def __init__(self, features=3, hidden=12, layers=2):
            super().__init__()
            self.lstm = nn.LSTM(features, hidden, layers, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1]).squeeze(-1)


    class MeanGRU(nn.Module):
        def __init__(self, vocab=30, emb=8, hidden=10, classes=3):
            super().__init__()
            self.embed = nn.Embedding(vocab, emb)
            self.gru = nn.GRU(emb, hidden, batch_first=True)
            self.out = nn.Linear(hidden, classes)

        def forward(self, x, lengths):
            h, _ = self.gru(self.embed(x))
            mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1).to(h.dtype)
            return self.out((h * mask).sum(1) / lengths[:, None].to(h.dtype))


    class Tagger(nn.Module):
        def __init__(self, vocab=20, emb=6, hidden=8, tags=4):
            super().__init__()
            self.embed = nn.Embedding(vocab, emb)
            self.lstm = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * hidden, tags)

        def forward(self, x):
            return self.out(self.lstm(self.embed(x))[0])


    class Seq2Seq(nn.Module):
        def __init__(self, features=2, hidden=10, horizon=3):
            super().__init__()
            self.horizon = horizon
            self.encoder = nn.LSTM(features, hidden, batch_first=True)
            self.decoder = nn.LSTM(1, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x):
            _, state = self.encoder(x)
            out, _ = self.decoder(x[:, -1:, :1].expand(-1, self.horizon, 1), state)
            return self.head(out).squeeze(-1)
''')
N = 60
QUICK = ["--epochs", "3", "--prune-epochs", "2", "--recover-epochs", "1", "--batch-size", "16", "--device", "cpu"]


def briefly_trained(model: torch.nn.Module, inputs: tuple, target: torch.Tensor, loss) -> torch.nn.Module:  # noqa: ANN001
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        optimizer.zero_grad()
        loss(model(*inputs), target).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Their models file, their tensor data and their briefly trained models, saved as plain state_dicts."""
    folder = tmp_path_factory.mktemp("theirs")
    (folder / "models.py").write_text(MODELS, encoding="utf-8")
    classes = {name: import_model_class(f"{folder / 'models.py'}:{name}")
               for name in ("Forecaster", "MeanGRU", "Tagger", "Seq2Seq")}
    generator = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 12, N + 12)
    series = torch.stack([torch.stack([torch.sin(t[i:i + 8]), torch.cos(t[i:i + 8]), t[i:i + 8] / 12], -1)
                          for i in range(N)])
    tokens = torch.randint(1, 30, (N, 7), generator=generator)
    lengths = torch.randint(2, 8, (N,), generator=generator)
    tags_x = torch.randint(0, 20, (N, 6), generator=generator)
    data = {
        "Forecaster": ({"x": series, "y": torch.sin(t[8:8 + N])}, F.mse_loss),
        "MeanGRU": ({"x": tokens, "y": tokens[:, 0] % 3, "lengths": lengths}, F.cross_entropy),
        "Tagger": ({"x": tags_x, "y": tags_x % 4}, lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten())),
        "Seq2Seq": ({"x": series[:, :, :2].contiguous(),
                     "y": torch.stack([torch.sin(t[8 + i:11 + i]) for i in range(N)])}, F.mse_loss),
    }
    paths = {}
    torch.manual_seed(0)
    for name, (tensors, loss) in data.items():
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(folder / f"{name}.data.safetensors"))
        inputs = (tensors["x"], tensors["lengths"]) if "lengths" in tensors else (tensors["x"],)
        model = briefly_trained(classes[name](), inputs, tensors["y"], loss)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{name}.safetensors"))
        paths[name] = folder / f"{name}.safetensors"
    return {"folder": folder, "classes": classes, "data": data, "paths": paths}


def flags(theirs: dict, name: str) -> list:
    folder = theirs["folder"]
    return ["--model", f"{folder / 'models.py'}:{name}", "--data", folder / f"{name}.data.safetensors"]


def loaded(theirs: dict, name: str, path: Path) -> torch.nn.Module:
    """Their class holding a checkpoint isscli wrote (compacted or not), as they would load it."""
    return load_compacted(theirs["classes"][name](), load_checkpoint(path).tensors).eval()


def test_a_forecaster_start_to_finish(run_cli, theirs, tmp_path: Path) -> None:  # noqa: ANN001
    dense, model = theirs["paths"]["Forecaster"], flags(theirs, "Forecaster")
    groups = json.loads(run_cli("groups", dense, *model, "--json", "-").stdout)
    assert [(s["name"], s["components"]) for s in groups["sets"]] == [("lstm.l0", 12), ("lstm.l1", 12)]
    assert "head.weight" in groups["sets"][1]["tensors"] and "traced from" in groups["derivation"]

    tuned = tmp_path / "iss.safetensors"
    result = run_cli("finetune", dense, *model, "--objective", "regression", "--target-hidden", "5,4", *QUICK,
                     "-o", tuned, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["controller"]["targets"] == {"lstm.l0": 5, "lstm.l1": 4}
    assert "perplexity" not in report["test"] and report["test"]["objective"] == "regression"
    assert "x, y split in file order: 48 train, 6 valid, 6 test" in result.stderr  # the split rule, said
    assert load_checkpoint(tuned).config is None  # their class is theirs: no isscli config is invented
    provenance = load_checkpoint(tuned).provenance["parameters"]
    assert provenance["model"].endswith("models.py:Forecaster") and provenance["objective"] == "regression"

    pruned, small = tmp_path / "pruned.safetensors", tmp_path / "small.safetensors"
    assert run_cli("prune", tuned, *model, "--group-threshold", "0", "-o", pruned).code == 0
    compacted = run_cli("compact", pruned, *model, "-o", small, "--json", "-")
    assert compacted.code == 0, compacted.stderr
    report = json.loads(compacted.stdout)
    assert [s["components_after"] for s in report["sets"]] == [5, 4]
    assert report["max_output_difference"] <= 1e-5 and report["relative_difference"] is True
    assert "first 32 training rows" in report["verified_on"]

    ours = loaded(theirs, "Forecaster", small)  # their own class, now at 5 and 4 units
    assert [ours.lstm.weight_hh_l0.shape[1], ours.lstm.weight_hh_l1.shape[1]] == [5, 4]
    x, y = theirs["data"]["Forecaster"][0]["x"], theirs["data"]["Forecaster"][0]["y"]
    with torch.no_grad():
        expected = F.mse_loss(ours(x[54:]), y[54:]).item()
    scored = json.loads(run_cli("eval", small, *model, "--objective", "regression", "--json", "-").stdout)
    assert scored["loss"] == pytest.approx(expected, rel=1e-5) and scored["count"] == 6
    assert scored["perplexity"] is None and scored["objective"] == "regression"

    timed = run_cli("bench", small, "--against", dense, *model, "--repeats", "3", "--json", "-")
    assert timed.code == 0, timed.stderr
    bench = json.loads(timed.stdout)
    compact_macs = 8 * (4 * 5 * (3 + 5) + 4 * 4 * (5 + 4)) + 4  # per sequence: 8 steps of both layers, the head
    assert [m["multiply_adds_per_sequence"] for m in bench["models"]] == [compact_macs, 8 * (4 * 12 * 15 + 4 * 12 * 24)
                                                                         + 12]
    assert bench["settings"]["steps"] is None and "first 10 training rows" in bench["settings"]["inputs"]
    jsonschema.validate(bench, doc_json("JSON schema"))  # the documented wire format
    assert set(bench["models"][0]["timings"]) == {"full", "latency"}

    onnxruntime = pytest.importorskip("onnxruntime")
    exported = tmp_path / "small.onnx"
    done = run_cli("export", small, *model, "-o", exported, "--json", "-")
    assert done.code == 0, done.stderr
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    fresh = torch.randn(5, 11, 3)  # a batch and a length the export never saw
    with torch.no_grad():
        expected = ours(fresh).numpy()
    assert abs(session.run(None, {"x": fresh.numpy()})[0] - expected).max() <= 1e-5


def test_a_mean_pooling_classifier_is_refused_without_its_class_and_right_with_it(run_cli, theirs,  # noqa: ANN001
                                                                                tmp_path: Path) -> None:
    dense = theirs["paths"]["MeanGRU"]
    for command in (["export", dense, "-o", tmp_path / "guess.onnx"], ["bench", dense],
                    ["eval", dense, "--data", tmp_path], ["compact", dense, "-o", tmp_path / "c.safetensors"]):
        refused = run_cli(*command)
        assert refused.code == 2 and "carries no model config" in refused.stderr and "--model" in refused.stderr
        assert "verified" not in refused.stdout
    assert not list(tmp_path.iterdir())  # nothing written
    said = run_cli("compact", dense, "--arch", "classifier", "-o", tmp_path / "c.safetensors", "--json", "-")
    assert said.code == 0 and "max-pooling" in json.loads(said.stdout)["assumption"]  # assumed, said, recorded
    assert "assumed:" in said.stderr

    model = flags(theirs, "MeanGRU")
    scored = json.loads(run_cli("eval", dense, *model, "--objective", "classification", "--json", "-").stdout)
    tensors = theirs["data"]["MeanGRU"][0]
    ours = loaded(theirs, "MeanGRU", dense)
    with torch.no_grad():
        logits = ours(tensors["x"][54:], tensors["lengths"][54:])
    assert scored["accuracy"] == pytest.approx(float((logits.argmax(1) == tensors["y"][54:]).float().mean()))

    onnxruntime = pytest.importorskip("onnxruntime")
    exported = tmp_path / "mean.onnx"
    assert run_cli("export", dense, *model, "-o", exported).code == 0
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    x, lengths = tensors["x"][:9], tensors["lengths"][:9]
    graph = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    with torch.no_grad():
        mean_pooled = ours(x, lengths).numpy()
        hidden, _ = ours.gru(ours.embed(x))
        max_pooled = ours.out(hidden.masked_fill(torch.arange(7)[None, :, None] >= lengths[:, None, None],
                                                 float("-inf")).amax(1)).numpy()
    assert abs(graph - mean_pooled).max() <= 1e-5 and abs(graph - max_pooled).max() > 1e-2  # theirs, not a guess


def test_a_bidirectional_tagger_is_scored_per_step_and_exported_per_step(run_cli, theirs, tmp_path: Path) -> None:  # noqa: ANN001
    dense, model = theirs["paths"]["Tagger"], flags(theirs, "Tagger")
    assert run_cli("export", dense, "-o", tmp_path / "guess.onnx").code == 2  # never a pooled classifier
    small_sets = json.loads(run_cli("groups", dense, *model, "--json", "-").stdout)["sets"]
    assert [s["name"] for s in small_sets] == ["lstm.l0", "lstm.l0_reverse"]
    tuned = tmp_path / "iss.safetensors"
    result = run_cli("finetune", dense, *model, "--objective", "tagging", "--target-hidden", "5,3", *QUICK, "-o", tuned)
    assert result.code == 0, result.stderr
    small = tmp_path / "small.safetensors"
    assert run_cli("compact", tuned, *model, "-o", small).code == 0
    ours = loaded(theirs, "Tagger", small)
    assert [ours.lstm.weight_hh_l0.shape[1], ours.lstm.weight_hh_l0_reverse.shape[1]] == [5, 3]
    tensors = theirs["data"]["Tagger"][0]
    with torch.no_grad():
        right = (ours(tensors["x"][54:]).argmax(2) == tensors["y"][54:]).float().mean().item()
    scored = json.loads(run_cli("eval", small, *model, "--objective", "tagging", "--json", "-").stdout)
    assert scored["accuracy"] == pytest.approx(right) and scored["count"] == 6 * 6  # per step
    onnxruntime = pytest.importorskip("onnxruntime")
    assert run_cli("export", small, *model, "-o", tmp_path / "tagger.onnx").code == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "tagger.onnx"), providers=["CPUExecutionProvider"])
    graph = session.run(None, {"x": tensors["x"][:3, :5].numpy()})[0]
    with torch.no_grad():
        assert graph.shape == (3, 5, 4) and abs(graph - ours(tensors["x"][:3, :5]).numpy()).max() <= 1e-5


def test_an_encoder_decoder_gets_one_set_per_layer_pair_and_compacts_again(run_cli, theirs, tmp_path: Path) -> None:  # noqa: ANN001
    dense, model = theirs["paths"]["Seq2Seq"], flags(theirs, "Seq2Seq")
    by_names = run_cli("groups", dense)
    assert by_names.code == 2 and "several recurrent modules (decoder, encoder)" in by_names.stderr
    assert "--model" in by_names.stderr
    sets = json.loads(run_cli("groups", dense, *model, "--json", "-").stdout)["sets"]
    assert [(s["name"], s["components"]) for s in sets] == [("encoder.l0+decoder.l0", 10)]
    half, quarter = tmp_path / "half.safetensors", tmp_path / "quarter.safetensors"
    for source, target in ((dense, half), (half, quarter)):  # a compacted model is pruned and compacted again
        pruned = tmp_path / f"{target.stem}.pruned.safetensors"
        assert run_cli("prune", source, *model, "--keep-fraction", "0.5", "-o", pruned).code == 0
        result = run_cli("compact", pruned, *model, "-o", target, "--json", "-")
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["max_output_difference"] <= 1e-5
    ours = loaded(theirs, "Seq2Seq", quarter)
    assert ours.encoder.weight_hh_l0.shape[1] == ours.decoder.weight_hh_l0.shape[1] == 2  # 10 → 5 → 2
    scored = json.loads(run_cli("eval", quarter, *model, "--objective", "regression", "--json", "-").stdout)
    tensors = theirs["data"]["Seq2Seq"][0]
    with torch.no_grad():
        assert scored["loss"] == pytest.approx(F.mse_loss(ours(tensors["x"][54:]), tensors["y"][54:]).item(), rel=1e-5)


def test_gates_and_sweeps_work_on_tensor_data(run_cli, theirs, tmp_path: Path) -> None:  # noqa: ANN001
    dense, model = theirs["paths"]["Forecaster"], flags(theirs, "Forecaster")
    loss = json.loads(run_cli("eval", dense, *model, "--objective", "regression", "--json", "-").stdout)["loss"]
    passed = run_cli("eval", dense, *model, "--objective", "regression", "--fail-above", loss * 1.01)
    failed = run_cli("eval", dense, *model, "--objective", "regression", "--fail-above", loss * 0.99)
    assert passed.code == 0 and failed.code == 1 and "loss" in failed.stderr
    wrong = run_cli("eval", dense, *model, "--objective", "regression", "--fail-below", "0.5")
    assert wrong.code == 2 and "--fail-below does not gate a model scored by loss" in wrong.stderr
    baseline = run_cli("eval", dense, *model, "--objective", "regression", "--baseline", dense, "--max-loss", "0",
                       "--json", "-")
    assert baseline.code == 0 and json.loads(baseline.stdout)["gate"]["baseline"] == pytest.approx(loss)

    swept = run_cli("sweep", dense, *model, "--objective", "regression", "--target-hidden", "6,6", "--epochs", "2",
                    "--prune-epochs", "1", "--recover-epochs", "1", "--bench-repeats", "1", "--no-plot",
                    "-o", tmp_path / "sweep", "--json", "-")
    assert swept.code == 0, swept.stderr
    report = json.loads(swept.stdout)
    assert report["metric"] == "loss" and report["baseline"]["loss"] == pytest.approx(loss)
    point = next(p for p in report["points"] if p["label"] == "hidden-6x6")
    assert point["hidden_sizes"] == [[6], [6]] and point["status"] == "ok"


@pytest.mark.parametrize(("arguments", "message"), [
    (["--model", "models.py"], "does not name a class"),
    (["--model", "absent.py:Forecaster"], "not found"),
    (["--model", "{folder}/models.py:Absent"], "has no 'Absent' (its nn.Module classes: Forecaster, MeanGRU"),
    (["--model", "{folder}/models.py:Forecaster", "--model-args", "{"], "--model-args is not valid JSON"),
    (["--model", "{folder}/models.py:Forecaster", "--model-args", '{"width": 3}'], "unexpected keyword argument"),
    (["--model", "{folder}/models.py:Forecaster", "--model-args", '{"layers": 1}'], "does not fit"),
    (["--model", "{folder}/models.py:Forecaster"], "the model must run on an input"),
    (["--model", "{folder}/models.py:Forecaster", "--input-shape", "ten"], "is not a shape"),
])
def test_a_wrong_model_is_one_line(run_cli, theirs, tmp_path: Path, arguments: list, message: str) -> None:  # noqa: ANN001
    filled = [str(a).replace("{folder}", str(theirs["folder"])) for a in arguments]
    result = run_cli("compact", theirs["paths"]["Forecaster"], *filled, "-o", tmp_path / "c.safetensors")
    assert result.code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "c.safetensors").exists()


def test_an_input_shape_stands_in_for_data(run_cli, theirs, tmp_path: Path) -> None:  # noqa: ANN001
    model = ["--model", f"{theirs['folder'] / 'models.py'}:Forecaster", "--input-shape", "4x9x3"]
    result = run_cli("compact", theirs["paths"]["Forecaster"], *model, "-o", tmp_path / "c.safetensors", "--json", "-")
    assert result.code == 0 and "random standard normal floats of shape 4x9x3" in \
        json.loads(result.stdout)["verified_on"]
    no_objective = run_cli("eval", theirs["paths"]["Forecaster"], *flags(theirs, "Forecaster"))
    assert no_objective.code == 2 and "--objective" in no_objective.stderr
    not_theirs = run_cli("eval", theirs["paths"]["Forecaster"], "--data",
                         theirs["folder"] / "Forecaster.data.safetensors", "--objective", "regression")
    assert not_theirs.code == 2 and "--model" in not_theirs.stderr


def test_a_run_of_their_model_resumes_bit_for_bit_and_only_on_its_own_data(run_cli, theirs, tmp_path: Path) -> None:  # noqa: ANN001
    dense, model = theirs["paths"]["Forecaster"], flags(theirs, "Forecaster")
    run = ["finetune", dense, *model, "--objective", "regression", "--target-hidden", "6,5", *QUICK]
    whole = json.loads(run_cli(*run, "-o", tmp_path / "whole.safetensors", "--json", "-").stdout)
    assert run_cli(*run, "-o", tmp_path / "cut.safetensors", "--stop-after", "1").code == 0
    resumed = run_cli(*run, "-o", tmp_path / "cut.safetensors", "--resume", "--json", "-")
    assert resumed.code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["test"] == whole["test"] and json.loads(resumed.stdout)["resumed_from_epoch"] == 1
    other = tmp_path / "other.safetensors"
    tensors = dict(theirs["data"]["Forecaster"][0])
    save_file({"x": tensors["x"].contiguous(), "y": (2 * tensors["y"]).contiguous()}, str(other))
    assert run_cli(*run, "-o", tmp_path / "moved.safetensors", "--stop-after", "1").code == 0
    moved = ["finetune", dense, "--model", model[1], "--data", other, *run[6:]]
    refused = run_cli(*moved, "-o", tmp_path / "moved.safetensors", "--resume")
    assert refused.code == 2 and "belongs to another run" in refused.stderr


def test_shrink_and_sweep_refuse_a_bad_reading_of_the_data_before_writing_anything(run_cli, theirs,  # noqa: ANN001
                                                                                   tmp_path: Path) -> None:
    dense, model = theirs["paths"]["Forecaster"], flags(theirs, "Forecaster")
    for command in (["shrink", dense, *model, "-o", tmp_path / "shrunk"],
                    ["sweep", dense, *model, "--target-hidden", "6,6", "--no-plot", "-o", tmp_path / "swept"]):
        result = run_cli(*command)  # no --objective: y's meaning is never guessed
        assert result.code == 2 and "no --objective given for tensor data" in result.stderr
    assert list(tmp_path.iterdir()) == []
