"""``show``: a checkpoint's ISS summarised per set, and optionally drawn (the paper's Fig. 3/4 pictures)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from isscli.api.common import CheckpointSource, PathLike, SpecSource, as_checkpoint, resolve_spec
from isscli.api.validation import Checked, checked_arguments
from isscli.io.errors import OutputError
from isscli.io.jsonfile import JSONObject

#: The pictures ``output`` gets, by file name, and the function of :mod:`isscli.runtime.pictures` that draws each.
PICTURES = {"zero-pattern.png": "zero_pattern", "group-norms.png": "group_norm_histogram", "units.png": "units_chart"}


@dataclass(kw_only=True)
class ShowRequest(Checked):
    """Summarise ``checkpoint``'s ISS sets (``spec``: derived when None); with ``output``, draw :data:`PICTURES`."""

    checkpoint: CheckpointSource
    spec: SpecSource = None
    renames: Mapping[str, str] = field(default_factory=dict)
    output: PathLike | None = None  # a folder for the pictures; None: the summary only


@dataclass
class SetSummary:
    """One ISS set: its components, the nonzero ones and those a compaction removes, the statistics of its group
    norms ‖w_k‖, the share of its weights that are zero, and a one-line histogram of the norms."""

    name: str
    components: int
    nonzero: int
    removable: int
    norm_min: float
    norm_median: float
    norm_max: float
    zero_weights: float
    histogram: str

    @classmethod
    def of(cls, numbers: Mapping[str, float | int | str]) -> SetSummary:
        """From the numbers :func:`isscli.runtime.pictures.set_summary` gives, by name."""
        return cls(str(numbers["name"]), int(numbers["components"]), int(numbers["nonzero"]),
                   int(numbers["removable"]), float(numbers["norm_min"]), float(numbers["norm_median"]),
                   float(numbers["norm_max"]), float(numbers["zero_weights"]), str(numbers["histogram"]))

    def to_json(self) -> JSONObject:
        return dict(vars(self))


@dataclass
class ShowResult:
    """Per set its components, nonzero and removable ones, group-norm statistics and histogram; the pictures."""

    checkpoint: str
    sets: list[SetSummary]
    pictures: list[str]

    def to_json(self) -> JSONObject:
        return {"checkpoint": self.checkpoint, "sets": [summary.to_json() for summary in self.sets],
                "pictures": self.pictures}


@checked_arguments
def show(request: ShowRequest) -> ShowResult:
    """A checkpoint's ISS, set by set; the pictures are written only when ``output`` is given.

    Example::

        isscli.show(isscli.ShowRequest(checkpoint="iss.safetensors")).sets[0].removable
    """
    from isscli.runtime import pictures
    loaded = as_checkpoint(request.checkpoint)
    spec = resolve_spec(loaded, request.spec, request.renames)
    summaries = [SetSummary.of(pictures.set_summary(loaded.tensors, iss)) for iss in spec.sets]
    written = []
    if request.output is not None:
        folder = Path(request.output)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the folder {folder} ({error.strerror})",
                              "choose a writable folder for `output`") from None
        for name, drawer in PICTURES.items():
            getattr(pictures, drawer)(loaded.tensors, spec, folder / name)
            written.append(str(folder / name))
    return ShowResult(str(loaded.path) if loaded.path else "(in memory)", summaries, written)
