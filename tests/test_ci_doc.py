"""docs/ci.md's pipeline runs as written (bash, one isscli process a step) on a tiny model; a missed gate exits 1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pipeline() -> str:
    blocks = re.findall(r"^```sh\n(.*?)^```", (ROOT / "docs" / "ci.md").read_text(encoding="utf-8"),
                        re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "docs/ci.md holds one pipeline"
    return blocks[0]


@pytest.mark.skipif(shutil.which("bash") is None, reason="the pipeline is a bash script")
def test_the_documented_pipeline_runs_and_leaves_its_reports(dense, corpus, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("onnxruntime")
    script = f'isscli() {{ "{sys.executable}" -m isscli "$@"; }}\n' + pipeline()
    environment = {**os.environ, "DENSE": str(dense), "DATA": str(corpus), "TARGET": "6,5", "MAX_LOSS": "10",
                   "MIN_SPEEDUP": "0.01", "OUT": str(tmp_path / "shrunk"),
                   "TRAIN_FLAGS": "--epochs 1 --max-batches 10 --batch-size 4 --bptt 8 --eval-batch-size 4 "
                                  "--prune-epochs 1 --recover-epochs 1 --device cpu"}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "shrunk"
    reports = {name: json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
               for name in ("finetune", "prune", "compact", "eval", "bench", "export")}
    assert {name: report["schema"] for name, report in reports.items()} == {
        "finetune": "isscli.train/1", "prune": "isscli.prune/1", "compact": "isscli.compact/1",
        "eval": "isscli.eval/1", "bench": "isscli.bench/3", "export": "isscli.export/1"}
    assert [s["components_after"] for s in reports["compact"]["sets"]] == [6, 5]
    assert reports["eval"]["gate"]["passed"] and reports["bench"]["gate"]["passed"]
    assert (out / "model.onnx").stat().st_size > 0 and reports["export"]["inputs"][0] == "tokens"


def test_a_missed_speed_gate_exits_1(run_cli, dense, tmp_path: Path) -> None:  # noqa: ANN001
    result = run_cli("bench", dense, "--against", dense, "--fail-below", "1000", "--repeats", "2", "--warmup", "0",
                     "--json", tmp_path / "bench.json")
    assert result.code == 1 and "below --fail-below 1000" in result.stderr
    assert json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["gate"]["passed"] is False
