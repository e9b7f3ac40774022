"""The paper's numbers for its 2×1500 language model (Sec. 4.1, Table 1, Appendix A)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from isscli.iss.spec import derive_spec
from isscli.iss.surgery import zero_components
from isscli.models.checkpoint import load_checkpoint, save_checkpoint


def test_groups_of_a_fresh_paper_lm_are_24000_and_28000(run_cli, tmp_path: Path) -> None:
    checkpoint = tmp_path / "large.safetensors"
    assert run_cli("init", "--preset", "large", "-o", checkpoint).code == 0
    result = run_cli("groups", checkpoint, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(s["name"], s["components"], s["group_length"]) for s in report["sets"]] == [
        ("rnn.l0", 1500, 24000),
        ("rnn.l1", 1500, 28000),
    ]
    table = run_cli("groups", checkpoint)
    assert "24,000" in table.stdout and "28,000" in table.stdout


def test_zeroing_1127_and_1185_components_compacts_to_373_and_315(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "large.safetensors"
    run_cli("init", "--preset", "large", "-o", source)
    loaded = load_checkpoint(source)
    spec = derive_spec(loaded.tensors)
    generator = torch.Generator().manual_seed(1)
    for iss, count in zip(spec.sets, (1127, 1185)):
        mask = torch.zeros(iss.components, dtype=torch.bool)
        mask[torch.randperm(iss.components, generator=generator)[:count]] = True
        zero_components(loaded.tensors, iss, mask)
    pruned = save_checkpoint(tmp_path / "pruned.safetensors", loaded.tensors, loaded.config)

    result = run_cli("compact", pruned, "-o", tmp_path / "small.safetensors", "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["components_after"] for s in report["sets"]] == [373, 315]
    assert report["parameters_before"] == 66_034_000
    assert report["parameters_after"] == 21_826_900
    assert report["max_output_difference"] <= 1e-5
    compacted = load_checkpoint(tmp_path / "small.safetensors")
    assert compacted.config.hidden_sizes == [[373], [315]]
    assert tuple(compacted.tensors["rnn.weight_ih_l1"].shape) == (4 * 315, 373)
    assert tuple(compacted.tensors["decoder.weight"].shape) == (10_000, 315)
    assert compacted.provenance["parent_sha256"] == load_checkpoint(pruned).sha256
    assert len(compacted.provenance["result"]["kept_units"]["rnn.l0"]) == 373
