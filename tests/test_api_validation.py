"""The library checks its requests when they are made: one IsscliError naming the field, the value and the type
expected — never a raw TypeError or AttributeError from deep inside, never a silent coercion (issue 21, repro 13)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import isscli
from isscli.api.validation import field_types, fits

#: Every request, with the fewest fields that make it valid.
REQUESTS: dict[type, dict[str, Any]] = {
    isscli.TrainRequest: {"preset": "tiny", "output": "o.safetensors"},
    isscli.FinetuneRequest: {"checkpoint": "c.safetensors"},
    isscli.PruneRequest: {"checkpoint": "c.safetensors", "group_threshold": 0.0},
    isscli.CompactRequest: {"checkpoint": "c.safetensors"},
    isscli.EvaluateRequest: {"checkpoint": "c.safetensors"},
    isscli.BenchRequest: {"shapes": "4,3"},
    isscli.ExportRequest: {"checkpoint": "c.safetensors", "output": "o.onnx"},
    isscli.SparsifyRequest: {"checkpoint": "c.safetensors", "sparsity": 0.5},
    isscli.ShrinkRequest: {"checkpoint": "c.safetensors", "folder": "out"},
    isscli.DemoRequest: {},
    isscli.ShowRequest: {"checkpoint": "c.safetensors"},
}


class Alien:
    """A value of no type any request field accepts."""


def cases() -> list[tuple[type, str]]:
    return [(cls, field.name) for cls in REQUESTS for field in dataclasses.fields(cls)
            if not fits(Alien(), field_types(cls)[field.name])]


@pytest.mark.parametrize(("cls", "name"), cases(), ids=lambda value: getattr(value, "__name__", value))
def test_every_field_of_every_request_refuses_a_wrong_type_by_name(cls: type, name: str) -> None:
    assert cls(**REQUESTS[cls])  # the minimal request is valid
    with pytest.raises(isscli.IsscliError) as caught:
        cls(**{**REQUESTS[cls], name: Alien()})
    assert str(caught.value).startswith(f"`{name}` must be ") and "(got <" in str(caught.value)


def test_the_issues_repros_are_one_line_each() -> None:
    expected = {
        lambda: isscli.PruneRequest(checkpoint="c", group_threshold="0.1"): "`group_threshold` must be a float or None "
                                                                            "(got '0.1', a string)",
        lambda: isscli.FinetuneRequest(checkpoint="c", settings="epochs=1"): "`settings` must be a mapping",
        lambda: isscli.EvaluateRequest(checkpoint="c", batch_size="10"): "`batch_size` must be an int (got '10'",
        lambda: isscli.PruneRequest(checkpoint="c", target_hidden=[32.5, 3]): "`target_hidden` must be a string or a "
                                                                              "list of ints or None (got [32.5, 3]",
        lambda: isscli.BenchRequest(shapes="4,3", batch=True): "`batch` must be an int (got True, a bool)",
        lambda: isscli.load(None): "`path` must be a path (got None, None)",
        lambda: isscli.prune(None): "`request` must be a PruneRequest (got None, None)",
        lambda: isscli.evaluate("c.safetensors"): "`request` must be an EvaluateRequest",
    }
    for make, words in expected.items():
        with pytest.raises(isscli.IsscliError) as caught:
            make()
        assert words in str(caught.value) and "\n" not in str(caught.value)


def test_what_is_right_passes_untouched() -> None:
    request = isscli.PruneRequest(checkpoint=Path("c.safetensors"), target_hidden=[32, 3], weight_threshold=1)
    assert request.target_hidden == [32, 3] and request.weight_threshold == 1  # an int is a float; nothing coerced
    assert isscli.FinetuneRequest(checkpoint="c", settings={"epochs": 1}, target_hidden="100,80").settings == {
        "epochs": 1}
