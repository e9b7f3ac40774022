"""Recurrent Highway Networks and TensorFlow-layout checkpoints with the authors' spec format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from isscli.iss.spec import load_spec
from isscli.iss.spec.authors import attach_companion_biases
from isscli.iss.surgery import zero_components
from isscli.models.checkpoint import load_checkpoint, save_checkpoint


def test_rhn_paper_baseline_group_length_is_46520(run_cli, tmp_path: Path) -> None:
    checkpoint = tmp_path / "rhn.safetensors"
    created = run_cli("init", "--preset", "rhn", "-o", checkpoint)
    assert created.code == 0, created.stderr
    assert "23,482,400 parameters" in created.stdout  # the paper's 23.5M
    report = json.loads(run_cli("groups", checkpoint, "--json", "-").stdout)
    assert [(s["name"], s["components"], s["group_length"]) for s in report["sets"]] == [("rhn", 830, 46520)]


def test_rhn_width_830_to_517_compacts_to_the_papers_size(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "rhn.safetensors"
    run_cli("init", "--preset", "rhn", "--set", "depth=2", "-o", source)
    loaded = load_checkpoint(source)
    spec = load_spec_for(loaded.tensors, tmp_path)
    mask = torch.zeros(830, dtype=torch.bool)
    mask[torch.randperm(830, generator=torch.Generator().manual_seed(0))[:313]] = True
    zero_components(loaded.tensors, spec.sets[0], mask)
    pruned = save_checkpoint(tmp_path / "pruned.safetensors", loaded.tensors, loaded.config)
    result = run_cli("compact", pruned, "-o", tmp_path / "c.safetensors", "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sets"][0]["components_after"] == 517
    assert report["max_output_difference"] <= 1e-5
    config = load_checkpoint(tmp_path / "c.safetensors").config
    assert config is not None and config.hidden_sizes == [[517]] and config.embedding_size == 517


def load_spec_for(tensors: dict, tmp_path: Path):
    from isscli.iss.spec import derive_spec

    path = tmp_path / "spec.json"
    path.write_text(derive_spec(tensors).dumps())
    return load_spec(path)


# --- A Recurrent Highway Network in the authors' TensorFlow layout --------------------------


def tf_rhn_names(depth: int) -> list[tuple[str, str]]:
    return [
        (f"Model/RHN/HighwayLayer{layer}/{g}/Linear/Matrix", f"Model/RHN/HighwayLayer{layer}/{g}/Linear/Bias")
        for layer in range(depth)
        for g in ("h", "t")
    ]


def tf_rhn_forward(tensors: dict, tokens: torch.Tensor, depth: int) -> torch.Tensor:
    """Variational RHN + WT, TF layout: layer 0 reads [x, s] @ Matrix[in + W, W]."""
    embedding = tensors["Model/embedding"]
    width = embedding.shape[1]
    state = torch.zeros(tokens.shape[1], width)
    logits = []
    for step in range(tokens.shape[0]):
        x = embedding[tokens[step]]
        for layer in range(depth):
            h_name, t_name = f"Model/RHN/HighwayLayer{layer}/h/Linear", f"Model/RHN/HighwayLayer{layer}/t/Linear"
            inputs = torch.cat([x, state], dim=1) if layer == 0 else state
            h = torch.tanh(inputs @ tensors[f"{h_name}/Matrix"] + tensors[f"{h_name}/Bias"])
            t = torch.sigmoid(inputs @ tensors[f"{t_name}/Matrix"] + tensors[f"{t_name}/Bias"])
            state = h * t + state * (1 - t)
        logits.append(state @ embedding.t() + tensors["Model/softmax_b"])
    return torch.stack(logits)


def authors_rhn_spec(width: int, depth: int) -> dict:
    entries = [{"var_name": "Model/embedding:0", "multi": 1.0, "axis": 0, "start": 0, "end": width}]
    for layer in range(depth):
        for gate in ("h", "t"):
            matrix = f"Model/RHN/HighwayLayer{layer}/{gate}/Linear/Matrix:0"
            entries.append({"var_name": matrix, "multi": 1.0, "axis": 0, "start": 0, "end": width})
            entries.append({"var_name": matrix, "multi": 1.0, "axis": 1, "start": 0, "end": width})
            if layer == 0:
                entries.append({"var_name": matrix, "multi": 1.0, "axis": 1, "start": width, "end": 2 * width})
    return {"comments": "RHN in TF layout, written for isscli's tests", "groups": [entries]}


def test_authors_spec_prunes_and_compacts_a_tf_rhn_exactly(run_cli, tmp_path: Path) -> None:
    width, depth, vocab = 5, 3, 11
    torch.manual_seed(0)
    tensors = {"Model/embedding": torch.randn(vocab, width), "Model/softmax_b": torch.randn(vocab)}
    for layer, (matrix, bias) in enumerate(tf_rhn_names(depth)):
        tensors[matrix] = torch.randn((2 if layer < 2 else 1) * width, width) * 0.5
        tensors[bias] = torch.randn(width)
    spec_path = tmp_path / "authors.json"
    spec_path.write_text(json.dumps(authors_rhn_spec(width, depth)))
    spec = attach_companion_biases(load_spec(spec_path), tensors)
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    assert spec.sets[0].group_length(shapes) == vocab + 2 * (2 * width + 2 * width) + 2 * 2 * width * (depth - 1)

    # Shrink components 1 and 3 below τ; `prune` then zeroes them with the authors' spec.
    for piece in spec.sets[0].slices:
        if piece.penalize:
            index = piece.indices(width)[:, [1, 3]].flatten()
            tensors[piece.tensor].index_fill_(piece.dim, index, 1e-7)
    dense = save_checkpoint(tmp_path / "tf.safetensors", tensors)
    pruned = tmp_path / "pruned.safetensors"
    assert run_cli("prune", dense, "--spec", spec_path, "--group-threshold", "1e-4", "-o", pruned).code == 0
    result = run_cli("compact", pruned, "--spec", spec_path, "--no-verify", "-o", tmp_path / "small.safetensors")
    assert result.code == 0, result.stderr

    before = load_checkpoint(pruned).tensors
    after = load_checkpoint(tmp_path / "small.safetensors").tensors
    assert tuple(after["Model/embedding"].shape) == (vocab, 3)
    assert tuple(after["Model/RHN/HighwayLayer0/h/Linear/Matrix"].shape) == (6, 3)
    assert tuple(after["Model/RHN/HighwayLayer2/t/Linear/Matrix"].shape) == (3, 3)
    assert tuple(after["Model/RHN/HighwayLayer1/h/Linear/Bias"].shape) == (3,)
    tokens = torch.randint(0, vocab, (6, 2))
    torch.testing.assert_close(
        tf_rhn_forward(after, tokens, depth), tf_rhn_forward(before, tokens, depth), rtol=1e-5, atol=1e-5
    )


def test_tf_lstm_biases_follow_their_kernels(run_cli, tmp_path: Path) -> None:
    """TF LSTM cells: kernel [in + H, 4H] (gates i, j, f, o) and bias [4H]."""
    emb, hidden, vocab = 3, 4, 6
    torch.manual_seed(0)
    tensors = {
        "cell0/kernel": torch.randn(emb + hidden, 4 * hidden),
        "cell0/bias": torch.randn(4 * hidden),
        "softmax_w": torch.randn(hidden, vocab),
        "softmax_b": torch.randn(vocab),
    }
    entries = [
        {"var_name": "cell0/kernel", "multi": 1, "axis": 0, "start": g * hidden, "end": (g + 1) * hidden}
        for g in range(4)
    ]
    entries += [
        {"var_name": "cell0/kernel", "multi": 1, "axis": 1, "start": emb, "end": emb + hidden},
        {"var_name": "softmax_w", "multi": 1, "axis": 1, "start": 0, "end": hidden},
    ]
    spec_path = tmp_path / "authors.json"
    spec_path.write_text(json.dumps({"groups": [entries]}))
    spec = attach_companion_biases(load_spec(spec_path), tensors)
    zero_components(tensors, spec.sets[0], torch.tensor([True, False, False, True]))
    checkpoint = save_checkpoint(tmp_path / "tf.safetensors", tensors)
    native = tmp_path / "native.json"
    assert run_cli("groups", "convert", spec_path, "-o", native, "--check", checkpoint).code == 0
    assert {s["tensor"] for s in json.loads(native.read_text())["sets"][0]["slices"]} >= {"cell0/bias"}
    import isscli  # the command is one API call: the same spec, and the same refusal to replace a file

    converted = isscli.groups_convert(isscli.GroupsConvertRequest(source=spec_path, checkpoint=checkpoint))
    assert converted.dumps() == native.read_text()
    with pytest.raises(isscli.OutputError):
        isscli.groups_convert(isscli.GroupsConvertRequest(source=spec_path, output=native, checkpoint=checkpoint))
    small = tmp_path / "small.safetensors"
    assert run_cli("compact", checkpoint, "--spec", spec_path, "--no-verify", "-o", small).code == 0
    after = load_checkpoint(tmp_path / "small.safetensors").tensors
    assert tuple(after["cell0/kernel"].shape) == (emb + 2, 8)
    assert tuple(after["cell0/bias"].shape) == (8,)
    assert tuple(after["softmax_w"].shape) == (2, vocab)
    kept = torch.tensor([1, 2, 5, 6, 9, 10, 13, 14])
    assert after["cell0/bias"].equal(tensors["cell0/bias"][kept])
