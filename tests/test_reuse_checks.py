"""What isscli reuses is checked by content (issue 21, repros 1, 4, 6, 9 and 8's τ): folders it fills keep a
manifest and never replace a file isscli did not write; shrink results and sweep points are reused only for the
same input fingerprints; the records it reads back are validated; a provenance τ is reported as the file's."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import isscli
from isscli.data.fingerprint import data_fingerprint
from isscli.io import manifest
from isscli.io.errors import IsscliError
from isscli.models.checkpoint import load_checkpoint, save_checkpoint
from isscli.observer import SilentObserver
from isscli.sweeping.plan import discard

FALLBACK = Path(__file__).parents[1] / "isscli" / "data" / "fallback"
SETTINGS = {"epochs": 1, "batch_size": 4, "bptt": 8, "max_batches": 6, "eval_batch_size": 4, "weight_threshold": 5e-3}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shas(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256, to prove nothing changed, appeared or went away."""
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(result) -> str:  # noqa: ANN001
    assert result.code == 2, (result.code, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr and len(errors) == 1, result.stderr
    return errors[0]


class Notes(SilentObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str, warning: bool = False) -> None:
        self.lines.append(message)


# -- the manifest and the fingerprints -------------------------------------------------------------


def test_a_corpus_fingerprint_is_its_split_files_content(corpus: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(corpus, tmp_path / "copy")
    assert data_fingerprint(copy) == data_fingerprint(corpus)  # the path does not count
    (copy / "README.md").write_text("about this corpus", encoding="utf-8")
    assert data_fingerprint(copy) == data_fingerprint(corpus)  # nor a file beside the splits
    with open(copy / "ptb.valid.txt", "a", encoding="utf-8") as stream:
        stream.write(" the cat sat \n")
    assert data_fingerprint(copy) != data_fingerprint(corpus)
    text = tmp_path / "one.txt"
    text.write_text("a b c\n", encoding="utf-8")
    assert data_fingerprint(text) == sha(text) and data_fingerprint(tmp_path / "absent") is None


def test_the_manifest_owns_only_unchanged_files_it_lists(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.json").write_text("{}", encoding="utf-8")
    with pytest.raises(IsscliError, match="holds a.json but no manifest"):
        manifest.claim(folder, "a.json")  # a folder without a manifest: nothing in it is isscli's
    (folder / "a.json").unlink()
    with manifest.writing(folder, "a.json", "b.json"):
        (folder / "a.json").write_text("{}", encoding="utf-8")  # b.json is never written: it is not listed
    assert manifest.read_manifest(folder) == {"a.json": sha(folder / "a.json")} and manifest.owns(folder, "a.json")
    (folder / "b.json").write_text("mine", encoding="utf-8")
    with pytest.raises(IsscliError, match="b.json was not written by isscli"):
        manifest.check(folder, ["a.json", "b.json"])
    (folder / "a.json").write_text('{"changed": 1}', encoding="utf-8")
    with pytest.raises(IsscliError, match=r"a.json was changed since isscli wrote it .*not even with `force`"):
        manifest.remove(folder, ["a.json"])
    assert (folder / "a.json").exists() and (folder / "b.json").read_text(encoding="utf-8") == "mine"
    manifest.claim(folder, "log.txt")  # being written (or appended to): isscli's whatever it holds
    (folder / "log.txt").write_text("line\n", encoding="utf-8")
    (folder / ".log.txt.x1y2.tmp").write_text("", encoding="utf-8")  # what a killed write leaves
    manifest.remove(folder, ["log.txt"])
    assert sorted(p.name for p in folder.iterdir()) == [manifest.MANIFEST, "a.json", "b.json"]


# -- repro 1: demo, shrink and sweep folders -------------------------------------------------------


def test_demo_never_replaces_files_it_did_not_write(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "walkthrough"
    out.mkdir()
    (out / "dense.safetensors").write_bytes(b"the user's own dense model")
    (out / "compact.safetensors").write_bytes(b"the user's own compact model")
    before = shas(out)
    error = one_line(run_cli("demo", "--data", FALLBACK, "-o", out))
    assert f"{out} holds dense.safetensors but no manifest" in error and "choose a new folder" in error
    assert shas(out) == before  # nothing replaced, nothing added (not even a manifest)
    manifest.record(out, "dense.safetensors")  # as if the demo had written dense.safetensors, not compact
    error = one_line(run_cli("demo", "--data", FALLBACK, "-o", out))
    assert f"{out / 'compact.safetensors'} was not written by isscli" in error
    manifest.record(out, "compact.safetensors")
    (out / "compact.safetensors").write_bytes(b"edited since")
    error = one_line(run_cli("demo", "--data", FALLBACK, "-o", out))
    assert f"{out / 'compact.safetensors'} was changed since isscli wrote it" in error
    assert (out / "dense.safetensors").read_bytes() == b"the user's own dense model"


def test_shrink_replaces_only_its_own_unchanged_results(run_cli, dense: Path, corpus: Path,
                                                         tmp_path: Path) -> None:  # noqa: ANN001
    quick = ["--group-threshold", "0", "--evaluate", "compact", "--data", corpus, "--no-bench"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "pruned.safetensors").write_bytes(b"someone's weights")
    error = one_line(run_cli("shrink", dense, "-o", mine, *quick, "--force"))
    assert "holds pruned.safetensors but no manifest" in error and (mine / "pruned.safetensors").read_bytes() == \
        b"someone's weights"
    out = tmp_path / "shrunk"
    assert run_cli("shrink", dense, "-o", out, *quick).code == 0
    assert set(manifest.read_manifest(out) or {}) == {"pruned.safetensors", "compact.safetensors", "shrink.json"}
    assert run_cli("shrink", dense, "-o", out, *quick, "--force").code == 0  # its own files: replaced
    compact = out / "compact.safetensors"
    compact.write_bytes(compact.read_bytes() + b" ")  # changed since
    before = shas(out)
    error = one_line(run_cli("shrink", dense, "-o", out, *quick, "--force"))
    assert f"{compact} was changed since isscli wrote it — isscli never replaces a file it did not write (not even " \
           "with --force)" in error
    assert shas(out) == before


def test_sweep_force_removes_only_what_the_sweep_wrote(dense: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    point = folder / "points" / "lambda-0.1"
    point.mkdir(parents=True)
    (point / "model.safetensors").write_bytes(b"not the sweep's")
    base = isscli.FinetuneRequest(checkpoint=dense, data=tmp_path, settings=SETTINGS)
    request = isscli.SweepRequest(folder=folder, base=base, points=isscli.make_points([0.1], [], [], []), force=True)
    with pytest.raises(IsscliError, match="holds model.safetensors but no manifest"):
        isscli.sweep(request, plot=False)
    assert (point / "model.safetensors").read_bytes() == b"not the sweep's"
    manifest.record(point, "model.safetensors")  # now the sweep's own, beside a file of the user's
    (point / "notes.txt").write_text("mine", encoding="utf-8")
    (folder / "sweep.json").write_text("{}", encoding="utf-8")
    manifest.record(folder, "sweep.json")
    discard(folder)
    assert sorted(p.name for p in point.iterdir()) == [manifest.MANIFEST, "notes.txt"]
    assert not (folder / "sweep.json").exists() and (point / "notes.txt").read_text(encoding="utf-8") == "mine"


# -- repros 4 and 9: shrink --resume ---------------------------------------------------------------


def test_shrink_resume_refuses_results_of_other_inputs_and_names_what_changed(run_cli, dense: Path, corpus: Path,
                                                                              tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "shrunk"
    common = ["-o", out, "--evaluate", "compact", "--data", corpus, "--no-bench", "--json", "-"]
    first = run_cli("shrink", dense, "--group-threshold", "0", *common)
    assert first.code == 0, first.stderr
    recorded = json.loads((out / "shrink.json").read_text(encoding="utf-8"))
    assert recorded["schema"] == "isscli.shrink/1" and recorded["inputs"]["checkpoint"] == sha(dense)
    before = shas(out)
    copy = shutil.copy(dense, tmp_path / "same-content.safetensors")  # the same model under another name
    again = run_cli("shrink", copy, "--group-threshold", "0", *common, "--resume")
    assert again.code == 0 and json.loads(again.stdout)["evaluations"] == json.loads(first.stdout)["evaluations"]
    other = tmp_path / "other.safetensors"
    loaded = load_checkpoint(dense)
    save_checkpoint(other, {name: tensor * 0.5 for name, tensor in loaded.tensors.items()}, loaded.config,
                    vocabulary=loaded.vocabulary)
    error = one_line(run_cli("shrink", other, "--group-threshold", "0", *common, "--resume"))
    assert "holds results of other inputs (changed: checkpoint)" in error and "--force" in error
    error = one_line(run_cli("shrink", other, "--group-threshold", "0.5", *common, "--resume"))
    assert "(changed: checkpoint, group_threshold)" in error
    error = one_line(run_cli("shrink", dense, "--group-threshold", "0", *common, "--resume", "--split", "valid"))
    assert "(changed: split)" in error
    assert shas(out) == before


@pytest.mark.parametrize(("damage", "message"), [
    (lambda text: text[: len(text) // 2], "is not valid JSON"),
    (lambda text: json.dumps({**json.loads(text), "parameters_after": "many"}),
     'field "parameters_after" is a string, not an integer'),
    (lambda text: json.dumps({**json.loads(text), "evaluations": {"compact": []}}),
     'field "evaluations.compact" is a list, not an object'),
    (lambda text: json.dumps({**json.loads(text), "inputs": None}), 'field "inputs" is missing'),
    (lambda text: json.dumps({**json.loads(text), "evaluations": {"compact": {
        key: value for key, value in json.loads(text)["evaluations"]["compact"].items() if key != "perplexity"}}}),
     'field "evaluations.compact.perplexity" is missing'),
    (lambda text: "[1, 2]", "is not a JSON object"),
])
def test_a_damaged_shrink_record_is_one_line_naming_the_file_and_field(run_cli, dense: Path, corpus: Path,  # noqa: ANN001
                                                                       tmp_path: Path, damage, message) -> None:  # noqa: ANN001
    out = tmp_path / "shrunk"
    common = ["-o", out, "--group-threshold", "0", "--evaluate", "compact", "--data", corpus, "--no-bench"]
    assert run_cli("shrink", dense, *common).code == 0
    record = out / "shrink.json"
    record.write_text(damage(record.read_text(encoding="utf-8")), encoding="utf-8")
    before = shas(out)
    error = one_line(run_cli("shrink", dense, *common, "--resume"))
    assert f"shrink record {record}" in error and message in error
    assert "and it was changed since isscli wrote it — isscli never replaces a file it did not write" in error
    assert "changed since isscli wrote it" in one_line(run_cli("shrink", dense, *common, "--force"))
    assert shas(out) == before


def test_an_older_shrink_folder_without_a_manifest_is_not_trusted(run_cli, dense: Path, corpus: Path,
                                                                  tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "shrunk"
    common = ["-o", out, "--group-threshold", "0", "--evaluate", "compact", "--data", corpus, "--no-bench"]
    assert run_cli("shrink", dense, *common).code == 0
    (out / manifest.MANIFEST).unlink()
    error = one_line(run_cli("shrink", dense, *common, "--resume"))
    assert "holds shrink.json but no manifest" in error and "choose a new folder" in error


# -- repro 8 (τ from the provenance) ---------------------------------------------------------------


def with_provenance(source: Path, output: Path, provenance: dict) -> Path:
    loaded = load_checkpoint(source)
    return save_checkpoint(output, dict(loaded.tensors), loaded.config, provenance, vocabulary=loaded.vocabulary)


@pytest.mark.parametrize(("provenance", "field"), [
    ({"operation": "finetune", "parameters": {"settings": {"weight_threshold": -1}}},
     "provenance.parameters.settings.weight_threshold (the training's τ) is '-1'"),
    ({"operation": "train", "parameters": {"settings": {"weight_threshold": "1e-3"}}},
     "provenance.parameters.settings.weight_threshold (the training's τ) is '1e-3', not a number ≥ 0"),
    ({"operation": "prune", "parent_provenance": {"operation": "finetune", "parameters": ["settings"]}},
     "provenance.parent_provenance.parameters is not an object"),
    ({"operation": "prune", "parent_provenance": "finetune"}, "provenance.parent_provenance is not an object"),
])
def test_a_bad_threshold_in_the_provenance_is_reported_as_the_files(run_cli, dense: Path, corpus: Path,  # noqa: ANN001
                                                                    tmp_path: Path, provenance, field) -> None:  # noqa: ANN001
    checkpoint = with_provenance(dense, tmp_path / "iss.safetensors", provenance)
    error = one_line(run_cli("shrink", checkpoint, "-o", tmp_path / "out", "--data", corpus, "--no-bench"))
    assert f"{checkpoint}: its {field}" in error and "give the prune step's threshold with --group-threshold" in error
    assert "must be" not in error and not (tmp_path / "out" / "pruned.safetensors").exists()


def test_a_threshold_that_kills_the_model_leaves_no_pruned_file(run_cli, dense: Path, corpus: Path,
                                                                tmp_path: Path) -> None:  # noqa: ANN001
    checkpoint = with_provenance(dense, tmp_path / "iss.safetensors", {
        "operation": "finetune", "parameters": {"settings": {"weight_threshold": 1e30}}})
    error = one_line(run_cli("shrink", checkpoint, "-o", tmp_path / "out", "--data", corpus, "--no-bench"))
    assert f"τ = 1e+30, the weight threshold in {checkpoint}'s provenance: " in error and "dead" in error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [manifest.MANIFEST]


# -- repros 6 and 9: sweep points ------------------------------------------------------------------


def test_sweep_points_are_reused_only_for_the_same_inputs(dense: Path, corpus: Path, tmp_path: Path) -> None:
    def sweep(folder: Path, lambdas: list[float], settings: dict) -> tuple[isscli.SweepResult, list[str]]:
        notes = Notes()
        base = isscli.FinetuneRequest(checkpoint=dense, data=corpus, device="cpu", settings=settings)
        request = isscli.SweepRequest(folder=folder, base=base, points=isscli.make_points(lambdas, [], [], []),
                                      bench_repeats=1)
        return isscli.sweep(request, notes, plot=False), notes.lines

    a, b = tmp_path / "a", tmp_path / "b"
    sweep(a, [0.02], SETTINGS)
    sweep(b, [0.08], {**SETTINGS, "max_batches": 48})  # another machine, trained 8× longer
    copied = shutil.copytree(b / "points" / "lambda-0.08", a / "points" / "lambda-0.08")
    foreign = sha(copied / "model.safetensors")
    kept = shas(a / "points" / "lambda-0.02")
    merged, notes = sweep(a, [0.02, 0.08], SETTINGS)
    assert "lambda-0.08: made from other inputs (changed: settings): its results are discarded and the point is " \
           "run again" in notes
    assert "lambda-0.02: finished earlier, not rerun" in notes and shas(a / "points" / "lambda-0.02") == kept
    assert all(row.status == "ok" for row in merged.points)
    assert sha(copied / "model.safetensors") != foreign  # rerun with this sweep's settings
    trained = json.loads((copied / "train.json").read_text(encoding="utf-8"))
    assert trained["settings"]["max_batches"] == 6

    # a point whose record isscli wrote but that is no longer valid is run again (its training is kept) …
    point = a / "points" / "lambda-0.02"
    record = json.loads((point / "point.json").read_text(encoding="utf-8"))
    (point / "point.json").write_text(json.dumps({**record, "speedup": None}), encoding="utf-8")
    manifest.record(point, "point.json")
    model = sha(point / "model.safetensors")
    again, notes = sweep(a, [0.02, 0.08], SETTINGS)
    assert any(line.startswith("lambda-0.02: point record") and 'field "speedup" is missing' in line and
               line.endswith("the point is run again") for line in notes)
    assert all(row.status == "ok" for row in again.points) and sha(point / "model.safetensors") == model
    # … one changed or cut short since is refused: one line naming the file, nothing replaced
    (point / "point.json").write_text((point / "point.json").read_text(encoding="utf-8")[:40], encoding="utf-8")
    before = shas(a)
    with pytest.raises(IsscliError, match=r"point.json is not valid JSON .*, and it was changed since isscli wrote "
                                          r"it .*never replaces a file it did not write"):
        sweep(a, [0.02, 0.08], SETTINGS)
    assert shas(a) == before

    # a copied point folder without its manifest (an older isscli's) cannot be run again: refused
    shutil.rmtree(copied)
    copied = shutil.copytree(b / "points" / "lambda-0.08", a / "points" / "lambda-0.08")
    (copied / manifest.MANIFEST).unlink()
    (point / "point.json").write_text(json.dumps(record), encoding="utf-8")
    manifest.record(point, "point.json")
    with pytest.raises(IsscliError, match="holds inputs.json but no manifest"):
        sweep(a, [0.02, 0.08], SETTINGS)


def test_a_point_of_another_parent_or_corpus_is_not_finished(dense: Path, corpus: Path, tmp_path: Path) -> None:
    from isscli.sweeping.folders import to_run
    from isscli.sweeping.plan import prepare

    def plan_for(checkpoint: Path, data: Path):  # noqa: ANN202
        base = isscli.FinetuneRequest(checkpoint=checkpoint, data=data, settings=SETTINGS)
        return prepare(isscli.SweepRequest(folder=tmp_path / "s", base=base,
                                           points=isscli.make_points([0.1], [], [], [])), Notes())

    plan = plan_for(dense, corpus)
    assert [p.label for p in to_run(plan, plan.shared_inputs(), Notes())] == ["lambda-0.1", "dense-lambda0"]
    folder = plan.point_folder(plan.points[0])
    record = {"schema": "isscli.point/1", "kind": "lambda", "value": "0.1", "label": "lambda-0.1", "status": "ok",
              "hidden_sizes": [[3], [2]], "parameters": 10, "perplexity": 5.0, "loss": 1.6, "speedup": 2.0}
    with manifest.writing(folder, "point.json"):
        (folder / "point.json").write_text(json.dumps(record), encoding="utf-8")
    notes = Notes()
    assert [p.label for p in to_run(plan, plan.shared_inputs(), notes)] == ["dense-lambda0"]  # finished
    assert notes.lines == ["lambda-0.1: finished earlier, not rerun"]
    with manifest.writing(folder, "point.json"):  # another point's record, in this point's folder
        (folder / "point.json").write_text(json.dumps({**record, "value": "0.2"}), encoding="utf-8")
    notes = Notes()
    assert [p.label for p in to_run(plan, plan.shared_inputs(), notes)] == ["lambda-0.1", "dense-lambda0"]
    assert notes.lines == [f"lambda-0.1: point record {folder / 'point.json'}: fields \"kind\" and \"value\" are "
                           "another point's: the point is run again"]
    with manifest.writing(folder, "point.json"):
        (folder / "point.json").write_text(json.dumps(record), encoding="utf-8")
    moved = shutil.copytree(corpus, tmp_path / "corpus")  # the same corpus elsewhere: still the same inputs
    (tmp_path / "s" / "sweep.json").unlink()
    plan = plan_for(dense, moved)
    assert [p.label for p in to_run(plan, plan.shared_inputs(), Notes())] == ["dense-lambda0"]
    with open(moved / "ptb.train.txt", "a", encoding="utf-8") as stream:
        stream.write(" a dog ran to the river \n")
    parent = shutil.copy(dense, tmp_path / "parent.safetensors")
    loaded = load_checkpoint(dense)
    save_checkpoint(parent, {k: v + 1 for k, v in loaded.tensors.items()}, loaded.config, overwrite=True,
                    vocabulary=loaded.vocabulary)
    (tmp_path / "s" / "sweep.json").unlink()
    plan = plan_for(parent, moved)
    notes = Notes()
    assert [p.label for p in to_run(plan, plan.shared_inputs(), notes)] == ["lambda-0.1", "dense-lambda0"]
    assert notes.lines[0] == ("lambda-0.1: made from other inputs (changed: checkpoint, data): its results are "
                              "discarded and the point is run again")
    assert not (folder / "point.json").exists()
