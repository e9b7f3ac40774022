"""ISS group specs: the native format, the authors' format, and derivation from a checkpoint."""

from __future__ import annotations

from pathlib import Path

from isscli.io.errors import SpecError
from isscli.iss.spec.authors import is_authors_format, parse_authors
from isscli.iss.spec.derive import derive_spec
from isscli.iss.spec.schema import SCHEMA_PATH, GroupSpec, IssSet, TensorSlice, check_spec, load_spec_data, parse_native

__all__ = [
    "SCHEMA_PATH",
    "GroupSpec",
    "IssSet",
    "TensorSlice",
    "check_spec",
    "derive_spec",
    "load_spec",
    "parse_spec",
]


def parse_spec(raw: object, renames: dict[str, str] | None = None) -> GroupSpec:
    """Native or authors' format, recognised by its fields."""
    if is_authors_format(raw):
        return parse_authors(raw, renames)
    if isinstance(raw, dict) and "format" in raw:
        spec = parse_native(raw)
        if renames:
            for iss in spec.sets:
                iss.slices = [
                    TensorSlice(**{**piece.__dict__, "tensor": renames.get(piece.tensor, piece.tensor)})
                    for piece in iss.slices
                ]
        return spec
    raise SpecError(
        'the spec is neither an isscli spec (with "format": "isscli.groups") nor the authors\' format (with "groups")',
        "see the README's section on group specs",
    )


def load_spec(path: Path | str, renames: dict[str, str] | None = None) -> GroupSpec:
    """Read a spec file of either format."""
    spec = parse_spec(load_spec_data(Path(path)), renames)
    spec.source = str(path)
    return spec
