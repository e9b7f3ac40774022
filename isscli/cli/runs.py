"""``isscli train`` and ``isscli finetune``: learn a model and its ISS (group Lasso, a size target, or masks).

Each option is named like a field of the library's request (:class:`isscli.TrainRequest`,
:class:`isscli.FinetuneRequest`) or of its training settings (:class:`isscli.learn.recipes.TrainSettings`;
``--lambda`` is ``group_lasso``), so :func:`run_request` builds the request from them. The two
commands declare their own options; :func:`run_command` adds the many they share
(:data:`SHARED_OPTIONS`) and runs the request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from isscli import api
from isscli.cli.common import (
    ArchOption,
    ConfigOption,
    claim_run_outputs,
    request_from,
)
from isscli.cli.options import option
from isscli.cli.output import console, emit, note
from isscli.cli.progress import ProgressDisplay
from isscli.learn.recipes import RECIPES, TrainSettings

if TYPE_CHECKING:
    from isscli.learn.tasks import Evaluation

SETTINGS = tuple(f.name for f in fields(TrainSettings))

#: The options train and finetune share, by type, in --help order (flags and help: :mod:`isscli.cli.options`).
SHARED: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (Optional[Path], ("data", "vocab")),
    (Optional[str], ("vocab_order",)),
    (Optional[int], ("max_vocab", "min_count")),
    (Optional[float], ("group_lasso", "weight_threshold", "threshold", "l1")),
    (Optional[str], ("target_hidden", "target_params")),
    (Optional[float], ("target_speedup",)),
    (Optional[int], ("prune_epochs", "recover_epochs")),
    (Optional[Path], ("spec",)),
    (list[str], ("rename",)),
    (Optional[Path], ("rename_file",)),
    (Optional[float], ("dropout",)),
    (Optional[int], ("epochs", "batch_size", "bptt")),
    (Optional[float], ("lr", "lr_decay")),
    (Optional[int], ("decay_after", "decay_every")),
    (Optional[float], ("max_grad_norm",)),
    (Optional[str], ("optimizer",)),
    (Optional[Path], ("settings_file",)),
    (Optional[int], ("seed",)),
    (str, ("device",)),
    (Optional[int], ("max_batches", "max_eval_batches", "eval_batch_size")),
    (Optional[float], ("divergence_factor",)),
    (Optional[str], ("keep", "precision")),
    (Optional[int], ("stop_after", "save_every")),
    (bool, ("allow_unknown", "resume", "force")),
    (Optional[Path], ("json_path",)),
)


def run_request(cls: type[api.TrainRequest] | type[api.FinetuneRequest], arguments: dict[str, Any]) -> Any:
    """The request of a ``train``/``finetune`` command line; the training knobs go into ``settings``."""
    arguments = dict(arguments)
    if arguments.get("threshold") is not None:
        note("--threshold of train/finetune is now --weight-threshold (per-weight |w| < τ); the old name will go",
             warning=True)
        if arguments.get("weight_threshold") is None:
            arguments["weight_threshold"] = arguments["threshold"]
    settings = {name: arguments[name] for name in SETTINGS if arguments.get(name) is not None}
    return request_from(cls, arguments, settings=settings)


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
    if evaluation.metric == "loss":
        return f"loss {evaluation.loss:.4g}"
    return f"perplexity {evaluation.perplexity:.2f}"


def run_command(operation: str, request_class: str) -> Callable[[Callable], Callable]:
    """Make a command of ``function``'s own parameters plus the :data:`SHARED` options that runs ``api.<operation>``
    on an ``api.<request_class>`` (named, so that ``--help`` does not import the library, and torch with it).

    ``function`` declares the options only its command has, and its docstring is the command's help;
    its body is never run.
    """

    def decorate(function: Callable) -> Callable:
        own = list(inspect.signature(function, eval_str=True).parameters.values())
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option(name), annotation=kind)
                  for kind, names in SHARED for name in names]

        def command(**arguments: Any) -> None:
            claim_run_outputs(arguments)
            request = run_request(getattr(api, request_class), arguments)
            run_with_display(getattr(api, operation), request, arguments["json_path"])

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__name__, command.__doc__ = function.__name__, function.__doc__
        return command

    return decorate


@run_command("train", "TrainRequest")
def train(
    preset: str = typer.Option(..., "--preset", "-p", help=f"Model and recipe: {', '.join(RECIPES)}."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the best-valid checkpoint."),
    config: Optional[str] = typer.Option(
        None, "--config", help="Model config JSON (or a preset name) overriding the preset's fields."),
    method: str = option("method"),
    density: Optional[float] = option("density"),
    zeta: Optional[float] = option("zeta"),
) -> None:
    """Train a model from scratch with a published recipe; --lambda learns ISS at the same time (paper Table 1)."""


@run_command("finetune", "FinetuneRequest")
def finetune(
    checkpoint: Path = typer.Argument(..., help="The trained model to fine-tune (left untouched)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output. Default: CKPT.iss.safetensors."),
    preset: Optional[str] = typer.Option(
        None, "--preset", "-p", help="Recipe to start from. Default: the one whose model has the checkpoint's sizes."
    ),
    magnitude_sparsity: Optional[float] = option("magnitude_sparsity"),
    prune_start: Optional[int] = option("prune_start"),
    prune_end: Optional[int] = option("prune_end"),
    prune_every: Optional[int] = option("prune_every"),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    model: Optional[str] = option("model"),
    model_args: Optional[str] = option("model_args"),
    objective: Optional[str] = option("objective"),
    split_rule: Optional[str] = option("split_rule"),
) -> None:
    """Fine-tune CKPT with group Lasso on its ISS (paper Eq. 2–4): whole hidden units go to zero, for prune/compact.

    With --model, your own class learns from tensor data (--data FILE.safetensors|.npz, --objective), its groups
    traced from its forward.

    A masked CKPT (SET, magnitude pruning) keeps its masks; --magnitude-sparsity prunes by magnitude instead.
    --target-hidden/--target-params/--target-speedup steer λ per layer to reach a size (docs/training.md).
    """
