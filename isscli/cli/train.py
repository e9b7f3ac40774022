"""``isscli train``, ``isscli finetune`` and ``isscli eval``: learn ISS with group Lasso, and score a model."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import torch
import typer

from isscli.checkpoint import Checkpoint, load_checkpoint
from isscli.cli.common import (
    ArchOption,
    ConfigOption,
    ForceOption,
    RenameFileOption,
    RenameOption,
    SpecOption,
    config_overrides,
    default_output,
    resolve_spec,
)
from isscli.cli.output import JSON_HELP, console, emit, note, table
from isscli.cli.progress import ProgressDisplay
from isscli.cli.targets import (
    PruneEpochsOption,
    RecoverEpochsOption,
    TargetHiddenOption,
    TargetParamsOption,
    TargetRequest,
    TargetSpeedupOption,
    make_controller,
    target_schedule,
)
from isscli.controller import IssController
from isscli.data import load_corpus, load_sentences, resolve_data
from isscli.errors import IsscliError
from isscli.masks import MaskHook, check_schedule, check_set_options, finetune_hook, set_hook
from isscli.models import PRESETS, build_model, load_model, model_tensors, preset_config
from isscli.models.config import ModelConfig
from isscli.models.registry import resolve_config
from isscli.recipes import PUBLISHED_TEST_PERPLEXITY, RECIPES, TrainSettings, read_settings_file, recipe
from isscli.tasks import ClassifierTask, Evaluation, LanguageModelTask, Task
from isscli.training import RunPaths, Trainer, TrainingResult, TrainingRun, prepare_outputs

DataOption = typer.Option(
    None, "--data", "-d",
    help="Corpus folder: PTB format (ptb.{train,valid,test}.txt) for LMs, SST-2/MR for classifiers. "
         "Default for LMs: $ISSCLI_DATA, ../shared/data/ptb, the download cache, a download, the shipped fallback.",
)
DropoutOption = typer.Option(
    None, "--dropout", help="Dropout probability (1 − keep ratio; the paper's ISS runs keep 0.6)."
)
EpochsOption = typer.Option(None, "--epochs", help="Number of epochs (Zaremba: 13 small, 39 medium, 55 large).")
BatchOption = typer.Option(None, "--batch-size", help="Mini-batch size (recipe: 20).")
BpttOption = typer.Option(None, "--bptt", help="Unrolled steps per batch (recipe: 20 small, 35 medium/large).")
LrOption = typer.Option(None, "--lr", help="Learning rate (recipe: 1.0, plain SGD).")
DecayOption = typer.Option(None, "--lr-decay", help="lr multiplier per epoch after --decay-after.")
DecayAfterOption = typer.Option(None, "--decay-after", help="Epochs at the full lr before the decay starts.")
DecayEveryOption = typer.Option(None, "--decay-every", help="Apply --lr-decay once every this many epochs (default 1).")
ClipOption = typer.Option(None, "--max-grad-norm", help="Clip the gradient of the whole objective to this global norm.")
OptimizerOption = typer.Option(None, "--optimizer", help="sgd (the paper's) or adam.")
LambdaOption = typer.Option(
    None, "--lambda",
    help="Group Lasso strength λ, in the paper's units (loss summed over steps, averaged over the batch): "
         "0.00245 is the paper's 2×1500 LM from scratch. 0: off.",
)
ThresholdOption = typer.Option(
    None, "--threshold", "-t",
    help="τ: zero regularized weights with |w| < τ after every batch. Default 1e-4 when λ or --l1 is on, else off.",
)
L1Option = typer.Option(
    None, "--l1", help="L1 strength D (Appendix A uses 1e-4): adds D·Σ|w| over the grouped tensors."
)
SettingsOption = typer.Option(
    None, "--settings", help="JSON file of training settings (see docs/training.md); flags win."
)
SeedOption = typer.Option(None, "--seed", help="Random seed: initialisation, dropout, shuffling (default 0).")
DeviceOption = typer.Option("auto", "--device", help="cpu, cuda or auto (cuda when available).")
MaxBatchesOption = typer.Option(None, "--max-batches", help="Stop each epoch after this many batches (quick checks).")
EvalBatchOption = typer.Option(None, "--eval-batch-size", help="Batch size of validation and test passes (default 10).")
DivergenceOption = typer.Option(
    None, "--divergence-factor", help="Stop when valid perplexity exceeds this × its best (default 4)."
)
StopAfterOption = typer.Option(None, "--stop-after", help="Stop after this epoch, leaving the run resumable.")
KeepOption = typer.Option(
    None, "--keep", help="Which epoch OUT holds: best (lowest valid perplexity, default) or last (ISS fine-tuning)."
)
ResumeOption = typer.Option(False, "--resume", help="Continue an interrupted run from OUT.resume.safetensors.")
MethodOption = typer.Option(
    "dense", "--method",
    help="dense, or set: sparse evolutionary training (SET-LSTM) of the embedding and recurrent matrices.",
)
DensityOption = typer.Option(
    None, "--density", help="--method set: share of the embedding and recurrent connections kept, in (0, 1]."
)
ZetaOption = typer.Option(
    None, "--zeta", help="--method set: share of each matrix's connections removed and regrown after every epoch "
                         "(default 0.3)."
)
MagnitudeOption = typer.Option(
    None, "--magnitude-sparsity",
    help="Prune the embedding and recurrent matrices by magnitude to this share of zeros: at once before training, "
         "or gradually with --prune-end. Masked weights stay zero.",
)
PruneStartOption = typer.Option(None, "--prune-start", help="First epoch of gradual magnitude pruning (default 1).")
PruneEndOption = typer.Option(
    None, "--prune-end", help="Last epoch of gradual magnitude pruning (Zhu & Gupta's cubic schedule, per batch)."
)
PruneEveryOption = typer.Option(None, "--prune-every", help="Batches between gradual pruning steps (default 100).")


class Interrupted(IsscliError):
    exit_code = 130


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise IsscliError(f"unknown device {name!r}", "use cpu, cuda or auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise IsscliError("--device cuda, but no CUDA device is available", "use --device cpu")
    return torch.device(name)


def setting_flags(arguments: dict[str, Any]) -> dict[str, Any]:
    """The training settings among a command's arguments (each flag is named after its setting)."""
    return {f.name: arguments[f.name] for f in fields(TrainSettings) if f.name in arguments}


def build_settings(base: TrainSettings, settings_file: Optional[Path], flags: dict[str, Any]) -> TrainSettings:
    """Recipe, then the settings file, then the flags that were given."""
    changes = read_settings_file(settings_file) if settings_file else {}
    changes.update({key: value for key, value in flags.items() if value is not None})
    return base.updated(changes)


def load_task(
    family: str, data: Optional[Path], settings: TrainSettings, device: torch.device
) -> tuple[Task, dict[str, Any]]:
    """The family's corpus as a :class:`Task`, and its description for provenance."""
    if family == "classifier":
        if data is None:
            raise IsscliError("classifiers need --data", "give e.g. --data ../shared/data/sst2")
        sentences = load_sentences(data, settings.seed)
        task: Task = ClassifierTask(sentences, settings.batch_size, settings.eval_batch_size, settings.seed, device)
        return task, {**sentences.describe(), "num_classes": sentences.num_classes}
    source = resolve_data(data)
    if source.note:
        note(f"[yellow]{source.note}[/]")
    corpus = load_corpus(source.path)
    task = LanguageModelTask(corpus, settings.batch_size, settings.bptt, settings.eval_batch_size, device)
    return task, {**corpus.describe(), "origin": source.origin}


def check_vocabulary(config: ModelConfig, data: dict[str, Any]) -> None:
    if config.vocab_size != data["vocabulary_size"]:
        raise IsscliError(
            f"the model has {config.vocab_size} words but {data['path']} has {data['vocabulary_size']}",
            "use the corpus the model was trained on",
        )


def trained_vocabulary(provenance: Optional[dict[str, Any]]) -> Optional[str]:
    """The vocabulary fingerprint of the run that made this checkpoint or one of its ancestors."""
    while provenance:
        found = (provenance.get("data") or {}).get("vocabulary_sha256")
        if found:
            return found
        provenance = provenance.get("parent_provenance")
    return None


def run_training(run: TrainingRun, resume: bool, stop_after: Optional[int], json_path: Optional[Path]) -> None:
    """Train with a live display; turn Ctrl-C into a message saying what was kept."""
    components = {iss.name: iss.components for iss in run.spec.sets}
    trainer = Trainer(run)
    try:
        classifier, stdout_is_json = run.model.config.family == "classifier", str(json_path) == "-"
        with ProgressDisplay(components, classifier, stdout_is_json) as display:
            trainer.observer = display
            result = trainer.train(resume=resume, stop_after=stop_after)
    except KeyboardInterrupt:
        kept = "no model was written"
        if trainer.best_epoch is not None:
            kept = f"{run.paths.output} keeps the model of epoch {trainer.best_epoch}"
        raise Interrupted(f"interrupted; {kept}", "rerun the same command with --resume to continue") from None
    report_result(run, result, json_path)


def report_result(run: TrainingRun, result: TrainingResult, json_path: Optional[Path]) -> None:
    report: dict[str, Any] = {
        "output": str(run.paths.output),
        "log": str(run.paths.log),
        "resumed_from_epoch": result.resumed_from,
        "stopped_early": result.stopped_early,
        "best_epoch": result.best_epoch,
        "best_valid": result.best.to_dict() if result.best else None,
        "test": result.test.to_dict() if result.test else None,
        "epochs": [r.to_record() for r in result.epochs],
    }
    for hook in run.hooks:
        summary = getattr(hook, "summary", None)
        if summary is not None:
            report[hook.name] = summary()

    def render() -> None:
        if result.stopped_early:
            console.print(f"stopped after epoch {result.epochs[-1].epoch}: continue with --resume")
        if result.best is not None:
            which = "last" if run.settings.keep == "last" else "best"
            console.print(f"{which} epoch {result.best_epoch}: valid {describe(result.best)}")
        if result.test is not None:
            reference = ""
            preset = str(run.details.get("preset"))
            if run.action == "train" and preset in PUBLISHED_TEST_PERPLEXITY and run.settings == RECIPES[preset]:
                reference = f" (Zaremba et al.: {PUBLISHED_TEST_PERPLEXITY[preset]})"
            console.print(f"test {describe(result.test)}{reference}")

    emit(report, json_path, render)
    if result.best_epoch is not None:
        note(f"checkpoint of epoch {result.best_epoch} written to {run.paths.output}; log in {run.paths.log}")


def describe(evaluation: Evaluation) -> str:
    if evaluation.accuracy is not None:
        return f"accuracy {evaluation.accuracy:.2%} (loss {evaluation.loss:.4f})"
    return f"perplexity {evaluation.perplexity:.2f}"


def regularization_details(settings: TrainSettings, spec_json: dict[str, Any]) -> dict[str, Any]:
    """What provenance records about λ, τ and D (and the spec, when one is in use)."""
    active = settings.group_lasso > 0 or settings.l1 > 0 or settings.tau > 0
    return {"lambda": settings.group_lasso, "threshold": settings.tau, "l1": settings.l1,
            "spec": spec_json if active else None}


def train(
    preset: str = typer.Option(..., "--preset", "-p", help=f"Model and recipe: {', '.join(RECIPES)}."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the best-valid checkpoint."),
    data: Optional[Path] = DataOption,
    config: Optional[Path] = typer.Option(None, "--config", help="Model config JSON overriding the preset's fields."),
    dropout: Optional[float] = DropoutOption,
    epochs: Optional[int] = EpochsOption,
    batch_size: Optional[int] = BatchOption,
    bptt: Optional[int] = BpttOption,
    lr: Optional[float] = LrOption,
    lr_decay: Optional[float] = DecayOption,
    decay_after: Optional[int] = DecayAfterOption,
    decay_every: Optional[int] = DecayEveryOption,
    max_grad_norm: Optional[float] = ClipOption,
    optimizer: Optional[str] = OptimizerOption,
    group_lasso: Optional[float] = LambdaOption,
    threshold: Optional[float] = ThresholdOption,
    l1: Optional[float] = L1Option,
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    settings_file: Optional[Path] = SettingsOption,
    seed: Optional[int] = SeedOption,
    device: str = DeviceOption,
    max_batches: Optional[int] = MaxBatchesOption,
    eval_batch_size: Optional[int] = EvalBatchOption,
    divergence_factor: Optional[float] = DivergenceOption,
    keep: Optional[str] = KeepOption,
    stop_after: Optional[int] = StopAfterOption,
    resume: bool = ResumeOption,
    method: str = MethodOption,
    density: Optional[float] = DensityOption,
    zeta: Optional[float] = ZetaOption,
    target_hidden: Optional[str] = TargetHiddenOption,
    target_params: Optional[str] = TargetParamsOption,
    target_speedup: Optional[float] = TargetSpeedupOption,
    prune_epochs: Optional[int] = PruneEpochsOption,
    recover_epochs: Optional[int] = RecoverEpochsOption,
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Train a model from scratch with a published recipe; --lambda learns ISS at the same time (paper Table 1)."""
    check_set_options(method, density, zeta)
    request = TargetRequest(target_hidden, target_params, target_speedup, prune_epochs, recover_epochs).check()
    if request.given and method == "set":
        raise IsscliError("a size target does not combine with --method set", "drop one of them")
    settings = target_schedule(build_settings(recipe(preset), settings_file, setting_flags(locals())), request)
    paths = RunPaths(output)
    prepare_outputs(paths, (), force, resume)
    target = resolve_device(device)
    raw = preset_config(preset)
    raw.update(config_overrides(str(config)) if config else {})
    if dropout is not None:
        raw["dropout"] = dropout
    task, data_info = load_task(raw.get("family", "lm"), data, settings, target)
    raw["vocab_size"] = data_info["vocabulary_size"]
    if raw.get("family") == "classifier":
        raw["num_classes"] = data_info["num_classes"]
    torch.manual_seed(settings.seed)
    model = build_model(raw).to(target)
    group_spec = resolve_spec(Checkpoint(model_tensors(model)), spec, rename, rename_file)
    hooks = [set_hook(model, density, zeta, settings.seed)] if method == "set" and density is not None else []
    if request.given:
        hooks.append(make_controller(request, model, group_spec, settings, target, paths.resume if resume else None))
    details = {"preset": preset, "data": data_info, "seed": settings.seed,
               **regularization_details(settings, group_spec.to_json()), **mask_details(hooks),
               **controller_details(hooks)}
    run = TrainingRun("train", model, task, settings, group_spec, paths, target, None, details, hooks)
    run_training(run, resume, stop_after, json_path)


def controller_details(hooks: list[Any]) -> dict[str, Any]:
    """What provenance and the log record about a size target (the λ controller's settings)."""
    found = [hook.settings.to_dict() for hook in hooks if isinstance(hook, IssController)]
    return {"controller": found[0]} if found else {}


def mask_details(hooks: list[Any]) -> dict[str, Any]:
    """What provenance and the log record about the run's weight masks."""
    found = [hook.info for hook in hooks if isinstance(hook, MaskHook)]
    return {"masks": found[0]} if found else {}


def recipe_for(config: ModelConfig, name: Optional[str]) -> tuple[str, TrainSettings]:
    """``--preset``, else the recipe whose model has the checkpoint's sizes, else the family's default."""
    if name is not None:
        return name, recipe(name)
    for preset, raw in PRESETS.items():
        if preset in RECIPES and raw["family"] == config.family and raw["hidden_sizes"] == config.hidden_sizes:
            return preset, RECIPES[preset]
    fallback = "bilstm-classifier" if config.family == "classifier" else "small"
    note(f"no recipe matches hidden sizes {config.hidden_sizes}: using the {fallback!r} one (choose with --preset)")
    return fallback, RECIPES[fallback]


def finetune(
    checkpoint: Path = typer.Argument(..., help="The trained model to fine-tune (left untouched)."),
    group_lasso: Optional[float] = LambdaOption,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output. Default: CKPT.iss.safetensors."),
    data: Optional[Path] = DataOption,
    preset: Optional[str] = typer.Option(
        None, "--preset", "-p", help="Recipe to start from. Default: the one whose model has the checkpoint's sizes."
    ),
    threshold: Optional[float] = ThresholdOption,
    l1: Optional[float] = L1Option,
    spec: Optional[Path] = SpecOption,
    rename: list[str] = RenameOption,
    rename_file: Optional[Path] = RenameFileOption,
    dropout: Optional[float] = DropoutOption,
    epochs: Optional[int] = EpochsOption,
    batch_size: Optional[int] = BatchOption,
    bptt: Optional[int] = BpttOption,
    lr: Optional[float] = LrOption,
    lr_decay: Optional[float] = DecayOption,
    decay_after: Optional[int] = DecayAfterOption,
    decay_every: Optional[int] = DecayEveryOption,
    max_grad_norm: Optional[float] = ClipOption,
    optimizer: Optional[str] = OptimizerOption,
    settings_file: Optional[Path] = SettingsOption,
    seed: Optional[int] = SeedOption,
    device: str = DeviceOption,
    max_batches: Optional[int] = MaxBatchesOption,
    eval_batch_size: Optional[int] = EvalBatchOption,
    divergence_factor: Optional[float] = DivergenceOption,
    keep: Optional[str] = KeepOption,
    stop_after: Optional[int] = StopAfterOption,
    resume: bool = ResumeOption,
    magnitude_sparsity: Optional[float] = MagnitudeOption,
    prune_start: Optional[int] = PruneStartOption,
    prune_end: Optional[int] = PruneEndOption,
    prune_every: Optional[int] = PruneEveryOption,
    target_hidden: Optional[str] = TargetHiddenOption,
    target_params: Optional[str] = TargetParamsOption,
    target_speedup: Optional[float] = TargetSpeedupOption,
    prune_epochs: Optional[int] = PruneEpochsOption,
    recover_epochs: Optional[int] = RecoverEpochsOption,
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    force: bool = ForceOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Fine-tune CKPT with group Lasso on its ISS (paper Eq. 2–4): whole hidden units go to zero, for prune/compact.

    A masked CKPT (SET, magnitude pruning) keeps its masks; --magnitude-sparsity prunes by magnitude instead.
    --target-hidden/--target-params/--target-speedup steer λ per layer to reach a size (docs/training.md).
    """
    request = TargetRequest(target_hidden, target_params, target_speedup, prune_epochs, recover_epochs).check()
    output = output or default_output(checkpoint, "iss")
    paths = RunPaths(output)
    prepare_outputs(paths, (checkpoint,), force, resume)
    loaded = load_checkpoint(checkpoint)
    overrides = config_overrides(config) or {}
    if dropout is not None:
        overrides["dropout"] = dropout
    model_config, _ = resolve_config(loaded, arch, overrides)
    recipe_name, base = recipe_for(model_config, preset)
    settings = target_schedule(build_settings(base, settings_file, setting_flags(locals())), request)
    check_schedule(magnitude_sparsity, prune_start, prune_end, prune_every, settings.epochs)
    if request.given and (magnitude_sparsity is not None or loaded.masks):
        raise IsscliError("a size target does not combine with weight masks", "drop the target or the masks")
    no_iss = settings.group_lasso == 0 and settings.l1 == 0 and not request.given
    if no_iss and magnitude_sparsity is None and not loaded.masks:
        note("[yellow]no --lambda or --l1: this fine-tunes without learning ISS[/]")
    target = resolve_device(device)
    task, data_info = load_task(model_config.family, data, settings, target)
    check_vocabulary(model_config, data_info)
    torch.manual_seed(settings.seed)
    model = load_model(loaded, arch, overrides).to(target)
    group_spec = resolve_spec(Checkpoint(model_tensors(model), path=checkpoint), spec, rename, rename_file)
    hook = finetune_hook(model, loaded.masks, loaded.mask_info, magnitude_sparsity, prune_start, prune_end,
                         prune_every, settings.epochs)
    hooks = [hook] if hook is not None else []
    if request.given:
        hooks.append(make_controller(request, model, group_spec, settings, target, paths.resume if resume else None))
    details = {"preset": recipe_name, "data": data_info, "seed": settings.seed,
               **regularization_details(settings, group_spec.to_json()), **mask_details(hooks),
               **controller_details(hooks)}
    run = TrainingRun("finetune", model, task, settings, group_spec, paths, target, loaded, details, hooks)
    run_training(run, resume, stop_after, json_path)


def evaluate(
    checkpoint: Path = typer.Argument(..., help="The checkpoint to score."),
    data: Optional[Path] = DataOption,
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    batch_size: int = typer.Option(10, "--batch-size", help="Streams (LM) or sentences (classifier) per batch."),
    bptt: int = typer.Option(35, "--bptt", help="Steps per chunk for LMs (the state is carried across chunks)."),
    seed: int = typer.Option(0, "--seed", help="Seed of MR's 90/10 split (classifiers)."),
    device: str = DeviceOption,
    arch: Optional[str] = ArchOption,
    config: Optional[str] = ConfigOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Perplexity of a language model (accuracy of a classifier) on one split of a corpus."""
    if split not in ("train", "valid", "test"):
        raise IsscliError(f"unknown split {split!r}", "use train, valid or test")
    if batch_size < 1 or bptt < 1:
        raise IsscliError("--batch-size and --bptt must be ≥ 1", "fix the option")
    loaded = load_checkpoint(checkpoint)
    target = resolve_device(device)
    model = load_model(loaded, arch, config_overrides(config)).to(target)
    settings = RECIPES["small"].updated({"batch_size": batch_size, "eval_batch_size": batch_size, "bptt": bptt,
                                         "seed": seed})
    task, data_info = load_task(model.config.family, data, settings, target)
    check_vocabulary(model.config, data_info)
    trained_on = trained_vocabulary(loaded.provenance)
    if trained_on and trained_on != data_info["vocabulary_sha256"]:
        raise IsscliError(
            f"{checkpoint} was trained on another vocabulary than {data_info['path']}'s (same size, other words)",
            "evaluate on the corpus the model was trained on",
        )
    result = task.evaluate(model, split)
    report = {"checkpoint": str(checkpoint), "data": data_info["path"], **result.to_dict(),
              "parameters": loaded.num_parameters()}

    def render() -> None:
        if result.accuracy is None:
            columns = ("data", "split", "tokens", "loss", "perplexity")
            row = (data_info["path"], split, result.count, result.loss, result.perplexity)
        else:
            columns = ("data", "split", "sentences", "loss", "accuracy")
            row = (data_info["path"], split, result.count, result.loss, f"{result.accuracy:.2%}")
        console.print(table(f"eval {checkpoint}", columns, [row]))

    emit(report, json_path, render)
