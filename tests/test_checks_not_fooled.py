"""Checks cannot be fooled: NaN and infinity fail the verification and eval, compaction is verified in the
checkpoint's own precision, a config that contradicts the tensors is refused (docs/security.md, "Its checks
cannot be fooled")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import isscli
from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_config, write_model
from tests.test_bad_input import assert_clean_failure

# -- non-finite values make checks fail --------------------------------------------------------------------------------


def with_dead_unit_holding_nan(folder: Path) -> Path:
    """A model whose unit 0 of layer 0 reaches nothing (compaction removes it) and computes NaN."""
    checkpoint = load_checkpoint(write_model(folder / "clean.safetensors", tiny_config()))
    tensors = {name: tensor.clone() for name, tensor in checkpoint.tensors.items()}
    tensors["rnn.weight_hh_l0"][:, 0] = 0
    tensors["rnn.weight_ih_l1"][:, 0] = 0
    tensors["rnn.weight_ih_l0"][0, 0] = float("nan")  # unit 0's input gate: h_0 is NaN, and NaN × 0 is NaN
    return save_checkpoint(folder / "nan.safetensors", tensors, checkpoint.config)


def test_nan_in_a_removed_unit_fails_the_verification(run_cli, tmp_path: Path) -> None:
    model = with_dead_unit_holding_nan(tmp_path)
    result = run_cli("compact", model, "-o", tmp_path / "small.safetensors")
    assert_clean_failure(result, "NaN or infinite", code=1)
    assert not (tmp_path / "small.safetensors").exists()


def test_the_equivalence_check_reports_nan_not_zero() -> None:
    from isscli.iss.equivalence import compare

    same = torch.zeros(3)
    assert compare([(same, same)]) == (0.0, 0.0)
    difference, scale = compare([(same, same), (torch.tensor([float("nan"), 0.0]), torch.zeros(2))])
    assert difference != difference and scale != scale  # NaN: no tolerance accepts it


def test_eval_of_nan_weights_fails_instead_of_scoring_nan(run_cli, dense: Path, corpus: Path, tmp_path: Path) -> None:
    checkpoint = isscli.load(dense)
    checkpoint.tensors["decoder.bias"][3] = float("nan")
    checkpoint.path = None
    broken = isscli.save(checkpoint, tmp_path / "nan.safetensors")
    result = run_cli("eval", broken, "--data", corpus, "--batch-size", "4", "--json", tmp_path / "eval.json")
    assert_clean_failure(result, "decoder.bias", code=1)
    assert not (tmp_path / "eval.json").exists()


def test_show_and_groups_survive_non_finite_weights(run_cli, tmp_path: Path) -> None:
    model = with_dead_unit_holding_nan(tmp_path)
    checkpoint = load_checkpoint(model)
    checkpoint.tensors["rnn.weight_hh_l1"][1, 1] = float("inf")
    model = save_checkpoint(tmp_path / "inf.safetensors", checkpoint.tensors, checkpoint.config)
    assert run_cli("groups", model).code == 0
    result = run_cli("show", model, "--json", "-")
    assert result.code == 0, result.stderr
    pytest.importorskip("matplotlib")
    assert run_cli("show", model, "-o", tmp_path / "pictures").code == 0


# -- verification in the checkpoint's own precision --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_compaction_is_verified_in_the_checkpoints_precision(tmp_path: Path, dtype: torch.dtype) -> None:
    config = tiny_config(vocab_size=300, embedding_size=100, hidden_sizes=[[200]])  # float32 sums differ here
    checkpoint = load_checkpoint(write_model(tmp_path / "m.safetensors", config))
    weights = isscli.Checkpoint({n: t.to(dtype) for n, t in checkpoint.tensors.items()}, checkpoint.config)
    pruned = isscli.prune(isscli.PruneRequest(checkpoint=weights, keep_fraction=0.5))
    small = isscli.compact(isscli.CompactRequest(checkpoint=pruned.checkpoint))
    verification = small.verification
    assert verification is not None
    expected = "float64" if dtype == torch.float64 else "float32"  # float16 and bfloat16 are exact in float32
    assert verification.dtype == expected
    assert verification.tolerance == pytest.approx(isscli.iss.verification.TOLERANCE[expected] *
                                                   max(1.0, verification.output_scale))
    assert verification.max_output_difference <= verification.tolerance
    assert {t.dtype for t in small.checkpoint.tensors.values()} == {dtype}
    assert small.hidden_sizes == [[100]]


# -- metadata that contradicts the tensors -----------------------------------------------------------------------------


def test_a_tied_config_with_a_decoder_of_its_own_is_refused(run_cli, tmp_path: Path) -> None:
    tied = load_checkpoint(write_model(tmp_path / "tied.safetensors", tiny_config(embedding_size=5, tie_weights=True)))
    tensors = {**tied.tensors, "decoder.weight": torch.randn_like(tied.tensors["encoder.weight"])}
    contradiction = save_checkpoint(tmp_path / "both.safetensors", tensors, tied.config)
    assert_clean_failure(run_cli("compact", contradiction, "-o", tmp_path / "c.safetensors"),
                         "decoder.weight of its own")
    tensors["decoder.weight"] = tensors["encoder.weight"].clone()  # a copy says the same: no contradiction
    copy = save_checkpoint(tmp_path / "copy.safetensors", tensors, tied.config)
    assert run_cli("compact", copy, "-o", tmp_path / "c.safetensors").code == 0
