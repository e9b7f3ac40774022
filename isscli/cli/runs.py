"""``isscli train`` and ``isscli finetune``: learn a model and its ISS (group Lasso, a size target, or masks).

Each option is named like a field of the library's request (:class:`isscli.TrainRequest`,
:class:`isscli.FinetuneRequest`) or of its training settings (:class:`isscli.TrainSettings`;
``--lambda`` is ``group_lasso``), so :func:`run_request` builds the request from them. The two
commands declare their own options; :func:`run_command` adds the many they share
(:data:`SHARED`) and runs the request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from isscli import api
from isscli.cli.common import claim_run, with_default_output
from isscli.cli.options import option, renamed
from isscli.cli.output import console, emit, note
from isscli.cli.progress import ProgressDisplay

if TYPE_CHECKING:
    from isscli.learn.tasks import Evaluation

SETTINGS = tuple(f.name for f in fields(api.TrainSettings))

#: The options train and finetune share, in --help order: their type, their default and their fields (flags and
#: help: :mod:`isscli.cli.options`).
SHARED: tuple[tuple[Any, Any, tuple[str, ...]], ...] = (
    (Optional[Path], None, ("data", "vocab")),
    (Optional[str], None, ("vocab_order",)),
    (Optional[int], None, ("max_vocab", "min_count")),
    (Optional[float], None, ("group_lasso", "weight_threshold", "threshold", "l1")),
    (Optional[str], None, ("target_hidden", "target_params")),
    (Optional[float], None, ("target_speedup",)),
    (Optional[int], None, ("prune_epochs", "recover_epochs")),
    (Optional[Path], None, ("spec",)),
    (Optional[list[str]], None, ("rename",)),
    (Optional[Path], None, ("rename_file",)),
    (Optional[float], None, ("dropout",)),
    (Optional[int], None, ("epochs", "batch_size", "bptt")),
    (Optional[float], None, ("lr", "lr_decay")),
    (Optional[int], None, ("decay_after", "decay_every")),
    (Optional[float], None, ("max_grad_norm",)),
    (Optional[str], None, ("optimizer",)),
    (Optional[Path], None, ("settings_file",)),
    (Optional[int], None, ("seed",)),
    (str, "auto", ("device",)),
    (Optional[int], None, ("max_batches", "max_eval_batches", "eval_batch_size")),
    (Optional[float], None, ("divergence_factor",)),
    (Optional[str], None, ("keep", "precision")),
    (Optional[int], None, ("stop_after", "save_every")),
    (bool, False, ("allow_unknown", "resume", "force")),
    (Optional[Path], None, ("json_path",)),
)


def run_request(cls: type[api.TrainRequest] | type[api.FinetuneRequest],
                arguments: Mapping[str, Any]) -> api.TrainRequest | api.FinetuneRequest:
    """The request of a ``train``/``finetune`` command line, from its bound arguments: those named like the
    request's fields, the training knobs in ``settings``, ``renames`` from ``--rename``/``--rename-file``, and
    ``--threshold`` (the old name) where ``--weight-threshold`` is not given."""
    given = {**arguments, "weight_threshold": renamed("threshold", arguments.get("threshold"), "weight_threshold",
                                                      arguments.get("weight_threshold"))}
    settings = {name: given[name] for name in SETTINGS if given.get(name) is not None}
    known = {field.name for field in fields(cls)}
    return cls(**{name: value for name, value in given.items() if name in known}, settings=settings,
               renames=api.read_renames(given.get("rename"), given.get("rename_file")))


def run_with_display(operation: Callable[..., api.TrainResult], request: Any, json_path: Optional[Path]) -> None:
    """Run a training request with a live display, then report."""
    with ProgressDisplay(stdout_is_json=str(json_path) == "-") as display:
        result = operation(request, display)
    report(result, json_path)


def report(result: api.TrainResult, json_path: Optional[Path]) -> None:
    def render() -> None:
        if result.stopped_early:
            console.print(f"stopped after epoch {result.epochs[-1].epoch}: continue with --resume")
        if result.best_valid is not None:
            which = "last" if result.settings.keep == "last" else "best"
            console.print(f"{which} epoch {result.best_epoch}: valid {describe(result.best_valid)}")
        if result.test is not None:
            reference = ""
            if result.published_test_perplexity is not None:
                reference = f" (Zaremba et al.: {result.published_test_perplexity})"
            console.print(f"test {describe(result.test)}{reference}")

    emit(result.to_json(), json_path, render, "isscli.train/1")
    if result.best_epoch is not None:
        note(f"checkpoint of epoch {result.best_epoch} written to {result.output}; log in {result.log}")


def describe(evaluation: Evaluation) -> str:
    if evaluation.accuracy is not None:
        return f"accuracy {evaluation.accuracy:.2%} (loss {evaluation.loss:.4f})"
    if evaluation.metric.name == "loss":
        return f"loss {evaluation.loss:.4g}"
    return f"perplexity {evaluation.perplexity:.2f}"


def run_command(operation: str, request_class: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Make a command of ``function``'s own parameters plus the :data:`SHARED` options that runs ``api.<operation>``
    on an ``api.<request_class>`` (named, so that ``--help`` does not import the library, and torch with it).

    ``function`` declares the options only its command has, and its docstring is the command's help;
    its body is never run.
    """

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(function, eval_str=True).parameters.values())
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                    annotation=Annotated[kind, option(name)])
                  for kind, default, names in SHARED for name in names]

        def command(**arguments: Any) -> None:
            request = with_default_output(run_request(getattr(api, request_class), arguments))
            claim_run(request, arguments["json_path"], arguments["rename_file"])
            run_with_display(getattr(api, operation), request, arguments["json_path"])

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__name__, command.__doc__ = function.__name__, function.__doc__
        return command

    return decorate


@run_command("train", "TrainRequest")
def train(
    preset: Annotated[str, option("preset", f"Model and recipe: {', '.join(api.RECIPES)}.")],
    output: Annotated[Path, option("output", "Where to write the best-valid checkpoint.")],
    config: Annotated[Optional[str], option("config", "Model config JSON (or a preset name) overriding the preset's "
                                                      "fields.")] = None,
    method: Annotated[str, option("method")] = "dense",
    density: Annotated[Optional[float], option("density")] = None,
    zeta: Annotated[Optional[float], option("zeta")] = None,
) -> None:
    """Train a model from scratch with a published recipe; --lambda learns ISS at the same time (paper Table 1)."""


@run_command("finetune", "FinetuneRequest")
def finetune(
    checkpoint: Annotated[Path, typer.Argument(help="The trained model to fine-tune (left untouched).")],
    output: Annotated[Optional[Path], option("output", "Output. Default: CKPT.iss.safetensors.")] = None,
    preset: Annotated[Optional[str], option("preset", "Recipe to start from. Default: the one whose model has the "
                                                      "checkpoint's sizes.")] = None,
    magnitude_sparsity: Annotated[Optional[float], option("magnitude_sparsity")] = None,
    prune_start: Annotated[Optional[int], option("prune_start")] = None,
    prune_end: Annotated[Optional[int], option("prune_end")] = None,
    prune_every: Annotated[Optional[int], option("prune_every")] = None,
    arch: Annotated[Optional[str], option("arch")] = None,
    config: Annotated[Optional[str], option("config")] = None,
    model: Annotated[Optional[str], option("model")] = None,
    model_args: Annotated[Optional[str], option("model_args")] = None,
    objective: Annotated[Optional[str], option("objective")] = None,
    split_rule: Annotated[Optional[str], option("split_rule")] = None,
) -> None:
    """Fine-tune CKPT with group Lasso on its ISS (paper Eq. 2–4): whole hidden units go to zero, for prune/compact.

    With --model, your own class learns from tensor data (--data FILE.safetensors|.npz, --objective), its groups
    traced from its forward.

    A masked CKPT (SET, magnitude pruning) keeps its masks; --magnitude-sparsity prunes by magnitude instead.
    --target-hidden/--target-params/--target-speedup steer λ per layer to reach a size (docs/training.md).
    """
