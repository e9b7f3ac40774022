"""Group specs: the native schema, the authors' format, derivation for every layout."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch

from isscli.io.errors import SpecError
from isscli.iss.spec import SCHEMA_PATH, check_spec, derive_spec, load_spec, parse_spec
from isscli.iss.surgery import compact, zero_components
from isscli.models import build_model, model_tensors, preset_config
from isscli.models.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads(SCHEMA_PATH.read_text())


@pytest.mark.parametrize("preset", ["small", "medium", "large"])
def test_shipped_preset_specs_match_derivation_and_schema(preset: str) -> None:
    shipped = json.loads((ROOT / "group_specs" / f"ptb-{preset}.json").read_text())
    jsonschema.validate(shipped, SCHEMA)
    config = preset_config(preset)
    assert derive_spec(model_tensors(build_model(config))).to_json() == shipped


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda s: s["sets"][0].update(components=0), "components"),
        (lambda s: s["sets"][0]["slices"][0].update(role="owner"), "role"),
        (lambda s: s["sets"][0]["slices"][0].pop("dim"), "dim"),
        (lambda s: s["sets"][0].update(colour="red"), "unknown field"),
        (lambda s: s.update(version=7), "version"),
    ],
)
def test_schema_and_parser_reject_the_same_bad_specs(mutation, message: str) -> None:
    spec = derive_spec(
        model_tensors(build_model({"family": "lm", "vocab_size": 9, "embedding_size": 3, "hidden_sizes": [2]}))
    ).to_json()
    mutation(spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, SCHEMA)
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


def test_bidirectional_receivers_cover_both_successor_directions() -> None:
    model = build_model(
        {
            "family": "classifier",
            "vocab_size": 9,
            "embedding_size": 3,
            "hidden_sizes": [[4, 3], [2, 5]],
            "num_classes": 2,
        }
    )
    spec = derive_spec(model_tensors(model))
    by_name = {iss.name: iss for iss in spec.sets}
    assert list(by_name) == ["rnn.l0", "rnn.l0_reverse", "rnn.l1", "rnn.l1_reverse"]
    receivers = {(p.tensor, p.dim, p.offset) for p in by_name["rnn.l0_reverse"].receivers}
    assert receivers == {
        ("rnn.weight_hh_l0_reverse", 1, 0),
        ("rnn.weight_ih_l1", 1, 4),
        ("rnn.weight_ih_l1_reverse", 1, 4),
    }
    assert {(p.tensor, p.offset) for p in by_name["rnn.l1_reverse"].receivers} == {
        ("rnn.weight_hh_l1_reverse", 0),
        ("classifier.weight", 2),
    }


def test_tied_lm_groups_include_embedding_and_first_layer_inputs() -> None:
    model = build_model(
        {"family": "lm", "vocab_size": 9, "embedding_size": 4, "hidden_sizes": [3, 4], "tie_weights": True}
    )
    tensors = model_tensors(model)
    assert "decoder.weight" not in tensors
    last = derive_spec(tensors).sets[-1]
    assert {(p.tensor, p.dim) for p in last.receivers} == {
        ("rnn.weight_hh_l1", 1),
        ("encoder.weight", 1),
        ("rnn.weight_ih_l0", 1),
    }
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    assert last.group_length(shapes) == 4 * 3 + 4 * 4 + 4 * 4 + 9 + 4 * 3


def test_authors_example_converts_and_fits_a_tensorflow_layout(run_cli, tmp_path: Path) -> None:
    """The shipped authors'-format example on a TF-layout checkpoint of the paper's shapes."""
    example = ROOT / "group_specs" / "authors-example-ptb-large-tf.json"
    kernel = "Model/RNN/multi_rnn_cell/cell_{}/basic_lstm_cell/kernel"
    tensors = {
        kernel.format(0): torch.zeros(3000, 6000),
        kernel.format(1): torch.zeros(3000, 6000),
        "Model/softmax_w": torch.zeros(1500, 10000),
    }
    spec = load_spec(example)
    check_spec(spec, tensors)
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    assert [iss.group_length(shapes) for iss in spec.sets] == [24000, 28000]
    assert spec.sets[0].slices[0].dim == 1 and spec.sets[0].slices[4].dim == 0  # axis 0 → column k

    native = tmp_path / "native.json"
    result = run_cli(
        "groups",
        "convert",
        example,
        "-o",
        native,
        "--rename",
        f"{kernel.format(0)}=tf.cell0",
        "--rename",
        f"{kernel.format(1)}=tf.cell1",
    )
    assert result.code == 0, result.stderr
    converted = json.loads(native.read_text())
    jsonschema.validate(converted, SCHEMA)
    assert {s["tensor"] for s in converted["sets"][0]["slices"]} == {"tf.cell0", "tf.cell1"}


def test_authors_spec_compacts_a_tensorflow_checkpoint_consistently(run_cli, tmp_path: Path) -> None:
    """TF layout, small: kernel [in + H, 4H] per cell (gates i, j, f, o), softmax_w [H, V]."""
    emb, hidden, vocab = 5, (4, 3), 7
    torch.manual_seed(0)
    tensors = {
        "cell0/kernel": torch.randn(emb + hidden[0], 4 * hidden[0]),
        "cell1/kernel": torch.randn(hidden[0] + hidden[1], 4 * hidden[1]),
        "softmax_w": torch.randn(hidden[1], vocab),
    }

    def entries(layer: int) -> list[dict]:
        h, inputs = hidden[layer], (emb, hidden[0])[layer]
        cell = f"cell{layer}/kernel:0"
        rows = [{"var_name": cell, "multi": 1, "axis": 0, "start": g * h, "end": (g + 1) * h} for g in range(4)]
        rows.append({"var_name": cell, "multi": 1, "axis": 1, "start": inputs, "end": inputs + h})
        receiver = "cell1/kernel" if layer == 0 else "softmax_w"
        rows.append({"var_name": receiver, "multi": 1, "axis": 1, "start": 0, "end": h})
        return rows

    spec_path = tmp_path / "authors.json"
    spec_path.write_text(json.dumps({"comments": "tiny TF LM", "groups": [entries(0), entries(1)]}))
    spec = load_spec(spec_path)
    zero_components(tensors, spec.sets[0], torch.tensor([False, True, True, False]))
    zero_components(tensors, spec.sets[1], torch.tensor([True, False, False]))
    checkpoint = save_checkpoint(tmp_path / "tf.safetensors", tensors)

    result = run_cli("compact", checkpoint, "--spec", spec_path, "--no-verify", "-o", tmp_path / "small.safetensors")
    assert result.code == 0, result.stderr
    small = load_checkpoint(tmp_path / "small.safetensors").tensors
    assert tuple(small["cell0/kernel"].shape) == (emb + 2, 4 * 2)
    assert tuple(small["cell1/kernel"].shape) == (2 + 2, 4 * 2)
    assert tuple(small["softmax_w"].shape) == (2, vocab)
    assert compact(tensors, spec).tensors["softmax_w"].equal(small["softmax_w"])


def test_authors_sets_with_different_multipliers_are_refused() -> None:
    raw = {
        "groups": [
            [
                {"var_name": "a", "multi": 1, "axis": 0, "start": 0, "end": 2},
                {"var_name": "b", "multi": 2, "axis": 0, "start": 0, "end": 2},
            ]
        ]
    }
    with pytest.raises(SpecError, match="multi"):
        parse_spec(raw)


def test_authors_multiplier_and_tf_suffix() -> None:
    raw = {"groups": [[{"var_name": "w:0", "multi": 0.5, "axis": 1, "start": 3, "end": 5}]]}
    spec = parse_spec(raw)
    assert spec.sets[0].multiplier == 0.5 and spec.sets[0].components == 2
    assert spec.sets[0].slices[0].tensor == "w" and spec.sets[0].slices[0].dim == 0
    assert spec.sets[0].slices[0].offset == 3
