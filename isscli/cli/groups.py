"""``isscli groups``: derive, check and convert ISS group specs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.core import TyperGroup

from isscli import api
from isscli.cli.common import claim, reads_of, writes
from isscli.cli.options import MODEL_DATA, REPORT_FORCE, option
from isscli.cli.output import console, emit, note, table, visible

if TYPE_CHECKING:
    from typer._click.core import Context  # the parser's context, which typer keeps no public name for


class DefaultsToShow(TyperGroup):
    """``isscli groups CKPT`` means ``isscli groups show CKPT``."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultsToShow,
    no_args_is_help=True,
    help="Show, check and convert ISS group specs. `isscli groups CKPT` derives the spec of a checkpoint.",
)

DIM_NAMES = {0: "rows", 1: "cols"}


def tensor_lines(iss: api.GroupSet) -> str:
    """One line per tensor with the dimensions the set takes from it: ``rnn.weight_hh_l0 rows+cols``."""
    dims: dict[str, list[str]] = {}
    for piece in iss.slices:
        label = DIM_NAMES.get(piece.dim, f"dim {piece.dim}")
        dims.setdefault(piece.tensor, [])
        if label not in dims[piece.tensor]:
            dims[piece.tensor].append(label)
    return "\n".join(f"{visible(name)} {'+'.join(labels)}" for name, labels in dims.items())


def report(result: api.GroupsResult, title: str, json_path: Optional[Path]) -> None:
    """One row per set (or the JSON report); how the spec was found, and where it was written, on stderr."""
    if result.derivation:
        note(result.derivation, warning="assumed" in result.derivation)
    rows = [(s.name, s.components, s.group_length, s.alive, s.removable, tensor_lines(s)) for s in result.sets]
    columns = ("set", "K", "group length", "nonzero", "removable", "tensors (dims taken)")
    emit(result.to_json(), json_path, lambda: console.print(table(title, columns, rows)), "isscli.groups/1")
    if result.output is not None:
        note(f"spec written to {result.output}")


@app.command("show")
def show(
    checkpoint: Annotated[Path, typer.Argument(help="A safetensors checkpoint.")],
    output: Annotated[Optional[Path], option("output", "Write the derived spec (native JSON) here.")] = None,
    check: Annotated[Optional[Path], option("check")] = None,
    rename: Annotated[Optional[list[str]], option("rename")] = None,
    rename_file: Annotated[Optional[Path], option("rename_file")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    data: Annotated[Optional[Path], option("data", MODEL_DATA)] = None,
    input_shape: Annotated[Optional[str], option("input_shape")] = None,
    force: Annotated[bool, option("force")] = False,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
) -> None:
    """Derive the ISS groups of CKPT (or check a spec with --check) and print one row per set.

    From tensor names: one recurrent module, or numbered ones (layers.0, layers.1, … read as a chain, which the
    spec's comment says). With --model, from your class's forward instead: any number of recurrent modules
    (an encoder and its decoder too), each unit's receivers found by running the model."""
    request = api.GroupsRequest(checkpoint=checkpoint, spec=check, renames=api.read_renames(rename, rename_file),
                                model=model, model_args=model_args, data=data, input_shape=input_shape,
                                output=output, force=force)
    claim(writes(output), writes(json_path, "json_path"), reads=reads_of(request, rename_file), force=force)
    title = f"ISS groups of {checkpoint}" + (f" (spec {check} is valid)" if check else "")
    report(api.groups(request), title, json_path)


@app.command("check")
def check_command(
    spec: Annotated[Path, typer.Argument(help="A group spec (native or authors' format).")],
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint it should fit.")],
    rename: Annotated[Optional[list[str]], option("rename")] = None,
    rename_file: Annotated[Optional[Path], option("rename_file")] = None,
    json_path: Annotated[Optional[Path], option("json_path")] = None,
    force: Annotated[bool, option("force", REPORT_FORCE)] = False,
) -> None:
    """Validate SPEC against CHECKPOINT: names, ranges, overlaps (exit 2 on the first problem)."""
    request = api.GroupsRequest(checkpoint=checkpoint, spec=spec, renames=api.read_renames(rename, rename_file),
                                force=force)
    claim(writes(json_path, "json_path"), reads=reads_of(request, rename_file), force=force)
    report(api.groups_check(request), f"ISS groups of {checkpoint} (spec {spec} is valid)", json_path)


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(help="A spec in the authors' format (or a native one, to apply "
                                                "--rename).")],
    output: Annotated[Path, option("output", "Where to write the native spec.")],
    rename: Annotated[Optional[list[str]], option("rename")] = None,
    rename_file: Annotated[Optional[Path], option("rename_file")] = None,
    checkpoint: Annotated[Optional[Path], option("checkpoint")] = None,
    force: Annotated[bool, option("force")] = False,
) -> None:
    """Convert a spec (e.g. the authors' TensorFlow-era JSON) to the native format."""
    request = api.GroupsConvertRequest(source=source, output=output, renames=api.read_renames(rename, rename_file),
                                       checkpoint=checkpoint, force=force)
    claim(writes(output), reads=reads_of(request, rename_file), force=force)
    spec = api.groups_convert(request)
    rows = [(iss.name, iss.components, iss.multiplier, len(iss.slices)) for iss in spec.sets]
    console.print(table(f"{source} → {output}", ("set", "K", "λ multiplier", "slices"), rows))
