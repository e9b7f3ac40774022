"""The command line is one door into the library: each command is the API function of its name, its options are
declared once (:mod:`isscli.cli.options`), and what it decides — default output names, the inputs no output may
overwrite, old flag names — the library (or the one registry) decides (issue 22)."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import typer.main

import isscli
import isscli.data.download
from isscli import api
from isscli.cli import options
from isscli.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "isscli" / "cli"

#: Every leaf command and the function of the package that it is.
FUNCTIONS = {
    "init": "init", "import-pt": "import_pt", "groups show": "groups", "groups check": "groups_check",
    "groups convert": "groups_convert", "prune": "prune", "sparsify": "sparsify", "compact": "compact",
    "show": "show", "demo": "demo", "train": "train", "finetune": "finetune", "eval": "evaluate",
    "data ptb": "data_ptb", "bench": "bench", "shrink": "shrink", "export": "export", "sweep": "sweep",
}


def leaf_commands() -> set[str]:
    group = typer.main.get_command(app)
    context = typer.Context(group)
    found = set()
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        subcommands = command.list_commands(context) if hasattr(command, "list_commands") else []
        found |= {f"{name} {sub}" for sub in subcommands} or {name}
    return found


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """The calls of ``name`` (``typer.Option``, ``locals``) in a module."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) == name]


def test_every_command_is_the_function_of_its_name() -> None:
    assert leaf_commands() == set(FUNCTIONS)
    for command, function in FUNCTIONS.items():
        assert callable(getattr(isscli, function)), command
    assert {name for name in FUNCTIONS.values() if name not in ("sweep", "demo")} <= set(api.HOMES)


def test_type_checkers_see_the_names_the_api_exports() -> None:
    """``isscli/api/__init__.py`` imports under ``TYPE_CHECKING`` exactly the names of ``HOMES``, from their homes."""
    tree = ast.parse((ROOT / "isscli" / "api" / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert seen == api.HOMES


def test_options_are_declared_once_and_commands_take_their_arguments_by_name() -> None:
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not calls(tree, "locals"), path.name
        inline = calls(tree, "typer.Option")
        expected = {"options.py": 1, "main.py": 2}.get(path.name, 0)  # the registry's; --debug and --version
        assert len(inline) == expected, path.name
    helps = [flag.help for flag in options.OPTIONS.values()]
    assert len(helps) == len(set(helps)), "one meaning per option"
    assert options.option("force") is not options.option("force")  # no option object shared between commands


def test_the_library_names_the_outputs_the_command_line_leaves_out(tmp_path: Path) -> None:
    checkpoint = tmp_path / "m.safetensors"
    for request, name in ((api.PruneRequest(checkpoint=checkpoint, keep_fraction=0.5), "m.pruned.safetensors"),
                          (api.CompactRequest(checkpoint=checkpoint), "m.compact.safetensors"),
                          (api.SparsifyRequest(checkpoint=checkpoint, sparsity=0.5), "m.sparse.safetensors")):
        assert api.default_output(request) == tmp_path / name
    given = api.CompactRequest(checkpoint=checkpoint, output="x.safetensors")
    assert api.default_output(given) == Path("x.safetensors")
    assert api.default_output(api.GroupsRequest(checkpoint=checkpoint)) is None  # a spec is written only if asked
    assert api.request_inputs(api.GroupsConvertRequest(source="a.json", checkpoint=checkpoint)) == (
        checkpoint, Path("a.json"))
    preset = api.SparsifyRequest(checkpoint=checkpoint, sparsity=0.5, config="tiny", output="tiny")
    assert api.request_inputs(preset) == (checkpoint,)  # a preset name is no file


def test_an_old_flag_still_works_and_says_its_new_name(run_cli, tiny_lm: Path, tmp_path: Path) -> None:  # noqa: ANN001
    old = run_cli("prune", tiny_lm, "-t", "1e-9", "-o", tmp_path / "old.safetensors", "--json", "-")
    new = run_cli("prune", tiny_lm, "--group-threshold", "1e-9", "-o", tmp_path / "new.safetensors", "--json", "-")
    assert old.code == new.code == 0
    assert "--threshold of prune is now --group-threshold (group norm ≤ τ); the old name will go" in old.stderr
    assert json.loads(old.stdout)["sets"] == json.loads(new.stdout)["sets"]
    assert "--threshold" not in run_cli("prune", "--help").stdout


def test_reports_are_the_results_to_json(run_cli, tiny_lm: Path, tmp_path: Path) -> None:  # noqa: ANN001
    pruned, small = tmp_path / "p.safetensors", tmp_path / "c.safetensors"
    assert run_cli("prune", tiny_lm, "--keep-fraction", "0.5", "-o", pruned).code == 0
    compacted = json.loads(run_cli("compact", pruned, "-o", small, "--json", "-").stdout)
    assert list(compacted) == ["schema", "checkpoint", "output", "sets", "parameters_before", "parameters_after",
                               "max_output_difference", "verified_on", "relative_difference", "assumption", "model"]
    assert compacted["checkpoint"] == str(pruned) and compacted["sets"][0] == {
        "name": "rnn.l0", "components_before": 6, "components_after": 3}
    sparse = json.loads(run_cli("sparsify", tiny_lm, "--sparsity", "0.5", "-o", tmp_path / "s.safetensors",
                                "--json", "-").stdout)
    assert list(sparse) == ["schema", "checkpoint", "output", "sparsity", "kept", "total", "density", "matrices"]
    assert list(sparse["matrices"][0]) == ["tensor", "shape", "kept", "total"]
    groups = json.loads(run_cli("groups", tiny_lm, "--json", "-").stdout)
    assert groups == {"schema": "isscli.groups/1", **api.groups(api.GroupsRequest(checkpoint=tiny_lm)).to_json()}


def test_groups_check_checks_a_spec(tiny_lm: Path, tmp_path: Path) -> None:
    with pytest.raises(isscli.IsscliError, match="there is no `spec` to check"):
        api.groups_check(api.GroupsRequest(checkpoint=tiny_lm))
    derived = api.groups(api.GroupsRequest(checkpoint=tiny_lm, output=tmp_path / "spec.json"))
    checked = api.groups_check(api.GroupsRequest(checkpoint=tiny_lm, spec=tmp_path / "spec.json"))
    assert checked.spec.to_json() == derived.spec.to_json() and [s.alive for s in checked.sets] == [6, 5]


def test_init_takes_the_set_flags_strings() -> None:
    assert api.init("tiny", changes=["dropout=0.25", "cell=gru"]).config == api.init(
        "tiny", changes={"dropout": 0.25, "cell": "gru"}).config
    with pytest.raises(isscli.IsscliError, match="^`changes` 'dropout' is not KEY=VALUE"):
        api.init("tiny", changes=["dropout"])


def test_data_ptb_writes_the_verified_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {split: f"a b {split}\n".encode() for split in ("train", "valid", "test")}
    archive = tmp_path / "simple-examples.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, text in texts.items():
            member = tarfile.TarInfo(f"simple-examples/data/ptb.{split}.txt")
            member.size = len(text)
            tar.addfile(member, io.BytesIO(text))
    for split, text in texts.items():
        monkeypatch.setitem(isscli.data.download.PTB_SHA256, split, hashlib.sha256(text).hexdigest())
    result = api.data_ptb(api.DataPtbRequest(dest=tmp_path / "ptb", url=archive.as_uri()))
    assert [(f.split, f.path.name, f.size) for f in result.files] == [
        (split, f"ptb.{split}.txt", len(text)) for split, text in texts.items()]
    assert result.url == archive.as_uri() and (tmp_path / "ptb" / "ptb.test.txt").read_bytes() == texts["test"]


def test_every_error_the_library_raises_is_exported() -> None:
    """A caller catches each of isscli's errors by the name ``isscli`` exports (and ``isscli.api`` too)."""
    import ast
    from pathlib import Path

    import isscli
    from isscli import api

    root = Path(isscli.__file__).parent
    bases = {"IsscliError", "CheckpointError", "SpecError", "OutputError", "GateFailed", "KeyboardInterrupt"}
    defined = {node.name for path in root.rglob("*.py") if "cli" not in path.relative_to(root).parts[:1]
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) in bases for b in node.bases)}
    assert {"RankLost", "ProvenanceError", "TrainingDiverged", "CompactionMismatch", "ExportMismatch"} <= defined
    assert defined <= set(isscli.__all__) and defined <= set(api.__all__)
