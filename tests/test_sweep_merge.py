"""A sweep spread over machines: each runs its own points; copying the point folders together and rerunning the
sweep with every point summarises them all without training anything again (docs/distributed.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import isscli
from isscli.observer import SilentObserver


class Notes(SilentObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str, warning: bool = False) -> None:
        self.lines.append(message)


def test_points_run_apart_merge_into_one_table(dense: Path, corpus: Path, tmp_path: Path) -> None:
    base = isscli.FinetuneRequest(checkpoint=dense, data=corpus, device="cpu", settings={
        "epochs": 1, "batch_size": 4, "bptt": 8, "max_batches": 8, "eval_batch_size": 4, "weight_threshold": 5e-3})

    def sweep(folder: Path, lambdas: list[float]) -> tuple[isscli.SweepResult, list[str]]:
        notes = Notes()
        request = isscli.SweepRequest(folder=folder, base=base, points=isscli.make_points(lambdas, [], [], []),
                                      bench_repeats=2)
        return isscli.sweep(request, notes, plot=False), notes.lines

    sweep(tmp_path / "a", [0.02])  # machine A
    sweep(tmp_path / "b", [0.08])  # machine B
    shutil.copytree(tmp_path / "b" / "points" / "lambda-0.08", tmp_path / "a" / "points" / "lambda-0.08")
    merged, notes = sweep(tmp_path / "a", [0.02, 0.08])
    assert [row.label for row in merged.points] == ["lambda-0.02", "lambda-0.08", "dense-lambda0"]
    assert all(row.status == "ok" for row in merged.points)
    assert sum("finished earlier, not rerun" in line for line in notes) == 3
    assert not any("training" in line for line in notes)  # nothing was trained again
    assert set(merged.pareto["parameters"]) <= {"lambda-0.02", "dense-lambda0", "lambda-0.08", "dense"}
