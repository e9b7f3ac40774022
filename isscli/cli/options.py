"""Every option's flags and help, in one place: one name, one meaning, in every command.

A command declares ``name: Optional[float] = option("name")``; the name is the library
request's field, :data:`FLAGS` says how the command line spells it where that is not
``--name-with-dashes``, and :data:`HELP` says what it means.
"""

from __future__ import annotations

from typing import Any

import typer

from isscli.cli.output import JSON_HELP

#: Spellings other than ``--name-with-dashes``.
FLAGS = {"data": ("--data", "-d"), "group_lasso": ("--lambda",), "threshold": ("--threshold", "-t"),
         "spec": ("--spec", "-s"), "settings_file": ("--settings",), "json_path": ("--json",),
         "output": ("-o", "--output")}
#: Defaults other than None.
DEFAULTS: dict[str, Any] = {"rename": [], "device": "auto", "resume": False, "force": False, "method": "dense",
                             "allow_unknown": False}
#: Old spellings, still accepted, not listed in --help.
HIDDEN = ("threshold",)

HELP = {
    "fail_above": "Quality gate of an LM: exit 1 if the perplexity is above this.",
    "fail_below": "Quality gate of a classifier: exit 1 if the accuracy (e.g. 0.75) is below this.",
    "baseline": "Quality gate against a model (e.g. the dense one), scored on the same split …",
    "max_loss": "… exit 1 if the perplexity exceeds (1 + this) × the baseline's (0.05: 5% worse), or the accuracy "
                "is more than this below the baseline's.",
    "magnitude_sparsity": "Prune the embedding and recurrent matrices by magnitude to this share of zeros: at once "
                          "before training, or gradually with --prune-end. Masked weights stay zero.",
    "prune_start": "First epoch of gradual magnitude pruning (default 1).",
    "prune_end": "Last epoch of gradual magnitude pruning (Zhu & Gupta's cubic schedule).",
    "prune_every": "Batches between gradual pruning steps (default 100).",
    "method": "dense, or set: sparse evolutionary training (SET-LSTM) of the embedding and recurrent matrices.",
    "density": "--method set: share of the embedding and recurrent connections kept, in (0, 1].",
    "zeta": "--method set: share of each matrix's connections removed and regrown after every epoch (default 0.3).",
    "group_threshold": "τ: zero every ISS component whose group norm ‖w_k‖ is ≤ τ.",
    "keep_fraction": "Instead: keep this share of every set's units (e.g. 0.5), zeroing the weakest.",

    "data": "Corpus folder: PTB format (ptb.{train,valid,test}.txt) for LMs — or one text file, split by lines "
            "90/5/5 — and SST-2/MR for classifiers. Default for LMs: $ISSCLI_DATA, ../shared/data/ptb, the download "
            "cache, a download, the shipped fallback. With --model: tensor data, a .safetensors or .npz file holding "
            "x, y (and lengths), or train.x, valid.x, test.x … (docs/training.md).",
    "model": "Your own model class, path/to/file.py:Class or package.module:Class: isscli loads the checkpoint into "
             "it and runs its forward (for checkpoints isscli's families cannot describe). Imports that code, at "
             "your request only (docs/security.md). Takes precedence over --arch/--config.",
    "model_args": "JSON constructor arguments of --model: an object (keywords) or a list (positional), "
                  "e.g. '{\"hidden\": 64}'.",
    "input_shape": "With --model and no --data: the input the model runs on, samples first: 10x30x8 (floats) or "
                   "10x30:int<5000 (token ids below 5000).",
    "objective": "Tensor data with --model: regression (MSE), classification (cross-entropy per sequence; y [N]) "
                 "or tagging (cross-entropy per step; y [N, T], -100 ignored).",
    "split_rule": "Tensor data holding plain x, y: train,valid,test fractions, taken in file order (default "
                  "0.8,0.1,0.1; no shuffling, so a time series' future stays out of training).",
    "model_data": "With --model: tensor data (.safetensors/.npz) whose first rows the model runs on.",
    "vocab": "The words in id order: a text file (one word per line), a JSON list, or a JSON object word → id. "
             "Needed for a checkpoint that carries no vocabulary (e.g. a plain state_dict); isscli's checkpoints "
             "carry theirs.",
    "vocab_order": "Number the words of the training text: frequency (isscli's: by count) or first-seen (PyTorch's "
                   "word_language_model: by first appearance in train, valid, test).",
    "max_vocab": "Keep at most this many words, <unk> and <eos> included (the most frequent; the rest become "
                 "<unk>); at least 2.",
    "min_count": "Keep only words seen at least this often in train (the rest become <unk>).",
    "allow_unknown": "Train even when the vocabulary reads more than half the train split as <unk> (refused "
                     "otherwise: such a model learns little but <unk>, and its perplexity means nothing).",
    "group_lasso": "Group Lasso strength λ, in the paper's units (loss summed over steps, averaged over the batch): "
                   "0.00245 is the paper's 2×1500 LM from scratch. 0: off. With a size target: the largest λ allowed.",
    "weight_threshold": "τ: zero regularized weights with |w| < τ after every batch. Default 1e-4 when λ, --l1 or a "
                        "target is on, else off.",
    "threshold": "Old name of --weight-threshold (train, finetune) and --group-threshold (prune).",
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
    "precision": "fp32, or bf16: forward and backward passes under autocast (on GPUs: faster); the weights, the "
                 "group-Lasso gradient, thresholding and every ISS decision stay in fp32.",
    "max_eval_batches": "Cut every validation pass after this many batches (quick checks; the test pass is whole).",
    "save_every": "Also save the resumable state every this many batches (atomic; a crashed or killed run, or "
                  "torchrun --max-restarts, continues from there).",
    "eval_batch_size": "Batch size of validation and test passes (default 10).",
    "divergence_factor": "Stop when valid perplexity exceeds this × its best (default 4).",
    "keep": "Which epoch OUT holds: best (lowest valid perplexity, default) or last (ISS fine-tuning).",
    "stop_after": "Stop after this epoch, leaving the run resumable.",
    "resume": "Continue an interrupted run from OUT.resume.safetensors.",
    "force": "Replace the output file if it exists (never an input).",
    "json_path": JSON_HELP,
}


def option(name: str, help: str | None = None) -> Any:
    """The typer option of parameter ``name`` (``help`` replaces the common text where a command needs its own)."""
    flags = FLAGS.get(name, ("--" + name.replace("_", "-"),))
    return typer.Option(DEFAULTS.get(name), *flags, help=help or HELP[name], hidden=name in HIDDEN)
