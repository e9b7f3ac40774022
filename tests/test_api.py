"""The library API on its own: a script with no CLI goes finetune → prune → compact (verified) → evaluate →
bench; requests are named like the CLI's flags; library messages become flags only in the CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import isscli
from isscli.cli.main import app, flag_names, in_flags
from isscli.io.provenance import invocation, invoked_by


def test_a_library_script_shrinks_a_model_and_prints_nothing(dense, corpus, tmp_path, capsys) -> None:  # noqa: ANN001
    quick = {"epochs": 1, "max_batches": 10, "batch_size": 4, "bptt": 8, "eval_batch_size": 4}
    tuned = isscli.finetune(isscli.FinetuneRequest(
        checkpoint=dense, output=tmp_path / "iss.safetensors", data=corpus, target_hidden=[6, 5],
        prune_epochs=1, recover_epochs=1, settings=quick, device="cpu"))
    assert isinstance(tuned, isscli.TrainResult) and tuned.best_epoch == 2 and tuned.test is not None
    assert tuned.settings.weight_threshold == 1e-4  # a target run thresholds at the paper's τ
    pruned = isscli.prune(isscli.PruneRequest(checkpoint=tuned.output, group_threshold=0.0))
    assert pruned.output is None and [s.alive_after for s in pruned.sets] == [6, 5]
    small = isscli.compact(isscli.CompactRequest(checkpoint=pruned.checkpoint, output=tmp_path / "small.safetensors"))
    assert small.hidden_sizes == [[6], [5]] and small.output == tmp_path / "small.safetensors"
    assert small.verification is not None and small.verification.max_output_difference <= small.verification.tolerance
    score = isscli.evaluate(isscli.EvaluateRequest(checkpoint=small.output, data=corpus, batch_size=4, device="cpu"))
    reference = isscli.evaluate(isscli.EvaluateRequest(checkpoint=tuned.output, data=corpus, batch_size=4,
                                                       device="cpu"))
    assert score.perplexity == pytest.approx(reference.perplexity, rel=1e-5) and score.parameters < reference.parameters
    timing = isscli.bench(isscli.BenchRequest(checkpoint=small.output, against=dense, repeats=2, warmup=0,
                                              fail_below=1e6))
    assert timing.speedup is not None and timing.speedup > 0 and timing.gate is not None
    assert (timing.gate.fail_below, timing.gate.speedup, timing.gate.passed) == (1e6, timing.speedup, False)  # no raise
    assert capsys.readouterr() == ("", "")  # nothing printed, not even a note
    provenance = isscli.load(small.output).provenance or {}
    assert provenance["invocation"] == {"via": "api"} and provenance["operation"] == "compact"
    assert provenance["parent_provenance"]["operation"] == "prune"
    grandparent = provenance["parent_provenance"]["parent_provenance"]
    assert grandparent["operation"] == "finetune" and grandparent["parameters"]["target_hidden"] == [6, 5]
    assert grandparent["parent_sha256"] == isscli.load(dense).sha256


def test_compact_refuses_to_write_an_inexact_model_and_can_skip_the_check(dense, tmp_path) -> None:  # noqa: ANN001
    loaded = isscli.load(dense)
    spec = isscli.groups(isscli.GroupsRequest(checkpoint=loaded)).spec
    tensors = dict(loaded.tensors)
    tensors["rnn.weight_hh_l0"] = tensors["rnn.weight_hh_l0"].clone()
    tensors["rnn.weight_hh_l0"][:, 0] = 0  # unit 0's own recurrent column is zero, its next-layer column is not
    forgetful = isscli.GroupSpec([dataclasses.replace(spec.sets[0], slices=[
        piece for piece in spec.sets[0].slices if piece.tensor != "rnn.weight_ih_l1"]), spec.sets[1]])
    checkpoint = isscli.Checkpoint(tensors, loaded.config)
    output = tmp_path / "never.safetensors"
    with pytest.raises(isscli.CompactionMismatch, match="outputs differ|consistent model"):
        isscli.compact(isscli.CompactRequest(checkpoint=checkpoint, spec=forgetful, output=output))
    assert not output.exists()
    unchecked = isscli.compact(isscli.CompactRequest(checkpoint=checkpoint, spec=forgetful, verify=False))
    assert unchecked.verification is None and unchecked.sets[0].components_after == 15


def test_every_request_field_is_a_flag_of_its_command() -> None:
    import typer.main

    group = typer.main.get_command(app)
    context = __import__("typer").Context(group)
    commands = {"train": isscli.TrainRequest, "finetune": isscli.FinetuneRequest, "prune": isscli.PruneRequest,
                "compact": isscli.CompactRequest, "eval": isscli.EvaluateRequest, "bench": isscli.BenchRequest,
                "shrink": isscli.ShrinkRequest, "sparsify": isscli.SparsifyRequest}
    spelled_otherwise = {"renames": "rename", "settings": None}
    for name, request in commands.items():
        parameters = {param.name for param in group.get_command(context, name).params}
        for field in dataclasses.fields(request):
            spelled = spelled_otherwise.get(field.name, field.name)
            assert spelled is None or spelled in parameters, (name, field.name)


def test_library_messages_name_parameters_and_the_cli_shows_flags() -> None:
    with pytest.raises(isscli.IsscliError) as caught:
        isscli.prune(isscli.PruneRequest(checkpoint="x.safetensors", group_threshold=float("nan")))
    assert "`group_threshold` must be a number ≥ 0" in str(caught.value)
    names = flag_names(["prune", "x.safetensors"])
    assert in_flags(str(caught.value), names).startswith("--group-threshold must be a number ≥ 0")
    assert in_flags("raise `group_lasso`, see `isscli groups CKPT`", flag_names(["finetune", "m"])) == \
        "raise --lambda, see `isscli groups CKPT`"  # commands in backticks stay as they are
    assert in_flags("`target_hidden` 7", flag_names(["sweep", "m"])) == "--target-hidden 7"


def test_invocations_nest_and_default_to_the_api() -> None:
    assert invocation() == {"via": "api"}
    with invoked_by("sweep", point="a"):
        with invoked_by("demo"):
            assert invocation() == {"via": "demo"}
        assert invocation() == {"via": "sweep", "point": "a"}
    assert invocation() == {"via": "api"}


def test_importing_the_library_does_not_import_the_cli() -> None:
    code = "import sys, isscli; print(json.dumps(sorted(m for m in sys.modules if m.startswith('isscli.cli'))))"
    result = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_no_library_module_imports_the_cli() -> None:
    """Import every module outside ``isscli/cli/`` (and ``__main__``, the CLI's entry): no CLI module loads."""
    code = ("import importlib, json, pathlib, sys, isscli\n"
            "root = pathlib.Path(isscli.__file__).parent\n"  # walk_packages would import isscli.cli to list it
            "names = ['.'.join(('isscli', *p.relative_to(root).with_suffix('').parts)).removesuffix('.__init__')\n"
            "         for p in sorted(root.rglob('*.py'))]\n"
            "names = [n for n in names if not n.startswith('isscli.cli') and n != 'isscli.__main__']\n"
            "for name in names: importlib.import_module(name)\n"
            "print(json.dumps([len(names), sorted(m for m in sys.modules if m.startswith('isscli.cli'))]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, loaded = json.loads(result.stdout)
    assert count > 50 and loaded == []


def test_settings_keep_their_kind() -> None:
    from isscli.learn.recipes import recipe

    assert recipe("tiny").updated({"epochs": 2.0}).epochs == 2
    for bad in ({"epochs": "3"}, {"epochs": 2.5}, {"lr": True}, {"optimizer": 1}, {"lr": float("inf")}):
        with pytest.raises(isscli.IsscliError):
            recipe("tiny").updated(bad)


def test_prune_by_size_keeps_the_strongest_groups(run_cli, tiny_lm: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from isscli.iss.surgery import alive_components, group_norms

    loaded = isscli.load(tiny_lm)
    spec = isscli.groups(isscli.GroupsRequest(checkpoint=loaded)).spec
    by_size = isscli.prune(isscli.PruneRequest(checkpoint=loaded, target_hidden="4,3"))
    assert [s.alive_after for s in by_size.sets] == [4, 3]
    for iss in spec.sets:
        kept = alive_components(by_size.checkpoint.tensors, iss)
        norms = group_norms(loaded.tensors, iss)
        assert float(norms[kept].min()) >= float(norms[~kept].max())  # the strongest stay
    share = isscli.prune(isscli.PruneRequest(checkpoint=loaded, keep_fraction=0.5))
    assert [s.alive_after for s in share.sets] == [3, 2]  # ⌊0.5·6⌋, ⌊0.5·5⌋
    small = isscli.compact(isscli.CompactRequest(checkpoint=by_size.checkpoint))
    assert small.hidden_sizes == [[4], [3]]
    nothing = run_cli("prune", tiny_lm, "--group-threshold", "1e-9", "-o", tmp_path / "p.safetensors")
    assert nothing.code == 0 and "nothing was zeroed" in nothing.stderr and "the smallest is" in nothing.stderr
    both = run_cli("prune", tiny_lm, "--group-threshold", "1", "--keep-fraction", "0.5",
                   "-o", tmp_path / "q.safetensors")
    assert both.code == 2 and "give one of --group-threshold, --target-hidden or --keep-fraction" in both.stderr


def test_quality_gates_exit_1_and_every_json_report_has_a_schema(run_cli, dense, corpus, tmp_path) -> None:  # noqa: ANN001
    score = run_cli("eval", dense, "--data", corpus, "--json", "-")
    report = json.loads(score.stdout)
    assert report["schema"] == "isscli.eval/1" and report["gate"] is None
    perplexity = report["perplexity"]
    passed = run_cli("eval", dense, "--data", corpus, "--fail-above", perplexity * 1.01, "--json", "-")
    assert passed.code == 0 and json.loads(passed.stdout)["gate"]["passed"] is True
    failed = run_cli("eval", dense, "--data", corpus, "--fail-above", perplexity * 0.99)
    assert failed.code == 1 and "misses the gate" in failed.stderr and "FAILED" in failed.stdout
    against = run_cli("eval", dense, "--data", corpus, "--baseline", dense, "--max-loss", "0", "--json", "-")
    gate = json.loads(against.stdout)["gate"]
    assert against.code == 0 and gate["baseline"] == pytest.approx(perplexity) and gate["passed"]
    lonely = run_cli("eval", dense, "--data", corpus, "--max-loss", "0.05")
    assert lonely.code == 2 and "--baseline and --max-loss go together" in lonely.stderr
    wrong_kind = run_cli("eval", dense, "--data", corpus, "--fail-below", "0.5")
    assert wrong_kind.code == 2 and "--fail-below does not gate a model scored by perplexity" in wrong_kind.stderr
    pruned = tmp_path / "p.safetensors"
    for args, schema in ((["groups", dense], "isscli.groups/1"), (["show", dense], "isscli.show/1"),
                         (["prune", dense, "--keep-fraction", "0.5", "-o", pruned], "isscli.prune/1"),
                         (["compact", pruned, "-o", tmp_path / "c.safetensors"], "isscli.compact/1"),
                         (["bench", pruned, "--repeats", "1", "--warmup", "0", "--steps", "2"], "isscli.bench/3")):
        assert json.loads(run_cli(*args, "--json", "-").stdout)["schema"] == schema, args
