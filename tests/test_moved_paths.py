"""The module paths of 0.2 (``isscli.surgery``, …) keep working in 0.3 with a DeprecationWarning, as the same
module objects, and no module is left at an old path."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from isscli.moved import MOVED, new_path

PACKAGE = Path(__file__).resolve().parents[1] / "isscli"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_with_a_warning(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} is now {MOVED[old]}; the old path goes in isscli 0.4"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_public_names_come_through_the_old_paths() -> None:
    for old in ("isscli.surgery", "isscli.errors", "isscli.spec.schema"):
        sys.modules.pop(old, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from isscli.errors import IsscliError
        from isscli.spec.schema import GroupSpec
        from isscli.surgery import compact
    from isscli.io.errors import IsscliError as new_error
    from isscli.iss.spec.schema import GroupSpec as new_spec
    from isscli.iss.surgery import compact as new_compact
    assert (IsscliError, GroupSpec, compact) == (new_error, new_spec, new_compact)


def test_submodules_of_moved_packages_and_unmoved_names() -> None:
    assert new_path("isscli.spec.derive") == "isscli.iss.spec.derive"
    assert new_path("isscli.export.onnx") == "isscli.runtime.export.onnx"
    assert new_path("isscli.training_run") == "isscli.learn.run"  # not isscli.training's prefix
    assert new_path("isscli.api") is None and new_path("isscli.nn.recurrent") is None


def test_no_module_is_left_at_an_old_path() -> None:
    left = [old for old in MOVED if (PACKAGE / (old.split(".", 1)[1].replace(".", "/") + ".py")).exists()
            or (PACKAGE / old.split(".", 1)[1].replace(".", "/")).is_dir()]
    assert left == []


def test_the_library_itself_uses_no_old_path() -> None:
    """Run in a fresh interpreter with the warning as an error: importing the whole API touches no old path."""
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "import isscli\n"
            "for name in isscli.__all__: getattr(isscli, name)\n"
            "import isscli.cli.main\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_renamed_functions_of_0_2_still_work_with_a_warning(tmp_path: Path) -> None:
    import isscli

    with pytest.warns(DeprecationWarning, match=r"new_model is now isscli.init; the old name goes in isscli 0.4$"):
        fresh = isscli.new_model("tiny", seed=3)
    assert fresh.config == isscli.init("tiny", seed=3).config
    isscli.save(fresh, tmp_path / "tiny.safetensors")
    with pytest.warns(DeprecationWarning, match=r"isscli.derive_spec is now isscli.groups\("):
        spec = isscli.derive_spec(tmp_path / "tiny.safetensors")
    assert spec == isscli.groups(isscli.GroupsRequest(checkpoint=tmp_path / "tiny.safetensors")).spec
    (tmp_path / "spec.json").write_text(spec.dumps(), encoding="utf-8")
    with pytest.warns(DeprecationWarning, match=r"isscli.check_spec is now isscli.groups_check"):
        assert isscli.check_spec(tmp_path / "spec.json", tmp_path / "tiny.safetensors") == spec
    with pytest.warns(DeprecationWarning, match=r"isscli.convert_spec is now isscli.groups_convert"):
        assert isscli.convert_spec(tmp_path / "spec.json") == spec
    old_names = {"check_spec", "convert_spec", "derive_spec", "download_ptb", "export_model", "import_state_dict",
                 "new_model", "run_demo", "run_sweep"}
    assert not old_names & set(dir(isscli)) and not old_names & set(isscli.__all__)
    assert all(callable(getattr(isscli.api, name)) for name in old_names)
