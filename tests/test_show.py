"""`isscli show`: the pictures carry the right pixels, the summary the right numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from isscli.iss.spec import derive_spec
from isscli.iss.surgery import zero_components
from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from isscli.runtime.pictures import NONZERO_RGB, nonzero_map
from tests.conftest import tiny_config, write_model

image = pytest.importorskip("matplotlib.image")


def blue_fraction(png: Path) -> float:
    pixels = image.imread(png)[:, :, :3]
    return float((np.abs(pixels - np.array(NONZERO_RGB)).sum(axis=2) < 0.05).mean())


def test_nonzero_map_is_exact_and_pools_without_losing_weights() -> None:
    matrix = torch.zeros(6, 4)
    matrix[1, 2] = 0.3
    assert nonzero_map(matrix).nonzero().tolist() == [[1, 2]]
    pooled = nonzero_map(torch.zeros(1000, 10).index_fill_(0, torch.tensor([999]), 1.0), max_pixels=100)
    assert tuple(pooled.shape) == (100, 1) and pooled[-1, 0] and not pooled[:-1].any()


def test_show_draws_removed_components_as_white(run_cli, tmp_path: Path) -> None:
    config = tiny_config(vocab_size=40, embedding_size=30, hidden_sizes=[[40], [40]])
    dense = write_model(tmp_path / "dense.safetensors", config)
    loaded = load_checkpoint(dense)
    spec = derive_spec(loaded.tensors)
    for iss in spec.sets:
        mask = torch.ones(40, dtype=torch.bool)
        mask[:4] = False  # keep 4 of 40 units per layer
        zero_components(loaded.tensors, iss, mask)
    sparse = save_checkpoint(tmp_path / "sparse.safetensors", loaded.tensors, loaded.config)

    for name, path in (("dense", dense), ("sparse", sparse)):
        result = run_cli("show", path, "-o", tmp_path / name, "--json", tmp_path / f"{name}.json")
        assert result.code == 0, result.stderr
    pictures = {p.name for p in (tmp_path / "sparse").iterdir()}
    assert pictures == {"zero-pattern.png", "group-norms.png", "units.png"}
    for picture in pictures:
        pixels = image.imread(tmp_path / "sparse" / picture)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 300
    assert image.imread(tmp_path / "sparse" / "zero-pattern.png").shape[1] == 840  # two panels, 4.2 in each
    assert blue_fraction(tmp_path / "dense" / "zero-pattern.png") > 0.35
    assert blue_fraction(tmp_path / "sparse" / "zero-pattern.png") < 0.5 * blue_fraction(
        tmp_path / "dense" / "zero-pattern.png"
    )
    assert blue_fraction(tmp_path / "sparse" / "units.png") < blue_fraction(tmp_path / "dense" / "units.png")

    report = json.loads((tmp_path / "sparse.json").read_text())
    assert [(s["name"], s["nonzero"], s["removable"]) for s in report["sets"]] == [("rnn.l0", 4, 36), ("rnn.l1", 4, 36)]
    assert report["sets"][0]["norm_median"] == 0.0


def test_show_without_output_prints_text_only(run_cli, tiny_lm: Path, tmp_path: Path) -> None:
    result = run_cli("show", tiny_lm)
    assert result.code == 0 and "rnn.l0" in result.stdout and "rnn.l1" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.safetensors"]


def test_show_refuses_a_file_as_output_folder(run_cli, tiny_lm: Path) -> None:
    result = run_cli("show", tiny_lm, "-o", tiny_lm)
    assert result.code == 2 and "is a file" in result.stderr
