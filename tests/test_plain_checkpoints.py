"""Checkpoints written by other scripts: no metadata, PyTorch's word-language-model layout."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from isscli.models.checkpoint import load_checkpoint


class WordLanguageModel(nn.Module):
    """The layout of PyTorch's word_language_model example: encoder, rnn (nn.LSTM), decoder."""

    def __init__(self, vocab: int = 30, size: int = 6, layers: int = 2, tie: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, layers)
        self.decoder = nn.Linear(size, vocab)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(self.encoder(tokens))
        return self.decoder(output)


def zero_unit(model: WordLanguageModel, layer: int, unit: int) -> None:
    """Zero everything of one hidden unit, the way group Lasso would leave it."""
    size = model.rnn.hidden_size
    with torch.no_grad():
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(model.rnn, f"{kind}_l{layer}")[unit::size] = 0
        getattr(model.rnn, f"weight_hh_l{layer}")[:, unit] = 0
        receiver = model.rnn.weight_ih_l1 if layer == 0 else model.decoder.weight
        receiver[:, unit] = 0
        if layer == 1 and model.decoder.weight is model.encoder.weight:
            model.rnn.weight_ih_l0[:, unit] = 0


def test_plain_state_dict_works_with_groups_prune_compact(run_cli, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WordLanguageModel().eval()
    zero_unit(model, 0, 2)
    zero_unit(model, 1, 4)
    zero_unit(model, 1, 5)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))
    assert load_checkpoint(plain).config is None

    groups = json.loads(run_cli("groups", plain, "--json", "-").stdout)
    assert [(s["name"], s["components"], s["alive"]) for s in groups["sets"]] == [("rnn.l0", 6, 5), ("rnn.l1", 6, 4)]

    pruned = tmp_path / "pruned.safetensors"
    assert run_cli("prune", plain, "--group-threshold", "1e-3", "-o", pruned).code == 0
    unknown = run_cli("compact", pruned, "-o", tmp_path / "small.safetensors")
    assert unknown.code == 2 and "cannot verify" in unknown.stderr and "--no-verify" in unknown.stderr
    assert not (tmp_path / "small.safetensors").exists()
    result = run_cli("compact", pruned, "--arch", "lm", "-o", tmp_path / "small.safetensors", "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert "isscli's `lm` architecture" in report["assumption"] and "assumed:" in result.stderr
    assumed = load_checkpoint(tmp_path / "small.safetensors").provenance["result"]["assumed"]
    assert assumed == report["assumption"]  # recorded in the file too
    assert [s["components_after"] for s in report["sets"]] == [5, 4]
    assert report["max_output_difference"] <= 1e-5

    small = load_checkpoint(tmp_path / "small.safetensors")
    assert sorted(small.tensors) == sorted(model.state_dict())  # names kept as they were
    assert small.config is None
    smaller = WordLanguageModel()
    smaller.rnn = nn.LSTM(6, 5, 1)  # rebuilt by hand below: layer sizes now differ
    tokens = torch.randint(0, 30, (7, 3))
    with torch.no_grad():
        expected = model(tokens)
        hidden = torch.nn.functional.embedding(tokens, small.tensors["encoder.weight"])
        for layer, size in enumerate((5, 4)):
            lstm = nn.LSTM(hidden.shape[2], size, 1)
            lstm.load_state_dict(
                {
                    f"{k}_l0": small.tensors[f"rnn.{k}_l{layer}"]
                    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                }
            )
            hidden, _ = lstm(hidden)
        actual = nn.functional.linear(hidden, small.tensors["decoder.weight"], small.tensors["decoder.bias"])
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_import_pt_stores_tied_weights_once_and_compacts(run_cli, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WordLanguageModel(tie=True).eval()
    zero_unit(model, 1, 0)
    source = tmp_path / "model.pt"
    torch.save(model.state_dict(), source)
    converted = tmp_path / "model.safetensors"
    result = run_cli("import-pt", source, "-o", converted)
    assert result.code == 0, result.stderr
    tensors = load_checkpoint(converted).tensors
    assert ("decoder.weight" in tensors) != ("encoder.weight" in tensors)

    report = json.loads(run_cli("compact", converted, "--arch", "lm", "-o", tmp_path / "c.safetensors", "--json",
                                "-").stdout)
    assert [s["components_after"] for s in report["sets"]] == [6, 5]
    assert report["max_output_difference"] <= 1e-5


def test_config_flag_supplies_what_a_plain_checkpoint_lacks(run_cli, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WordLanguageModel().eval()
    zero_unit(model, 0, 1)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"family": "lm", "dropout": 0.3}))
    result = run_cli("compact", plain, "--config", config, "-o", tmp_path / "c.safetensors", "--json", "-")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["max_output_difference"] <= 1e-5
    bad = run_cli("compact", plain, "--config", tmp_path / "absent.json", "-o", tmp_path / "d.safetensors")
    assert bad.code == 2 and "neither a preset nor a file" in bad.stderr
