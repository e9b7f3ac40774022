"""`isscli sweep`: each point runs once, in sequence or in parallel; the table, JSON, plot and Pareto front."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from isscli.api import FinetuneRequest
from isscli.models.checkpoint import load_checkpoint
from isscli.runtime.pictures import BASELINE_RGB, PARETO_RGB, POINT_RGB, TradeoffPoint, tradeoff_plot
from isscli.sweeping import Point, make_points, pareto_front

image = pytest.importorskip("matplotlib.image")

QUICK = ["--epochs", "1", "--batch-size", "4", "--bptt", "8", "--max-batches", "10", "--eval-batch-size", "4",
         "--weight-threshold", "5e-3", "--bench-repeats", "2"]





def colour_fraction(png: Path, rgb: tuple[float, float, float]) -> float:
    pixels = image.imread(png)[:, :, :3]
    return float((np.abs(pixels - np.array(rgb)).sum(axis=2) < 0.06).mean())


def test_pareto_front_keeps_exactly_the_undominated_points() -> None:
    params = [100, 80, 60, 60, 40, 90]
    perplexity = [10.0, 11.0, 12.0, 13.0, 20.0, 12.0]
    # (60, 13) loses to (60, 12); (90, 12) loses to (80, 11); the rest trade size for perplexity
    assert pareto_front(params, perplexity) == [4, 2, 1, 0]
    speedups = [1.0, 2.0, 3.0, 3.0, 1.5]
    accuracy = [0.9, 0.85, 0.8, 0.8, 0.95]
    # higher is better on both axes; equal points do not dominate each other
    assert pareto_front(speedups, accuracy, lower_x=False, lower_y=False) == [2, 3, 1, 4]
    assert pareto_front([], []) == []
    assert pareto_front([5.0], [1.0]) == [0]
    with pytest.raises(ValueError):
        pareto_front([1.0], [])


def test_points_have_stable_labels() -> None:
    points = make_points([0.001, 0.002, 0.001], ["100,80"], ["20M"], [8.0])
    assert [p.label for p in points] == ["lambda-0.001", "lambda-0.002", "hidden-100x80", "params-20M", "speedup-8"]
    base = FinetuneRequest(checkpoint="dense.safetensors", settings={"epochs": 2})
    hidden = Point("hidden", "100,80").request(base, Path("p/model.safetensors"))
    assert hidden.target_hidden == "100,80" and hidden.output == Path("p/model.safetensors") and hidden.force
    tuned = Point("lambda", "0.001").request(base, Path("p/model.safetensors"))
    assert tuned.settings == {"epochs": 2, "group_lasso": 0.001, "keep": "last"} and tuned.target_hidden is None
    dense = Point("dense", "3").request(base, Path("p/model.safetensors"))
    assert dense.settings == {"epochs": 3, "group_lasso": 0.0, "l1": 0.0}
    assert Point("dense", "3").label == "dense-lambda0"
    assert base.settings == {"epochs": 2}  # the base request is left as it was


def test_sweep_runs_each_point_once_and_draws_the_tradeoff(run_cli, dense, corpus, tmp_path) -> None:  # noqa: ANN001
    folder = tmp_path / "sweep"
    first = run_cli("sweep", dense, "--lambda", "0.02,0.08", "--target-hidden", "6,5", "-o", folder,
                    "--data", corpus, *QUICK, "--json", tmp_path / "first.json")
    assert first.code == 0, first.stderr
    assert "sweep" in first.stdout and "lambda-0.02" in first.stdout and "hidden-6x5" in first.stdout
    assert all(len(line) <= 80 for line in first.stdout.splitlines()) and "…" not in first.stdout
    report = json.loads((tmp_path / "first.json").read_text(encoding="utf-8"))
    assert report["metric"] == "perplexity" and report["plot"] == str(folder / "tradeoff.png")
    rows = {row["label"]: row for row in report["points"]}
    assert list(rows) == ["lambda-0.02", "lambda-0.08", "hidden-6x5", "dense-lambda0"]
    for label, row in rows.items():
        assert row["status"] == "ok", row
        assert set(row) >= {"kind", "value", "hidden_sizes", "parameters", "perplexity", "speedup", "pareto"}
        compacted = load_checkpoint(folder / "points" / label / "compact.safetensors")
        assert row["parameters"] == compacted.num_parameters()
        assert row["hidden_sizes"] == compacted.config.hidden_sizes
        assert row["perplexity"] > 1 and row["speedup"] > 0
    assert rows["hidden-6x5"]["hidden_sizes"] == [[6], [5]]
    assert rows["hidden-6x5"]["targets"] == {"rnn.l0": 6, "rnn.l1": 5}
    assert rows["lambda-0.02"]["kind"] == "lambda" and rows["lambda-0.02"]["value"] == "0.02"
    # the fair dense point: λ = 0 for as long as the longest point (the target's 1 + 1 epochs), nothing removed
    assert rows["dense-lambda0"]["value"] == "2" and rows["dense-lambda0"]["hidden_sizes"] == [[16], [12]]
    trained = json.loads((folder / "points" / "dense-lambda0" / "train.json").read_text(encoding="utf-8"))
    assert len(trained["epochs"]) == 2 and trained["settings"]["group_lasso"] == 0
    # honest provenance: the operation and its parameters, and that a sweep point made it
    model = load_checkpoint(folder / "points" / "lambda-0.02" / "model.safetensors").provenance or {}
    assert model["operation"] == "finetune" and model["parameters"]["settings"]["group_lasso"] == 0.02
    assert model["invocation"] == {"via": "sweep", "sweep": str(folder), "point": "lambda-0.02"}
    assert model["parent_sha256"] == load_checkpoint(dense).sha256
    small = load_checkpoint(folder / "points" / "lambda-0.02" / "compact.safetensors").provenance or {}
    assert small["operation"] == "compact" and small["invocation"]["point"] == "lambda-0.02"
    assert small["parent_provenance"]["operation"] == "prune"
    assert small["parent_provenance"]["parameters"]["group_threshold"] == 5e-3  # the training's τ
    baseline = report["baseline"]
    assert baseline["label"] == "dense" and baseline["hidden_sizes"] == [[16], [12]] and baseline["speedup"] == 1.0
    assert baseline["parameters"] == load_checkpoint(dense).num_parameters() > rows["hidden-6x5"]["parameters"]
    assert rows["hidden-6x5"]["label"] in report["pareto"]["parameters"]  # the smallest model is always optimal
    assert "dense" in report["pareto"]["parameters"] or baseline["perplexity"] > min(
        r["perplexity"] for r in rows.values())
    lines = (folder / "points.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["label"] for line in lines] == list(rows)

    picture = folder / "tradeoff.png"
    pixels = image.imread(picture)
    assert pixels.shape[:2] == (450, 1100)  # two panels, 11 × 4.5 inches at 100 dpi
    assert colour_fraction(picture, PARETO_RGB) > 0.0015  # the highlighted front, more than its legend entries
    assert colour_fraction(picture, BASELINE_RGB) > 0.0003  # the dense model's star
    assert float(pixels[:, :, :3].std()) > 0.05  # not a blank canvas

    # rerun with two more λ, two processes at once: the three finished points are not retrained
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("points/*/*") if p.is_file()}
    second = run_cli("sweep", dense, "--lambda", "0.02,0.08,0.04,0.16", "--target-hidden", "6,5", "-o", folder,
                     "--data", corpus, *QUICK, "--jobs", "2", "--json", "-")
    assert second.code == 0, second.stderr
    assert second.stderr.count("finished earlier, not rerun") == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    report = json.loads(second.stdout)
    labels = ["lambda-0.02", "lambda-0.08", "hidden-6x5", "lambda-0.04", "lambda-0.16", "dense-lambda0"]
    assert [r["label"] for r in report["points"]] == labels
    assert all(r["status"] == "ok" for r in report["points"])
    assert second.stderr.count("training (process") == 2  # --jobs 2: the new points ran as worker processes
    log = (folder / "points" / "lambda-0.04" / "log.txt").read_text(encoding="utf-8")
    assert "finetune (λ = 0.04)" in log and "bench the compact model" in log
    worker = load_checkpoint(folder / "points" / "lambda-0.04" / "model.safetensors").provenance or {}
    assert worker["invocation"]["point"] == "lambda-0.04" and worker["parameters"]["settings"]["group_lasso"] == 0.04

    changed = run_cli("sweep", dense, "--lambda", "0.02", "-o", folder, "--data", corpus, *QUICK, "--lr", "0.5")
    assert changed.code == 2 and "other settings (changed: request)" in changed.stderr


def test_tradeoff_plot_draws_the_front_and_the_dense_model(tmp_path: Path) -> None:
    points = [TradeoffPoint("a", 1000, 2.0, 20.0), TradeoffPoint("b", 2000, 1.5, 18.0),
              TradeoffPoint("c", 2500, 1.2, 19.0)]
    dense = TradeoffPoint("dense", 3000, 1.0, 17.0)
    front = {"parameters": [0, 1, 3], "speedup": [0, 1, 3]}
    tradeoff_plot(points, dense, "test perplexity", front, tmp_path / "front.png")
    tradeoff_plot(points, dense, "test perplexity", {"parameters": [], "speedup": []}, tmp_path / "none.png")
    tradeoff_plot(points, None, "test perplexity", {"parameters": [0, 1], "speedup": [0, 1]}, tmp_path / "nodense.png")
    assert image.imread(tmp_path / "front.png").shape[:2] == (450, 1100)
    with_front, legend_only = (colour_fraction(tmp_path / f, PARETO_RGB) for f in ("front.png", "none.png"))
    assert with_front > 4 * legend_only > 0  # markers and the line joining them, beyond the legend's sample
    assert colour_fraction(tmp_path / "front.png", BASELINE_RGB) > 0.0005  # the star (and its legend entry)
    assert colour_fraction(tmp_path / "nodense.png", BASELINE_RGB) < 0.0001
    grey = [colour_fraction(tmp_path / f, POINT_RGB) for f in ("front.png", "none.png")]
    assert grey[1] > grey[0] > 0  # point c is off the front: grey; without a front every point is grey


@pytest.mark.parametrize("args, message", [
    (["--lambda", "0.01"], "-o"),
    (["-o", "{tmp}/s"], "no sweep points"),
    (["--lambda", "x", "-o", "{tmp}/s"], "comma-separated list"),
    (["--lambda", "0.01", "-o", "{tmp}/s", "--epochz", "2"], "No such option: --epochz"),
    (["--lambda", "0.01", "-o", "{tmp}/s", "--json", "x.json", "--stop-after", "1"], "sets --stop-after itself"),
])
def test_bad_sweeps_are_one_line_errors(run_cli, dense, tmp_path, args, message) -> None:  # noqa: ANN001
    result = run_cli("sweep", dense, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "s").exists()


def test_from_scratch_needs_a_preset(run_cli, tmp_path) -> None:  # noqa: ANN001
    result = run_cli("sweep", "--from-scratch", "--lambda", "0.01", "-o", tmp_path / "s")
    assert result.code == 2 and "--preset" in result.stderr


def test_a_sweep_from_scratch_benches_against_its_own_dense_shape(run_cli, corpus, tmp_path) -> None:  # noqa: ANN001
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[10], [8]]}), encoding="utf-8")
    result = run_cli("sweep", "--from-scratch", "--preset", "tiny", "--config", config, "--lambda", "0",
                     "-o", tmp_path / "s", "--data", corpus, *QUICK, "--no-plot", "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["baseline"] is None and report["plot"] is None and not (tmp_path / "s" / "tradeoff.png").exists()
    row, dense = report["points"]
    assert row["label"] == "lambda-0" and row["hidden_sizes"] == [[10], [8]] and row["speedup"] > 0
    assert dense["label"] == "dense-lambda0" and dense["status"] == "ok"
    log = (tmp_path / "s" / "points" / "lambda-0" / "log.txt").read_text(encoding="utf-8")
    assert "train (λ = 0)" in log and "bench the compact model against" in log and "pruned.safetensors" in log
