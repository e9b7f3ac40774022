"""What a sweep records: per point its row (``point.json``, a line of ``points.jsonl``), and the dense baseline.

Each record is a typed value; ``to_json()`` writes its wire format (``point.json``, schema ``isscli.point/1``; the
rows and the baseline of the ``isscli.sweep/2`` report) and ``from_json()`` reads one back once its fields are
checked (:mod:`isscli.sweeping.folders`, :func:`isscli.sweeping.run.baseline_record`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Literal, TypeVar

from isscli.io.jsonfile import JSONObject
from isscli.sweeping.points import Point

M = TypeVar("M", bound="Measured")

#: How a point ended: finished (``ok``), stopped by its divergence guard (``diverged``: finished too), or ``failed``.
Status = Literal["ok", "diverged", "failed"]


@dataclass
class Measured:
    """What a finished model measured: units per layer and direction after compaction, parameters, the test score
    (perplexity, accuracy or loss; :class:`isscli.api.scoring.Metric` says which counts) and the speed-up over the
    dense model."""

    #: The kinds of the fields in a record (:func:`isscli.io.manifest.validated`).
    KINDS: ClassVar[dict[str, str]] = {"hidden_sizes": "list?", "parameters": "integer", "perplexity": "number?",
                                       "accuracy": "number?", "loss": "number", "speedup": "number"}

    hidden_sizes: list[list[int]] | None
    parameters: int
    perplexity: float | None
    accuracy: float | None
    loss: float
    speedup: float

    def to_json(self) -> JSONObject:
        return {f.name: getattr(self, f.name) for f in fields(Measured)}

    @classmethod
    def from_json(cls: type[M], raw: JSONObject) -> M:
        """The fields of a checked record (:data:`KINDS`: an optional one may be absent)."""
        return cls(raw.get("hidden_sizes"), raw["parameters"], raw.get("perplexity"), raw.get("accuracy"), raw["loss"],
                   raw["speedup"])


@dataclass
class Baseline(Measured):
    """The dense parent of a fine-tuning sweep, scored once on the test split: its row is labelled ``dense``."""

    label: ClassVar[str] = "dense"

    def to_json(self) -> JSONObject:
        return {"label": self.label, "kind": "baseline", "value": None, "status": "ok", **super().to_json()}


@dataclass
class PointRecord:
    """A point's row: which point, how it ended (with the reason where it did not finish) and, once finished
    ``ok``, what its compacted model measured and how its training went."""

    kind: str
    value: str
    label: str
    status: Status
    error: str | None = None  # why it diverged or failed
    measured: Measured | None = None  # status ok
    multiply_add_reduction: float | None = None  # status ok: the benchmark's, against the dense model
    valid: JSONObject | None = None  # status ok: the training's best validation scores, as train.json has them
    targets: dict[str, int] | None = None  # units per set the λ controller aimed at (target points)
    finished: float | None = None  # when point.json was written (Unix time); None: not finished
    pareto: list[str] | None = None  # in a report: the axes on whose Pareto front the point lies

    @classmethod
    def of(cls, point: Point, status: Status, error: str | None = None) -> PointRecord:
        return cls(point.kind, point.value, point.label, status, error)

    def to_json(self) -> JSONObject:
        record: JSONObject = {"kind": self.kind, "value": self.value, "label": self.label, "status": self.status}
        if self.measured is None:
            record["error"] = self.error
        else:
            record.update(self.measured.to_json(), multiply_add_reduction=self.multiply_add_reduction,
                          valid=self.valid)
        optional = {"targets": self.targets, "finished": self.finished, "pareto": self.pareto}
        return record | {name: value for name, value in optional.items() if value is not None}

    @classmethod
    def from_json(cls, raw: JSONObject) -> PointRecord:
        """A checked ``point.json`` (:func:`isscli.sweeping.folders.read_point`)."""
        measured = Measured.from_json(raw) if raw["status"] == "ok" else None
        return cls(raw["kind"], raw["value"], raw["label"], raw["status"], raw.get("error"), measured,
                   raw.get("multiply_add_reduction"), raw.get("valid"), raw.get("targets"), raw.get("finished"))
