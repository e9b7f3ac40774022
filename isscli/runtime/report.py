"""The report of ``isscli bench`` as typed values: schema ``isscli.bench/3`` (docs/bench.md).

Callers read attributes; :meth:`BenchResult.to_json` writes the documented wire format, field for field and in
the same order, and :meth:`BenchResult.from_json` reads one back (``shrink.json`` nests one), each field checked
so that a damaged record is one line naming the field. Records of versions 1 and 2 lack a few fields of
version 3 (``settings.runtime``, ``settings.quantize``, each model's ``precision`` and ``runtime``,
``comparison.against_onnxruntime_fp32``); they read as what those versions timed: torch, fp32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject
from isscli.io.manifest import field_problem, validated
from isscli.runtime.timing import Machine, Timings

SCHEMA = "isscli.bench/3"
#: Fields of a timed model that only the user's own models (``model``) have; isscli's models leave them out.
USER_MODEL_ONLY = ("multiply_adds_per_sequence", "not_counted")


@dataclass(frozen=True)
class BenchSettings:
    """How the models were timed (the report's ``settings``)."""

    batch: int
    latency_batch: int
    steps: int | None  # None for the user's own models: their data's own length
    repeats: int
    warmup: int
    device: str
    cuda_graphs: bool
    seed: int
    runtime: str  # torch | onnxruntime
    quantize: str | None  # int8 | bf16: quantized twins were timed too
    inputs: str | None = None  # the user's own models: what their forward ran on (left out of the JSON otherwise)

    def to_json(self) -> JSONObject:
        report = asdict(self)
        if self.inputs is None:
            del report["inputs"]
        return report


@dataclass
class Details:
    """What the report says of one model where it applies; each is left out of the JSON when None."""

    assumption: str | None = None  # a checkpoint without a config run as an ``arch`` family: what was assumed
    max_output_difference: float | None = None  # CSR models: their outputs against the dense masked model's
    onnx_max_output_difference: float | None = None  # ONNX Runtime: its outputs against PyTorch's

    def to_json(self) -> JSONObject:
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass
class TimedModel:
    """One model of the race: what it is, what it costs, and its timings by workload (``full``, ``recurrent``,
    ``latency``)."""

    role: str  # model | baseline | unstructured; with ``quantize`` also -int8/-bf16 and -onnxruntime rows
    label: str  # a short name for tables
    source: JSONObject  # as reported: a checkpoint and its hash, a preset's shapes, or where a scatter came from
    format: str  # dense | csr
    precision: str  # fp32 | int8 | bf16, of the weights as timed
    runtime: str  # torch | onnxruntime
    family: str | None  # None for the user's own class, as are cell, vocab_size and embedding_size
    cell: str | None
    vocab_size: int | None
    embedding_size: int | None
    hidden_sizes: list[list[int]]  # per layer, the size of each direction
    parameters: int  # dense-shaped, tied tensors once; CSR models: their nonzero entries
    nonzero_weights: int  # of the recurrent and output matrices
    bytes: int  # memory of the tensors as timed
    multiply_adds_per_step: int | None  # per sequence and step; None for the user's own models
    multiply_adds_per_sequence: float | None = None  # the user's own models: counted on a run of their forward
    not_counted: list[str] | None = None  # the user's own models: modules with weights left out of the count
    details: Details = field(default_factory=Details)
    timings: dict[str, Timings] = field(default_factory=dict)

    @property
    def multiply_adds(self) -> float:
        """Per step for isscli's families, per sequence for the user's own models (which have no step count)."""
        counted: float | None = self.multiply_adds_per_step
        if counted is None:
            counted = self.multiply_adds_per_sequence
        if counted is None:
            raise ValueError(f"the {self.role}'s multiply-adds were not counted")
        return counted

    def to_json(self) -> JSONObject:
        report = {name: value for name, value in vars(self).items()
                  if name not in ("details", "timings") and not (name in USER_MODEL_ONLY and value is None)}
        timings = {workload: timing.to_json() for workload, timing in self.timings.items()}
        return {**report, **self.details.to_json(), "timings": timings}


@dataclass(frozen=True)
class Comparison:
    """Ratios of the other models against the baseline (medians; 8.1 means 8.1×)."""

    speedup: float  # the headline: baseline / model, full workload; what ``fail_below`` gates
    speedups: dict[str, dict[str, float]]  # per role but the baseline's, per workload: baseline / that role
    against_onnxruntime_fp32: dict[str, float] | None  # ``quantize`` int8: per role, ONNX Runtime fp32 / that role
    multiply_add_reduction: float  # baseline / model, per step (per sequence for the user's own models)
    parameter_reduction: float
    structured_over_unstructured: float | None  # unstructured / model, full workload (with an unstructured twin)

    def to_json(self) -> JSONObject:
        return asdict(self)


@dataclass(frozen=True)
class Noise:
    """The widest spread of any model's repeats, (max − min) / median, and whether it makes the figures noise."""

    spread: float
    role: str
    workload: str
    noisy: bool
    warning: str | None = None  # with ``noisy``: what to do about it (left out of the JSON otherwise)

    def to_json(self) -> JSONObject:
        report = asdict(self)
        if self.warning is None:
            del report["warning"]
        return report


@dataclass(frozen=True)
class SpeedupGate:
    """``fail_below``'s verdict: whether the full-inference speed-up reached it (the library never raises it)."""

    fail_below: float
    speedup: float | None
    passed: bool

    def to_json(self) -> JSONObject:
        return asdict(self)


@dataclass
class BenchResult:
    """The report of schema ``isscli.bench/3`` (docs/bench.md), field by field."""

    schema: str
    settings: BenchSettings
    machine: Machine
    models: list[TimedModel]  # model first, then baseline, then the others (docs/bench.md)
    comparison: Comparison | None  # None without a baseline
    noise: Noise | None = None
    gate: SpeedupGate | None = None  # None without ``fail_below``

    @property
    def speedup(self) -> float | None:
        """Full-inference speed-up of the model over the baseline (median times)."""
        return self.comparison.speedup if self.comparison else None

    def model(self, role: str) -> TimedModel:
        """The timed model of this role (``model``, ``baseline``, …)."""
        return next(timed for timed in self.models if timed.role == role)

    def median_ms(self, role: str, workload: str = "full") -> float:
        return self.model(role).timings[workload].median_ms

    def to_json(self) -> JSONObject:
        return {
            "schema": self.schema,
            "settings": self.settings.to_json(),
            "machine": self.machine.to_json(),
            "models": [timed.to_json() for timed in self.models],
            "comparison": self.comparison.to_json() if self.comparison else None,
            "noise": self.noise.to_json() if self.noise else None,
            "gate": self.gate.to_json() if self.gate else None,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str = "bench report", hint: str = "rerun isscli bench",
                  at: str = "") -> BenchResult:
        """The report ``raw`` holds, each field checked: ``where`` names the file in messages and ``at`` the
        report's place in it (``bench`` in ``shrink.json``)."""
        return Reading(where, hint).result(raw, at)


# -- reading a report back -------------------------------------------------------------------------

RESULT_KINDS = {"schema": "string", "settings": "object", "machine": "object", "models": "list",
                "comparison": "object?", "noise": "object?", "gate": "object?"}
SETTINGS_KINDS = {"batch": "integer", "latency_batch": "integer", "steps": "integer?", "repeats": "integer",
                  "warmup": "integer", "device": "string", "cuda_graphs": "boolean", "seed": "integer",
                  "runtime": "string?", "quantize": "string?", "inputs": "string?"}
MACHINE_KINDS = {"cpu": "string", "logical_cpus": "integer?", "threads": "integer", "torch": "string",
                 "mkl": "boolean", "python": "string", "platform": "string", "device": "string", "gpu": "string?",
                 "cuda": "string?", "cudnn": "integer?"}
MODEL_KINDS = {"role": "string", "label": "string", "source": "object", "format": "string", "precision": "string?",
               "runtime": "string?", "family": "string?", "cell": "string?", "vocab_size": "integer?",
               "embedding_size": "integer?", "hidden_sizes": "list", "parameters": "integer",
               "nonzero_weights": "integer", "bytes": "integer", "multiply_adds_per_step": "integer?",
               "multiply_adds_per_sequence": "number?", "not_counted": "list?"}
DETAILS_KINDS = {"assumption": "string?", "max_output_difference": "number?", "onnx_max_output_difference": "number?"}
COMPARISON_KINDS = {"speedup": "number", "speedups": "object", "against_onnxruntime_fp32": "object?",
                    "multiply_add_reduction": "number", "parameter_reduction": "number",
                    "structured_over_unstructured": "number?"}
NOISE_KINDS = {"spread": "number", "role": "string", "workload": "string", "noisy": "boolean", "warning": "string?"}
GATE_KINDS = {"fail_below": "number", "speedup": "number?", "passed": "boolean"}
#: What records of versions 1 and 2 timed where version 3 names it (module docstring).
OLDER = {"runtime": "torch", "precision": "fp32"}
Part = TypeVar("Part")


def within(at: str, name: str) -> str:
    return f"{at}.{name}" if at else name


@dataclass(frozen=True)
class Reading:
    """Reads a report back: ``where`` names the file in messages, ``hint`` says what to do about a bad one."""

    where: str
    hint: str

    def problem(self, at: str, reason: str) -> IsscliError:
        return IsscliError(f'{self.where}: field "{at}" {reason}', self.hint)

    def fields(self, raw: Any, kinds: Mapping[str, str], at: str, older: Mapping[str, str] | None = None) -> JSONObject:
        """``raw``'s fields named in ``kinds``, each of its kind (absent optional ones None, or ``older``'s value)."""
        checked = validated(raw, kinds, self.where, self.hint, at)
        values = {name: checked.get(name) for name in kinds}
        return {**values, **{name: value for name, value in (older or {}).items()
                             if name in values and values[name] is None}}

    def result(self, raw: Any, at: str) -> BenchResult:
        values = self.fields(raw, RESULT_KINDS, at)
        if not values["models"]:
            raise self.problem(within(at, "models"), "is an empty list")
        return BenchResult(
            values["schema"],
            BenchSettings(**self.fields(values["settings"], SETTINGS_KINDS, within(at, "settings"), OLDER)),
            Machine(**self.fields(values["machine"], MACHINE_KINDS, within(at, "machine"))),
            [self.timed_model(timed, within(at, f"models.{index}")) for index, timed in enumerate(values["models"])],
            self.optional(values["comparison"], within(at, "comparison"), self.comparison),
            self.optional(values["noise"], within(at, "noise"), self.noise),
            self.optional(values["gate"], within(at, "gate"), self.gate),
        )

    @staticmethod
    def optional(raw: Any, at: str, read: Callable[[Any, str], Part]) -> Part | None:
        """A part the report may hold as null."""
        return None if raw is None else read(raw, at)

    def numbers(self, raw: Any, at: str) -> dict[str, float]:
        """An object of numbers (ratios by role or workload)."""
        return self.fields(raw, dict.fromkeys(raw if isinstance(raw, dict) else (), "number"), at)

    def timings(self, raw: Any, at: str) -> Timings:
        samples = self.fields(raw, {"samples_ms": "list"}, at)["samples_ms"]
        if not samples or any(field_problem(sample, "number") for sample in samples):
            raise self.problem(within(at, "samples_ms"), "is not a list of numbers")
        return Timings(tuple(samples))

    def timed_model(self, raw: Any, at: str) -> TimedModel:
        values = self.fields(raw, MODEL_KINDS, at, OLDER)
        timings = self.fields(raw, {"timings": "object"}, at)["timings"]
        return TimedModel(**values, details=Details(**self.fields(raw, DETAILS_KINDS, at)),
                          timings={workload: self.timings(timing, within(at, f"timings.{workload}"))
                                   for workload, timing in timings.items()})

    def comparison(self, raw: Any, at: str) -> Comparison:
        values = self.fields(raw, COMPARISON_KINDS, at)
        speedups = {role: self.numbers(ratios, within(at, f"speedups.{role}"))
                    for role, ratios in values["speedups"].items()}
        against = self.optional(values["against_onnxruntime_fp32"], within(at, "against_onnxruntime_fp32"),
                                self.numbers)
        return Comparison(**{**values, "speedups": speedups, "against_onnxruntime_fp32": against})

    def noise(self, raw: Any, at: str) -> Noise:
        return Noise(**self.fields(raw, NOISE_KINDS, at))

    def gate(self, raw: Any, at: str) -> SpeedupGate:
        return SpeedupGate(**self.fields(raw, GATE_KINDS, at))
