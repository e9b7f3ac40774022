"""What isscli reuses, mutated at random: a resume state's metadata, a shrink folder's record and a checkpoint's
provenance are truncated, retyped or emptied field by field; every command either refuses in one line (exit 2)
or gives what a fresh run gives — never exit 70, never a silent mix (issue 21, "a regression suite").

The resume state and the shrink record carry a checksum of what isscli wrote (the resume file's metadata digest,
the folder's manifest), so an edited one is refused outright; a checkpoint's provenance is a header a user may
well have edited, so it is read field by field."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from isscli.learn.state import METADATA_KEY

QUICK = ["--epochs", "2", "--batch-size", "4", "--bptt", "8", "--eval-batch-size", "4", "--max-batches", "6",
         "--device", "cpu"]
WRONG = st.sampled_from([None, "x", -1, 1.5, [], {}, True, 10**30])


def paths(record: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON value (the places a mutation can land)."""
    found = [prefix] if prefix else []
    if isinstance(record, dict):
        for key, value in record.items():
            found += paths(value, (*prefix, key))
    elif isinstance(record, list):
        for index, value in enumerate(record[:3]):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutations(draw: st.DrawFn, record: Any) -> tuple[str, Any]:
    """A mutated copy of ``record`` as JSON text: truncated, a field retyped, or a field removed."""
    kind = draw(st.sampled_from(["truncate", "retype", "remove"]))
    text = json.dumps(record)
    if kind == "truncate":
        return kind, text[: draw(st.integers(0, len(text) - 1))]
    place = draw(st.sampled_from(paths(record)))
    mutated = json.loads(text)
    parent = mutated
    for key in place[:-1]:
        parent = parent[key]
    if kind == "remove" and isinstance(parent, dict):
        del parent[place[-1]]
    else:
        parent[place[-1]] = draw(WRONG)
    return f"{kind} {'.'.join(map(str, place))}", json.dumps(mutated)


def assert_clean(result: Any, what: str) -> None:  # noqa: ANN401
    assert result.code in (0, 1, 2), (what, result.code, result.stderr[-500:])
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, (what, result.stderr[-500:])
    if result.code == 2:
        assert result.stderr.strip().splitlines()[-1].startswith("error:"), (what, result.stderr[-300:])


@pytest.fixture(scope="module")
def stopped(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run stopped after its first epoch (its resume file) and the same run finished straight."""
    from isscli.cli.main import main

    folder = tmp_path_factory.mktemp("stopped")
    base = ["train", "--preset", "tiny", "--data", str(corpus), *QUICK, "--lambda", "0.001"]
    main([*base, "-o", str(folder / "cut.safetensors"), "--stop-after", "1"])
    main([*base, "-o", str(folder / "straight.safetensors")])
    with safe_open(str(folder / "cut.resume.safetensors"), framework="pt") as reader:
        tensors = {name: reader.get_tensor(name) for name in reader.keys()}
        info = json.loads(reader.metadata()[METADATA_KEY])
    return {"folder": folder, "base": base, "tensors": tensors, "info": info}


@settings(max_examples=int(os.environ.get("ISSCLI_MUTATIONS", "20")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_resume_state_is_refused_or_resumes_as_the_run_would(run_cli, stopped, tmp_path: Path,  # noqa: ANN001
                                                                       data: st.DataObject) -> None:
    what, text = data.draw(mutations(stopped["info"]))
    folder = tmp_path / f"case{abs(hash(what)) % 10**8}"
    folder.mkdir(exist_ok=True)
    output = folder / "cut.safetensors"
    shutil.copy(stopped["folder"] / "cut.safetensors", output)
    save_file(stopped["tensors"], str(output.with_suffix(".resume.safetensors")), metadata={METADATA_KEY: text})
    result = run_cli(*stopped["base"], "-o", output, "--resume", "--json", "-")
    assert_clean(result, what)
    if result.code == 0:  # it resumed: then as the uninterrupted run ends
        straight = json.loads((stopped["folder"] / "straight.log.jsonl").read_text().splitlines()[-1])
        assert json.loads(result.stdout)["test"] == pytest.approx(straight["test"]), what


@pytest.fixture(scope="module")
def shrunk(dense: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from isscli.cli.main import main

    folder = tmp_path_factory.mktemp("shrunk") / "out"
    main(["shrink", str(dense), "-o", str(folder), "--data", str(corpus), "--no-bench", "--group-threshold", "0.5"])
    return {"folder": folder, "record": json.loads((folder / "shrink.json").read_text()), "dense": dense,
            "corpus": corpus}


@settings(max_examples=int(os.environ.get("ISSCLI_MUTATIONS", "20")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_shrink_record_is_refused_or_gives_the_fresh_result(run_cli, shrunk, tmp_path: Path,  # noqa: ANN001
                                                                     data: st.DataObject) -> None:
    what, text = data.draw(mutations(shrunk["record"]))
    folder = tmp_path / f"case{abs(hash(what)) % 10**8}"
    shutil.copytree(shrunk["folder"], folder, dirs_exist_ok=True)
    (folder / "shrink.json").write_text(text)
    result = run_cli("shrink", shrunk["dense"], "-o", folder, "--data", shrunk["corpus"], "--no-bench",
                     "--group-threshold", "0.5", "--resume", "--json", "-")
    assert_clean(result, what)
    if result.code == 0:
        fresh = shrunk["record"]["evaluations"]
        got = json.loads(result.stdout)["evaluations"]
        assert {role: got[role]["perplexity"] for role in fresh} == \
            pytest.approx({role: fresh[role]["perplexity"] for role in fresh}), what


@settings(max_examples=int(os.environ.get("ISSCLI_MUTATIONS", "20")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_provenance_is_refused_or_read_as_written(run_cli, dense: Path, corpus: Path, tmp_path: Path,  # noqa: ANN001
                                                           data: st.DataObject) -> None:
    from isscli.models.checkpoint import PROVENANCE_KEY

    with safe_open(str(dense), framework="pt") as reader:
        tensors = {name: reader.get_tensor(name) for name in reader.keys()}
        metadata = dict(reader.metadata())
    what, text = data.draw(mutations(json.loads(metadata[PROVENANCE_KEY])))
    mutated = tmp_path / f"m{abs(hash(what)) % 10**8}.safetensors"
    save_file(tensors, str(mutated), metadata={**metadata, PROVENANCE_KEY: text})
    for command in (["eval", mutated, "--data", corpus], ["prune", mutated, "--group-threshold", "0.5", "-o",
                                                          tmp_path / f"p{abs(hash(what)) % 10**8}.safetensors"]):
        assert_clean(run_cli(*command), f"{command[0]}: {what}")


def test_a_resume_state_edited_by_hand_is_refused_even_when_every_field_still_fits(run_cli, stopped,  # noqa: ANN001
                                                                                  tmp_path: Path) -> None:
    output = tmp_path / "cut.safetensors"
    shutil.copy(stopped["folder"] / "cut.safetensors", output)
    info = dict(stopped["info"], lowest_perplexity=1.5)  # a number where a number was: no type check sees it
    save_file(stopped["tensors"], str(output.with_suffix(".resume.safetensors")),
              metadata={METADATA_KEY: json.dumps(info)})
    result = run_cli(*stopped["base"], "-o", output, "--resume")
    assert result.code == 2 and "was changed since isscli wrote it" in result.stderr
