"""``isscli train`` and ``isscli finetune``: learn a model and its ISS (group Lasso, a size target, or masks).

Each option is named like a field of the library's request (:class:`isscli.TrainRequest`,
:class:`isscli.FinetuneRequest`) or of its training settings (:class:`isscli.recipes.TrainSettings`;
``--lambda`` is ``group_lasso``), so :func:`run_request` builds the request from them. The two
commands declare their own options; :func:`run_command` adds the many they share
(:data:`SHARED_OPTIONS`) and runs the request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer

from isscli import api
from isscli.cli.common import (
    ArchOption,
    ConfigOption,
    request_from,
)
from isscli.cli.output import JSON_HELP, console, emit, note
from isscli.cli.progress import ProgressDisplay
from isscli.recipes import RECIPES, TrainSettings
from isscli.tasks import Evaluation

SETTINGS = tuple(f.name for f in fields(TrainSettings))

#: The help of every option train and finetune share.
HELP = {
    "data": "Corpus folder: PTB format (ptb.{train,valid,test}.txt) for LMs — or one text file, split by lines "
            "90/5/5 — and SST-2/MR for classifiers. Default for LMs: $ISSCLI_DATA, ../shared/data/ptb, the download "
            "cache, a download, the shipped fallback.",
    "vocab": "The words in id order: a text file (one word per line), a JSON list, or a JSON object word → id. "
             "Needed for a checkpoint that carries no vocabulary (e.g. a plain state_dict); isscli's checkpoints "
             "carry theirs.",
    "vocab_order": "Number the words of the training text: frequency (isscli's: by count) or first-seen (PyTorch's "
                   "word_language_model: by first appearance in train, valid, test).",
    "max_vocab": "Keep at most this many words (the most frequent; the rest become <unk>).",
    "min_count": "Keep only words seen at least this often in train (the rest become <unk>).",
    "group_lasso": "Group Lasso strength λ, in the paper's units (loss summed over steps, averaged over the batch): "
                   "0.00245 is the paper's 2×1500 LM from scratch. 0: off. With a size target: the largest λ allowed.",
    "weight_threshold": "τ: zero regularized weights with |w| < τ after every batch. Default 1e-4 when λ, --l1 or a "
                        "target is on, else off.",
    "threshold": "Old name of --weight-threshold.",
    "l1": "L1 strength D (Appendix A uses 1e-4): adds D·Σ|w| over the grouped tensors.",
    "target_hidden": "Learn ISS down to these units per ISS set, in spec order (one per direction of a bidirectional "
                     "layer), e.g. 400,350: a controller steers λ per set and ends with exactly these sizes.",
    "target_params": "Learn ISS down to this many parameters after compaction (e.g. 20M, 1.5k): the same share of "
                     "units is kept in every set, the largest that fits.",
    "target_speedup": "Learn ISS down to a model this many times faster than the dense one, as measured on this "
                      "machine (bench harness, batch 10 × 30 steps): the same share of units is kept in every set.",
    "prune_epochs": "With a target: epochs of the pruning phase (default: --epochs, else the recipe's).",
    "recover_epochs": "With a target: epochs of λ = 0 fine-tuning of the survivors after pruning (default: a quarter "
                      "of --prune-epochs, at least 1).",
    "spec": "Group spec (native or authors' JSON). Default: derived from the checkpoint.",
    "rename": "Map a spec tensor name to a checkpoint name, OLD=NEW (repeatable).",
    "rename_file": "JSON object mapping spec tensor names to checkpoint names.",
    "dropout": "Dropout probability (1 − keep ratio; the paper's ISS runs keep 0.6).",
    "epochs": "Number of epochs (Zaremba: 13 small, 39 medium, 55 large).",
    "batch_size": "Mini-batch size (recipe: 20).",
    "bptt": "Unrolled steps per batch (recipe: 20 small, 35 medium/large).",
    "lr": "Learning rate (recipe: 1.0, plain SGD).",
    "lr_decay": "lr multiplier per epoch after --decay-after.",
    "decay_after": "Epochs at the full lr before the decay starts.",
    "decay_every": "Apply --lr-decay once every this many epochs (default 1).",
    "max_grad_norm": "Clip the gradient of the whole objective to this global norm.",
    "optimizer": "sgd (the paper's) or adam.",
    "settings_file": "JSON file of training settings (see docs/training.md); flags win.",
    "seed": "Random seed: initialisation, dropout, shuffling (default 0).",
    "device": "cpu, cuda, cuda:N or auto (cuda when available).",
    "max_batches": "Stop each epoch after this many batches (quick checks).",
    "eval_batch_size": "Batch size of validation and test passes (default 10).",
    "divergence_factor": "Stop when valid perplexity exceeds this × its best (default 4).",
    "keep": "Which epoch OUT holds: best (lowest valid perplexity, default) or last (ISS fine-tuning).",
    "stop_after": "Stop after this epoch, leaving the run resumable.",
    "resume": "Continue an interrupted run from OUT.resume.safetensors.",
    "force": "Replace the output file if it exists (never an input).",
    "json_path": JSON_HELP,
}
#: name → (type, default, flags) of the options train and finetune share, in --help order.
SHARED = {
    "data": (Optional[Path], None, ("--data", "-d")),
    "vocab": (Optional[Path], None, ("--vocab",)),
    "vocab_order": (Optional[str], None, ("--vocab-order",)),
    "max_vocab": (Optional[int], None, ("--max-vocab",)),
    "min_count": (Optional[int], None, ("--min-count",)),
    "group_lasso": (Optional[float], None, ("--lambda",)),
    "weight_threshold": (Optional[float], None, ("--weight-threshold",)),
    "threshold": (Optional[float], None, ("--threshold", "-t")),
    "l1": (Optional[float], None, ("--l1",)),
    "target_hidden": (Optional[str], None, ("--target-hidden",)),
    "target_params": (Optional[str], None, ("--target-params",)),
    "target_speedup": (Optional[float], None, ("--target-speedup",)),
    "prune_epochs": (Optional[int], None, ("--prune-epochs",)),
    "recover_epochs": (Optional[int], None, ("--recover-epochs",)),
    "spec": (Optional[Path], None, ("--spec", "-s")),
    "rename": (list[str], [], ("--rename",)),
    "rename_file": (Optional[Path], None, ("--rename-file",)),
    "dropout": (Optional[float], None, ("--dropout",)),
    "epochs": (Optional[int], None, ("--epochs",)),
    "batch_size": (Optional[int], None, ("--batch-size",)),
    "bptt": (Optional[int], None, ("--bptt",)),
    "lr": (Optional[float], None, ("--lr",)),
    "lr_decay": (Optional[float], None, ("--lr-decay",)),
    "decay_after": (Optional[int], None, ("--decay-after",)),
    "decay_every": (Optional[int], None, ("--decay-every",)),
    "max_grad_norm": (Optional[float], None, ("--max-grad-norm",)),
    "optimizer": (Optional[str], None, ("--optimizer",)),
    "settings_file": (Optional[Path], None, ("--settings",)),
    "seed": (Optional[int], None, ("--seed",)),
    "device": (str, "auto", ("--device",)),
    "max_batches": (Optional[int], None, ("--max-batches",)),
    "eval_batch_size": (Optional[int], None, ("--eval-batch-size",)),
    "divergence_factor": (Optional[float], None, ("--divergence-factor",)),
    "keep": (Optional[str], None, ("--keep",)),
    "stop_after": (Optional[int], None, ("--stop-after",)),
    "resume": (bool, False, ("--resume",)),
    "force": (bool, False, ("--force",)),
    "json_path": (Optional[Path], None, ("--json",)),
}
HIDDEN = ("threshold",)  # old spellings, still accepted


def shared_option(name: str) -> Any:
    """The typer option of a shared parameter (also used by ``isscli eval`` for ``--data``)."""
    _, default, flags = SHARED[name]
    return typer.Option(default, *flags, help=HELP[name], hidden=name in HIDDEN)


DataOption = shared_option("data")
VocabOption = shared_option("vocab")
VocabOrderOption = shared_option("vocab_order")


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
    return f"perplexity {evaluation.perplexity:.2f}"


def run_command(operation: Callable[..., api.TrainResult], request_class: type) -> Callable[[Callable], Callable]:
    """Make a command of ``function``'s own parameters plus the :data:`SHARED` options that runs ``operation``.

    ``function`` declares the options only its command has, and its docstring is the command's help;
    its body is never run.
    """

    def decorate(function: Callable) -> Callable:
        own = list(inspect.signature(function, eval_str=True).parameters.values())
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=shared_option(name), annotation=kind)
                  for name, (kind, _, _) in SHARED.items()]

        def command(**arguments: Any) -> None:
            run_with_display(operation, run_request(request_class, arguments), arguments["json_path"])

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__name__, command.__doc__ = function.__name__, function.__doc__
        return command

    return decorate


@run_command(api.train, api.TrainRequest)
def train(
    preset: str = typer.Option(..., "--preset", "-p", help=f"Model and recipe: {', '.join(RECIPES)}."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the best-valid checkpoint."),
    config: Optional[str] = typer.Option(
        None, "--config", help="Model config JSON (or a preset name) overriding the preset's fields."),
    method: str = typer.Option(
        "dense", "--method",
        help="dense, or set: sparse evolutionary training (SET-LSTM) of the embedding and recurrent matrices."),
    density: Optional[float] = typer.Option(
        None, "--density", help="--method set: share of the embedding and recurrent connections kept, in (0, 1]."),
    zeta: Optional[float] = typer.Option(
        None, "--zeta", help="--method set: share of each matrix's connections removed and regrown after every "
                             "epoch (default 0.3)."),
) -> None:
    """Train a model from scratch with a published recipe; --lambda learns ISS at the same time (paper Table 1)."""


@run_command(api.finetune, api.FinetuneRequest)
def finetune(
    checkpoint: Path = typer.Argument(..., help="The trained model to fine-tune (left untouched)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output. Default: CKPT.iss.safetensors."),
    preset: Optional[str] = typer.Option(
        None, "--preset", "-p", help="Recipe to start from. Default: the one whose model has the checkpoint's sizes."
    ),
    magnitude_sparsity: Optional[float] = typer.Option(
        None, "--magnitude-sparsity",
        help="Prune the embedding and recurrent matrices by magnitude to this share of zeros: at once before "
             "training, or gradually with --prune-end. Masked weights stay zero."),
    prune_start: Optional[int] = typer.Option(
        None, "--prune-start", help="First epoch of gradual magnitude pruning (default 1)."),
    prune_end: Optional[int] = typer.Option(
        None, "--prune-end", help="Last epoch of gradual magnitude pruning (Zhu & Gupta's cubic schedule)."),
    prune_every: Optional[int] = typer.Option(
        None, "--prune-every", help="Batches between gradual pruning steps (default 100)."),
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
) -> None:
    """Fine-tune CKPT with group Lasso on its ISS (paper Eq. 2–4): whole hidden units go to zero, for prune/compact.

    A masked CKPT (SET, magnitude pruning) keeps its masks; --magnitude-sparsity prunes by magnitude instead.
    --target-hidden/--target-params/--target-speedup steer λ per layer to reach a size (docs/training.md).
    """
