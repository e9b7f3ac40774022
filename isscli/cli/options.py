"""Every option of the command line, declared once: the library request field it sets → its flags and its help.

A command declares ``group_threshold: Annotated[Optional[float], option("group_threshold")] = None``. The
parameter is named like the field of the library request it fills, so the command hands it on by name, and the
library's messages, which name fields (```group_threshold```), name the flag the user typed
(:func:`isscli.cli.main.in_flags`). :data:`OPTIONS` says how the command line spells each field and what it means,
in every command alike; a command whose meaning of a field differs says so where it declares the parameter
(``option("seed", help=...)``), and the parameter's default is the command's own. Every call makes a new typer
option: no option object is shared between commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TypeVar

import typer
from typer.models import OptionInfo

from isscli import api
from isscli.cli.output import JSON_HELP, note

Value = TypeVar("Value")
#: What ``--data`` means to the commands that run the user's own model (``--model``) on it.
MODEL_DATA = "With --model: tensor data (.safetensors/.npz) whose first rows the model runs on."
#: What ``--force`` means to the commands whose only output is the ``--json`` report.
REPORT_FORCE = "Replace the --json report if it exists (never an input)."


@dataclass(frozen=True)
class Flag:
    """How the command line spells one field, and what it means there."""

    help: str
    flags: tuple[str, ...] = ()  # () → --field-with-dashes
    min: Optional[int] = None


OPTIONS: dict[str, Flag] = {
    # -- what a command reads and writes
    "output": Flag("Where to write the checkpoint.", ("-o", "--output")),
    "folder": Flag("Folder for pruned/compact.safetensors and shrink.json.", ("-o", "--output")),
    "force": Flag("Replace the output file if it exists (never an input)."),
    "json_path": Flag(JSON_HELP, ("--json",)),
    "spec": Flag("Group spec (native or authors' JSON). Default: derived from the checkpoint.", ("--spec", "-s")),
    "check": Flag("Validate this spec against the checkpoint instead of deriving one."),
    "checkpoint": Flag("Also validate the result against this checkpoint.", ("--check",)),
    "rename": Flag("Map a spec tensor name to a checkpoint name, OLD=NEW (repeatable)."),
    "rename_file": Flag("JSON object mapping spec tensor names to checkpoint names."),
    "arch": Flag("Model family for checkpoints without config: lm or classifier."),
    "config": Flag(f"Model config JSON file, or a preset name ({', '.join(api.PRESETS)}), for checkpoints without "
                   "one."),
    "changes": Flag("Override a config field, KEY=JSON (e.g. hidden_sizes=[[300],[200]]).", ("--set",)),
    "preset": Flag("Recipe (and with --from-scratch, model) of every point.", ("--preset", "-p")),
    "against": Flag("The baseline checkpoint (e.g. the dense model)."),
    "baseline": Flag("Quality gate against a model (e.g. the dense one), scored on the same split …"),
    "url": Flag("Where simple-examples.tgz is (http(s):// or file://). Default: Mikolov's RNNLM page."),
    # -- your own model class
    "model": Flag("Your own model class, path/to/file.py:Class or package.module:Class: isscli loads the checkpoint "
                  "into it and runs its forward (for checkpoints isscli's families cannot describe). Imports that "
                  "code, at your request only (docs/security.md). Takes precedence over --arch/--config."),
    "model_args": Flag("JSON constructor arguments of --model: an object (keywords) or a list (positional), "
                       "e.g. '{\"hidden\": 64}'."),
    "input_shape": Flag("With --model and no --data: the input the model runs on, samples first: 10x30x8 (floats) "
                        "or 10x30:int<5000 (token ids below 5000)."),
    "objective": Flag("Tensor data with --model: regression (MSE), classification (cross-entropy per sequence; y "
                      "[N]) or tagging (cross-entropy per step; y [N, T], -100 ignored)."),
    "split_rule": Flag("Tensor data holding plain x, y: train,valid,test fractions, taken in file order (default "
                       "0.8,0.1,0.1; no shuffling, so a time series' future stays out of training)."),
    # -- the data
    "data": Flag("Corpus folder: PTB format (ptb.{train,valid,test}.txt) for LMs — or one text file, split by lines "
                 "90/5/5 — and SST-2/MR for classifiers. Default for LMs: $ISSCLI_DATA, ../shared/data/ptb, the "
                 "download cache, a download, the shipped fallback. With --model: tensor data, a .safetensors or .npz "
                 "file holding x, y (and lengths), or train.x, valid.x, test.x … (docs/training.md).",
                 ("--data", "-d")),
    "vocab": Flag("The words in id order: a text file (one word per line), a JSON list, or a JSON object word → id. "
                  "Needed for a checkpoint that carries no vocabulary (e.g. a plain state_dict); isscli's "
                  "checkpoints carry theirs."),
    "vocab_order": Flag("Number the words of the training text: frequency (isscli's: by count) or first-seen "
                        "(PyTorch's word_language_model: by first appearance in train, valid, test)."),
    "max_vocab": Flag("Keep at most this many words, <unk> and <eos> included (the most frequent; the rest become "
                      "<unk>); at least 2."),
    "min_count": Flag("Keep only words seen at least this often in train (the rest become <unk>)."),
    "allow_unknown": Flag("Train even when the vocabulary reads more than half the train split as <unk> (refused "
                          "otherwise: such a model learns little but <unk>, and its perplexity means nothing)."),
    "split": Flag("train, valid or test."),
    # -- ISS: what to learn, what to zero
    "group_lasso": Flag("Group Lasso strength λ, in the paper's units (loss summed over steps, averaged over the "
                        "batch): 0.00245 is the paper's 2×1500 LM from scratch. 0: off. With a size target: the "
                        "largest λ allowed.", ("--lambda",)),
    "lambdas": Flag("λ values, comma-separated: one point each.", ("--lambda",)),
    "weight_threshold": Flag("τ: zero regularized weights with |w| < τ after every batch. Default 1e-4 when λ, --l1 "
                             "or a target is on, else off."),
    "group_threshold": Flag("τ: zero every ISS component whose group norm ‖w_k‖ is ≤ τ."),
    "threshold": Flag("Old name of --weight-threshold (train, finetune) and --group-threshold (prune).",
                      ("--threshold", "-t")),
    "prune_threshold": Flag("Old name of --group-threshold."),
    "keep_fraction": Flag("Instead: keep this share of every set's units (e.g. 0.5), zeroing the weakest."),
    "l1": Flag("L1 strength D (Appendix A uses 1e-4): adds D·Σ|w| over the grouped tensors."),
    "target_hidden": Flag("Learn ISS down to these units per ISS set, in spec order (one per direction of a "
                          "bidirectional layer), e.g. 400,350: a controller steers λ per set and ends with exactly "
                          "these sizes."),
    "target_params": Flag("Learn ISS down to this many parameters after compaction (e.g. 20M, 1.5k): the same share "
                          "of units is kept in every set, the largest that fits."),
    "target_speedup": Flag("Learn ISS down to a model this many times faster than the dense one, as measured on this "
                           "machine (bench harness, batch 10 × 30 steps): the same share of units is kept in every "
                           "set."),
    "prune_epochs": Flag("With a target: epochs of the pruning phase (default: --epochs, else the recipe's)."),
    "recover_epochs": Flag("With a target: epochs of λ = 0 fine-tuning of the survivors after pruning (default: a "
                           "quarter of --prune-epochs, at least 1)."),
    "magnitude_sparsity": Flag("Prune the embedding and recurrent matrices by magnitude to this share of zeros: at "
                               "once before training, or gradually with --prune-end. Masked weights stay zero."),
    "prune_start": Flag("First epoch of gradual magnitude pruning (default 1)."),
    "prune_end": Flag("Last epoch of gradual magnitude pruning (Zhu & Gupta's cubic schedule)."),
    "prune_every": Flag("Batches between gradual pruning steps (default 100)."),
    "method": Flag("dense, or set: sparse evolutionary training (SET-LSTM) of the embedding and recurrent matrices."),
    "density": Flag("--method set: share of the embedding and recurrent connections kept, in (0, 1]."),
    "zeta": Flag("--method set: share of each matrix's connections removed and regrown after every epoch (default "
                 "0.3)."),
    "sparsity": Flag("Share of the embedding and recurrent weights to remove, smallest |w| first, in (0, 1)."),
    "verify": Flag("Run both models and compare their outputs before writing (random inputs; with --model, --data's "
                   "rows or --input-shape). A checkpoint whose forward isscli cannot run is refused unless "
                   "--no-verify.", ("--verify/--no-verify",)),
    # -- training
    "dropout": Flag("Dropout probability (1 − keep ratio; the paper's ISS runs keep 0.6)."),
    "epochs": Flag("Number of epochs (Zaremba: 13 small, 39 medium, 55 large)."),
    "batch_size": Flag("Mini-batch size (recipe: 20)."),
    "bptt": Flag("Unrolled steps per batch (recipe: 20 small, 35 medium/large)."),
    "lr": Flag("Learning rate (recipe: 1.0, plain SGD)."),
    "lr_decay": Flag("lr multiplier per epoch after --decay-after."),
    "decay_after": Flag("Epochs at the full lr before the decay starts."),
    "decay_every": Flag("Apply --lr-decay once every this many epochs (default 1)."),
    "max_grad_norm": Flag("Clip the gradient of the whole objective to this global norm."),
    "optimizer": Flag("sgd (the paper's) or adam."),
    "settings_file": Flag("JSON file of training settings (see docs/training.md); flags win.", ("--settings",)),
    "seed": Flag("Random seed: initialisation, dropout, shuffling (default 0)."),
    "device": Flag("cpu, cuda, cuda:N or auto (cuda when available)."),
    "max_batches": Flag("Stop each epoch after this many batches (quick checks)."),
    "precision": Flag("fp32, or bf16: forward and backward passes under autocast (on GPUs: faster); the weights, the "
                      "group-Lasso gradient, thresholding and every ISS decision stay in fp32."),
    "max_eval_batches": Flag("Cut every validation pass after this many batches (quick checks; the test pass is "
                             "whole)."),
    "save_every": Flag("Also save the resumable state every this many batches (atomic; a crashed or killed run, or "
                       "torchrun --max-restarts, continues from there)."),
    "eval_batch_size": Flag("Batch size of validation and test passes (default 10)."),
    "divergence_factor": Flag("Stop when valid perplexity exceeds this × its best (default 4)."),
    "keep": Flag("Which epoch OUT holds: best (lowest valid perplexity, default) or last (ISS fine-tuning)."),
    "stop_after": Flag("Stop after this epoch, leaving the run resumable."),
    "resume": Flag("Continue an interrupted run from OUT.resume.safetensors."),
    # -- quality and speed
    "fail_above": Flag("Quality gate: exit 1 if the perplexity (LMs) or the loss (--objective regression) is above "
                       "this."),
    "fail_below": Flag("Quality gate of a classifier: exit 1 if the accuracy (e.g. 0.75) is below this."),
    "max_loss": Flag("… exit 1 if the perplexity exceeds (1 + this) × the baseline's (0.05: 5% worse), or the "
                     "accuracy is more than this below the baseline's."),
    "quantize": Flag("int8: weights quantized by ONNX Runtime (LSTM/GRU, output layer, embedding), the graph checked "
                     "against the fp32 model (0.1 × the largest |output|, reported)."),
    "shapes": Flag("Time a fresh model with these hidden sizes instead of CKPT, e.g. 373,315 (other sizes from the "
                   "'large' preset: embedding 1500, vocabulary 10,000)."),
    "against_shapes": Flag("Baseline with these hidden sizes instead of --against, e.g. 1500,1500."),
    "batch": Flag("Sequences per batch (the paper: 10).", min=1),
    "steps": Flag("Time steps per inference (the paper: 30).", min=1),
    "repeats": Flag("Timed repeats per model; the median is reported.", min=1),
    "warmup": Flag("Untimed runs per model first.", min=0),
    "threads": Flag("CPU threads (torch.set_num_threads).", min=1),
    "runtime": Flag("torch (isscli's models) or onnxruntime: each model exported to ONNX, checked, and timed in ONNX "
                    "Runtime (CPU; full inference and batch-1 latency)."),
    "cuda_graphs": Flag("Capture each inference in a CUDA graph (with --device cuda)."),
    "unstructured": Flag("Unstructured sparsity through CSR: a masked CKPT (or one of the baseline's shape) runs as "
                         "CSR against the baseline, or its dense self without one; a compacted CKPT adds the "
                         "baseline's shape with its nonzeros scattered at random."),
    "bench_repeats": Flag("Timed repeats of the bench step.", min=1),
    "bench": Flag("Time the compact model against the baseline.", ("--bench/--no-bench",)),
    "evaluate": Flag("Models to evaluate, comma-separated: baseline, pruned, compact."),
    # -- export, sweep, demo
    "format": Flag("onnx (ONNX Runtime, and every runtime that reads ONNX)."),
    "opset": Flag("The ONNX opset to target.", min=13),
    "from_scratch": Flag("Train every point from scratch (train --preset P) instead of fine-tuning CKPT."),
    "jobs": Flag("Points trained at once, as worker processes sharing the CPU threads; benchmarks run one at a time.",
                 ("--jobs", "-j"), min=1),
    "plot": Flag("Draw SWEEPDIR/tradeoff.png (needs matplotlib).", ("--plot/--no-plot",)),
    "batches": Flag("Training batches per epoch (default 60; fewer: faster, worse).", min=1),
}

#: Old spellings, still accepted and hidden from --help: (old parameter, the field it now sets) → the warning.
RENAMED = {
    ("threshold", "group_threshold"): "--threshold of prune is now --group-threshold (group norm ≤ τ)",
    ("threshold", "weight_threshold"): "--threshold of train/finetune is now --weight-threshold (per-weight |w| < τ)",
    ("prune_threshold", "group_threshold"): "--prune-threshold is now --group-threshold",
}


def option(field: str, help: Optional[str] = None, flags: tuple[str, ...] = ()) -> OptionInfo:
    """A new typer option for the request field ``field``; ``help`` (or ``flags``) where a command's meaning differs
    from :data:`OPTIONS`'."""
    declared = OPTIONS[field]
    spelled = flags or declared.flags or ("--" + field.replace("_", "-"),)
    hidden = any(old == field for old, _ in RENAMED)
    made: OptionInfo = typer.Option(*spelled, help=help or declared.help, hidden=hidden, min=declared.min)
    return made


def renamed(old: str, old_value: Optional[Value], field: str, value: Optional[Value]) -> Optional[Value]:
    """The value of ``field``: its own flag's, else — with a warning — that of ``old``, its old spelling."""
    if old_value is None:
        return value
    note(f"{RENAMED[old, field]}; the old name will go", warning=True)
    return old_value if value is None else value

