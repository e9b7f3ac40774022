"""A fuzz test of groups, prune and compact: random bytes, safetensors files with a valid length and a random or
garbled header, random or slightly wrong specs; every run exits 0, 1 or 2 in one line, leaves its inputs
byte-identical and no stray file (docs/security.md, "Failures are one line, and 70 means a bug")."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import isscli
from isscli.iss.spec import derive_spec
from tests.conftest import file_state, tiny_config

NAMES = ["encoder.weight", "decoder.weight", "decoder.bias", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
         "rnn.weight_ih_l1", "rnn.weight_hh_l1", "mask.rnn.weight_hh_l0", "x[/x]", "e\x1b[2J"]


DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "BOOL": 1, "U8": 1, "F8_E4M3": 1, "C64": 8, "XX": 4}


NUMBERS = st.one_of(st.integers(-2, 12), st.sampled_from([2**31, 2**63, 2**64 + 5, 10**30]),
                    st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none())


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A valid 8-byte header length, a random or garbled JSON header, and data of about the right size."""
    header: dict = {}
    offset = 0
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=6, unique=True)):
        dtype = draw(st.sampled_from(list(DTYPES)))
        shape = draw(st.lists(st.integers(0, 8), max_size=3))
        size = DTYPES[dtype] * int(torch.Size(shape).numel()) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + max(size, 0)]}
        offset += max(size, 0)
    if draw(st.booleans()):
        config = draw(st.fixed_dictionaries({}, optional={
            "family": st.sampled_from(["lm", "classifier", "x"]), "cell": st.sampled_from(["lstm", "gru", "y"]),
            "vocab_size": NUMBERS, "embedding_size": NUMBERS, "tie_weights": NUMBERS, "dropout": NUMBERS,
            "hidden_sizes": st.lists(st.lists(st.integers(-1, 8), max_size=2), max_size=2)}))
        header["__metadata__"] = {"isscli.config": json.dumps(config)}
    text = json.dumps(header).encode()
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.binary(max_size=3)) + text[cut + 1:]
    return struct.pack("<Q", len(text)) + text + draw(st.binary(min_size=offset, max_size=offset))


SLICES = st.fixed_dictionaries({}, optional={
    "tensor": st.sampled_from(["rnn.weight_hh_l0", "rnn.weight_ih_l1", "decoder.weight", "nope"]) | NUMBERS,
    "dim": NUMBERS, "offset": NUMBERS, "blocks": NUMBERS, "block_stride": NUMBERS,
    "role": st.sampled_from(["producer", "receiver"]) | NUMBERS, "penalize": NUMBERS})


SETS = st.fixed_dictionaries({"name": st.text(max_size=4) | NUMBERS, "components": NUMBERS,
                              "slices": st.lists(SLICES, max_size=3) | NUMBERS}, optional={"multiplier": NUMBERS})


ENTRIES = st.fixed_dictionaries({}, optional={
    "var_name": st.sampled_from(["rnn.weight_hh_l0", "Model/kernel:0"]) | NUMBERS, "axis": NUMBERS,
    "start": NUMBERS, "end": NUMBERS, "multi": NUMBERS})


SPECS = st.one_of(
    st.fixed_dictionaries({"format": st.just("isscli.groups") | NUMBERS, "version": st.just(1) | NUMBERS,
                           "sets": st.lists(SETS, max_size=3) | NUMBERS}),
    st.fixed_dictionaries({"groups": st.lists(st.lists(ENTRIES, max_size=3) | NUMBERS, max_size=2) | NUMBERS}),
    st.recursive(NUMBERS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=8),
)


@st.composite
def edited_specs(draw: st.DrawFn) -> dict:
    """The fuzz model's own spec (:func:`fuzz_model`) with one field of a set or a slice changed or dropped."""
    spec = derive_spec(isscli.init(tiny_config()).tensors).to_json()
    iss = draw(st.sampled_from(spec["sets"]))
    target = draw(st.sampled_from([iss, *iss["slices"]]))
    field = draw(st.sampled_from(sorted(target) + ["block_stride", "multiplier"]))
    if draw(st.booleans()):
        target.pop(field, None)
    else:
        target[field] = draw(NUMBERS | st.integers(0, 30))
    return spec


INPUTS = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("header"), safetensors_files()),
    st.tuples(st.just("spec"), (SPECS | edited_specs()).map(lambda spec: json.dumps(spec).encode())),
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@given(INPUTS, st.sampled_from(["groups", "prune", "compact"]))
def test_fuzz_groups_prune_compact(run_cli, fuzz_model: bytes, given_input: tuple[str, bytes], command: str) -> None:
    kind, blob = given_input
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        checkpoint, spec = folder / "in.safetensors", folder / "spec.json"
        checkpoint.write_bytes(blob if kind != "spec" else fuzz_model)
        if kind == "spec":
            spec.write_bytes(blob)
        inputs = file_state(folder)
        output, report = folder / "out.safetensors", folder / "report.json"
        with_spec = ["--spec", spec] if kind == "spec" else []
        args = {"groups": ["groups", checkpoint, *(["--check", spec] if kind == "spec" else []), "--json", report],
                "prune": ["prune", checkpoint, "--keep-fraction", "0.5", *with_spec, "-o", output, "--json", report],
                "compact": ["compact", checkpoint, *with_spec, "-o", output, "--json", report]}[command]
        result = run_cli(*args)
        assert result.code in (0, 1, 2), (result.code, result.stderr)
        assert "Traceback" not in result.stderr
        if result.code:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        after = file_state(folder)
        assert {name: after[name] for name in inputs} == inputs  # inputs byte-identical
        written = {"groups": {"report.json"}, "prune": {"out.safetensors", "report.json"},
                   "compact": {"out.safetensors", "report.json"}}[command] if result.code == 0 else set()
        assert set(after) - set(inputs) == written  # no temp file, no lock file, nothing half-written


@pytest.fixture(scope="module")
def fuzz_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small LM checkpoint, to fuzz specs against."""
    model = isscli.init(tiny_config())
    return isscli.save(model, tmp_path_factory.mktemp("fuzz") / "lm.safetensors").read_bytes()
