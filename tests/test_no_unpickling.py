"""It never unpickles: a torch.save file is read with weights_only and kept only as dense, plain, named tensors;
random bytes that start like a pickle are called corrupt (docs/security.md, "It never unpickles")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from isscli.models.checkpoint import load_checkpoint
from tests.test_bad_input import assert_clean_failure


def test_import_pt_keeps_transposes_and_strided_views_and_stores_a_true_alias_once(run_cli, tmp_path: Path) -> None:
    square, line = torch.randn(4, 4), torch.randn(10)
    state = {"w": square, "w_t": square.t(), "every_other": line[::2], "first_half": line[:5], "tied": square}
    torch.save(state, tmp_path / "model.pt")
    assert run_cli("import-pt", tmp_path / "model.pt", "-o", tmp_path / "model.safetensors").code == 0
    tensors = load_checkpoint(tmp_path / "model.safetensors").tensors
    assert sorted(tensors) == ["every_other", "first_half", "w", "w_t"]  # "tied" is "w": stored once
    for name in tensors:
        assert torch.equal(tensors[name], state[name]), name


STATES = {
    "integer keys": (lambda: {0: torch.zeros(2), 1: torch.ones(2)}, "must be tensor names (strings), not int"),
    "sparse": (lambda: {"w": torch.eye(3).to_sparse()}, "'w' is sparse (sparse_coo)"),
    "csr": (lambda: {"w": torch.eye(3).to_sparse_csr()}, "'w' is sparse (sparse_csr)"),
    "meta": (lambda: {"w": torch.empty(3, 3, device="meta")}, "'w' has no data (a meta tensor)"),
    "quantized": (lambda: {"w": torch.quantize_per_tensor(torch.zeros(3), 0.1, 0, torch.qint8)}, "dtype qint8"),
    "complex": (lambda: {"w": torch.zeros(3, dtype=torch.complex64)}, "dtype complex64"),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: sparse CSR is beta, quantized tensors are deprecated
@pytest.mark.parametrize("state", STATES)
def test_import_pt_refuses_what_it_cannot_store(run_cli, tmp_path: Path, state: str) -> None:
    make, needle = STATES[state]
    torch.save(make(), tmp_path / "model.pt")
    result = run_cli("import-pt", tmp_path / "model.pt", "-o", tmp_path / "model.safetensors")
    assert_clean_failure(result, needle)
    assert not (tmp_path / "model.safetensors").exists()


def test_random_bytes_that_start_like_a_pickle_are_not_called_torch_save(run_cli, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x80\x02" + os.urandom(254))
    result = run_cli("prune", corrupt, "--group-threshold", "0.1")
    assert_clean_failure(result, "not a readable safetensors file")
    legacy = tmp_path / "legacy.safetensors"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert_clean_failure(run_cli("groups", legacy), "torch.save pickle")
