"""``isscli groups``: derive, check and convert ISS group specs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from typer.core import TyperGroup

from isscli.cli.common import (
    ForceOption,
    RenameFileOption,
    RenameOption,
    ReportForceOption,
    claim_outputs,
    renames_from,
)
from isscli.cli.options import HELP, option
from isscli.cli.output import JSON_HELP, console, emit, note, table, visible
from isscli.io.atomic import atomic_write_text
from isscli.io.errors import IsscliError

if TYPE_CHECKING:
    from isscli.io.checkpoint import Checkpoint
    from isscli.iss.spec import GroupSpec


class DefaultsToShow(TyperGroup):
    """``isscli groups CKPT`` means ``isscli groups show CKPT``."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultsToShow,
    no_args_is_help=True,
    help="Show, check and convert ISS group specs. `isscli groups CKPT` derives the spec of a checkpoint.",
)


def spec_report(spec: GroupSpec, checkpoint: Checkpoint) -> dict[str, Any]:
    from isscli.iss.surgery import alive_components, removable_components

    shapes = {name: tuple(t.shape) for name, t in checkpoint.tensors.items()}
    return {
        "checkpoint": str(checkpoint.path),
        "sha256": checkpoint.sha256,
        "sets": [
            {
                "name": iss.name,
                "components": iss.components,
                "group_length": iss.group_length(shapes),
                "multiplier": iss.multiplier,
                "alive": int(alive_components(checkpoint.tensors, iss).sum()),
                "removable": int(removable_components(checkpoint.tensors, iss).sum()),
                "tensors": sorted({piece.tensor for piece in iss.slices}),
                "slices": [piece.to_json() for piece in iss.slices],
            }
            for iss in spec.sets
        ],
    }


DIM_NAMES = {0: "rows", 1: "cols"}


def tensor_lines(iss: dict[str, Any]) -> str:
    """One line per tensor with the dimensions the set takes from it: ``rnn.weight_hh_l0 rows+cols``."""
    dims: dict[str, list[str]] = {}
    for piece in iss["slices"]:
        label = DIM_NAMES.get(piece["dim"], f"dim {piece['dim']}")
        dims.setdefault(piece["tensor"], [])
        if label not in dims[piece["tensor"]]:
            dims[piece["tensor"]].append(label)
    return "\n".join(f"{visible(name)} {'+'.join(labels)}" for name, labels in dims.items())


def render_spec(report: dict[str, Any], title: str) -> None:
    rows = [
        (s["name"], s["components"], s["group_length"], s["alive"], s["removable"], tensor_lines(s))
        for s in report["sets"]
    ]
    columns = ("set", "K", "group length", "nonzero", "removable", "tensors (dims taken)")
    console.print(table(title, columns, rows))


@app.command("show")
def show(
    checkpoint: Path = typer.Argument(..., help="A safetensors checkpoint."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the derived spec (native JSON) here."),
    check: Optional[Path] = typer.Option(
        None, "--check", help="Validate this spec against the checkpoint instead of deriving one."
    ),
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    data: Optional[Path] = option("data", HELP["model_data"]),
    input_shape: Optional[str] = option("input_shape"),
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Derive the ISS groups of CKPT (or check a spec with --check) and print one row per set.

    From tensor names: one recurrent module, or numbered ones (layers.0, layers.1, … read as a chain, which the
    spec's comment says). With --model, from your class's forward instead: any number of recurrent modules
    (an encoder and its decoder too), each unit's receivers found by running the model."""
    from isscli.api.common import resolve_spec  # the library, and torch, only when the command runs
    from isscli.api.user_models import example_input, model_spec
    from isscli.io.checkpoint import Checkpoint, load_checkpoint
    from isscli.live.model import parameter_tensors
    from isscli.live.usermodel import load_user_model, model_source

    claim_outputs(locals(), "output", "json_path")
    loaded = load_checkpoint(checkpoint)
    renames = renames_from(rename, rename_file)
    source = model_source(model, model_args)
    comment = None
    if source is not None:  # the model's own forward finds each unit's receivers
        module = load_user_model(source, loaded)
        example = example_input(data, input_shape)
        spec = model_spec(module, example, check, renames)
        loaded = Checkpoint(parameter_tensors(module), path=loaded.path, sha256=loaded.sha256)
        comment = f"traced from {model}'s forward: {example.description}"
    else:
        if data is not None or input_shape is not None:
            raise IsscliError("`data` and `input_shape` are what `model` runs on", "add `model`=file.py:Class")
        spec = resolve_spec(loaded, check, renames)
        comment = spec.comment if spec.comment and "assumed" in spec.comment else None
    report = spec_report(spec, loaded)
    report["derivation"] = comment
    title = f"ISS groups of {checkpoint}" + (f" (spec {check} is valid)" if check else "")
    if comment:
        note(comment, warning="assumed" in comment)
    emit(report, json_path, lambda: render_spec(report, title), "isscli.groups/1")
    if output is not None:
        atomic_write_text(output, spec.dumps())
        note(f"spec written to {output}")


@app.command("check")
def check_command(
    spec: Path = typer.Argument(..., help="A group spec (native or authors' format)."),
    checkpoint: Path = typer.Argument(..., help="The checkpoint it should fit."),
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    force: bool = ReportForceOption,
) -> None:
    """Validate SPEC against CHECKPOINT: names, ranges, overlaps (exit 2 on the first problem)."""
    show(checkpoint, None, spec, rename, rename_file, None, None, None, None, force, json_path)


@app.command("convert")
def convert(
    source: Path = typer.Argument(..., help="A spec in the authors' format (or a native one, to apply --rename)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the native spec."),
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    checkpoint: Optional[Path] = typer.Option(
        None, "--check", help="Also validate the result against this checkpoint."
    ),
    force: bool = ForceOption,
) -> None:
    """Convert a spec (e.g. the authors' TensorFlow-era JSON) to the native format."""
    from isscli import api  # the library, and torch, only when the command runs

    claim_outputs(locals(), "output")
    spec = api.convert_spec(source, output, renames_from(rename, rename_file), checkpoint, force=force)
    rows = [(iss.name, iss.components, iss.multiplier, len(iss.slices)) for iss in spec.sets]
    console.print(table(f"{source} → {output}", ("set", "K", "λ multiplier", "slices"), rows))
