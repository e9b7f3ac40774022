"""A word-level LSTM language model (pytorch/examples style): ISS, compaction, a safetensors round trip.

``RNNModel`` is the model of pytorch/examples' word_language_model, as users copy it: an embedding
``encoder``, ``nn.LSTM(ninp, nhid, nlayers, dropout=…)``, a linear ``decoder`` (optionally tied to the
embedding), ``init_hidden(bsz)`` returning zeros of ``(nlayers, bsz, nhid)``, ``repackage_hidden`` and
truncated BPTT over a batchified token stream. The corpus comes from a tiny grammar with number agreement
across relative clauses ("the dog that chases the cats runs"). The one change to the original loop: its
hand-written ``p.data.add_(p.grad, alpha=-lr)`` becomes ``torch.optim.SGD`` (same update), because
:class:`isscli.IssTraining` reads the learning rate and step rule of a ``torch.optim`` optimizer.

The LM is trained dense for a third of the epochs first, then :class:`isscli.IssTraining` shrinks it (as one
shrinks a trained model). Started at the first batch with this recipe (SGD, lr 10, ``clip_grad_norm_`` 0.25)
the controller reached its targets within an epoch while the model still knew nothing, and it ended as a
unigram model (perplexity ~21 where the dense one reaches ~5).

Each layer gets its own target (``target_hidden=[…]``). With tied weights the last layer's unit k is also
embedding dimension k (the decoder's column k *is* the embedding's column k), so that set also removes
embedding columns and the first layer's input columns: the compacted model is still tied.

Then the round trip a user makes to ship the model:

1. :func:`isscli.compact_module` with ``(tokens, model.init_hidden(bsz))`` as example input — the
   compacted ``RNNModel`` still takes the dense-sized zeros of its own ``init_hidden``: its LSTM records which
   units of the dense model it kept and selects them from a dense-sized state;
2. ``safetensors.torch.save_file`` of one tensor per parameter (``named_parameters()`` lists a tied weight
   once; safetensors refuses two names for one tensor);
3. a fresh dense ``RNNModel(…)`` and :func:`isscli.load_compacted` — its perplexity equals the compacted one's,
   and ``init_hidden``'s dense-sized zeros still fit: the file does not say which dense units were kept, but
   every unit starts at zero (a nonzero dense-sized state is refused there, by name).

Run it::

    python examples/word_lm_roundtrip.py          # 2 x 64 units (tied) -> [24, 16]
    python examples/word_lm_roundtrip.py --tiny   # 2 x 24 -> [10, 6], a few seconds (what the tests run)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

import isscli

# -- the model, as in pytorch/examples/word_language_model/model.py ---------------------------------------------


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.2,
                 tie_weights: bool = False) -> None:
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self) -> None:
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input: torch.Tensor, hidden: tuple) -> tuple[torch.Tensor, tuple]:
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


# -- the corpus: a tiny grammar ----------------------------------------------------------------------------------

NOUNS = {"dog": "dogs", "cat": "cats", "bird": "birds", "child": "children", "farmer": "farmers", "horse": "horses"}
VERBS = {"sees": "see", "chases": "chase", "likes": "like", "feeds": "feed", "follows": "follow"}
INTRANSITIVE = {"sleeps": "sleep", "runs": "run", "sings": "sing", "waits": "wait"}
ADJECTIVES = ["small", "old", "happy", "brown", "quiet"]


def noun_phrase(rng: random.Random, plural: bool, depth: int = 0) -> list[str]:
    """'the (adjective) noun (that verb NP)'; a relative clause's verb agrees with this noun."""
    words = ["the"] + ([rng.choice(ADJECTIVES)] if rng.random() < 0.4 else [])
    noun = rng.choice(list(NOUNS))
    words.append(NOUNS[noun] if plural else noun)
    if depth == 0 and rng.random() < 0.3:
        verb = rng.choice(list(VERBS))
        words += ["that", VERBS[verb] if plural else verb, *noun_phrase(rng, rng.random() < 0.5, depth + 1)]
    return words


def sentence(rng: random.Random) -> str:
    """Subject, a verb that agrees with it (across a relative clause), maybe an object."""
    plural = rng.random() < 0.5
    words = noun_phrase(rng, plural)
    if rng.random() < 0.5:
        verb = rng.choice(list(INTRANSITIVE))
        words.append(INTRANSITIVE[verb] if plural else verb)
    else:
        verb = rng.choice(list(VERBS))
        words += [VERBS[verb] if plural else verb, *noun_phrase(rng, rng.random() < 0.5)]
    return " ".join(words)


class Corpus:
    """train/valid/test token streams (one ``<eos>`` per sentence), as pytorch/examples' data.Corpus."""

    def __init__(self, sentences: int, seed: int) -> None:
        rng = random.Random(seed)
        self.idx2word: list[str] = []
        self.word2idx: dict[str, int] = {}
        counts = {"train": sentences, "valid": sentences // 10, "test": sentences // 10}
        for part, count in counts.items():
            setattr(self, part, self.tokenize([sentence(rng) for _ in range(count)]))

    def tokenize(self, lines: list[str]) -> torch.Tensor:
        ids = []
        for line in lines:
            for word in line.split() + ["<eos>"]:
                if word not in self.word2idx:
                    self.idx2word.append(word)
                    self.word2idx[word] = len(self.idx2word) - 1
                ids.append(self.word2idx[word])
        return torch.tensor(ids, dtype=torch.long)


# -- the loop -----------------------------------------------------------------------------------------------------


def train_epoch(model: RNNModel, optimizer: torch.optim.Optimizer, train_data: torch.Tensor, bptt: int,
                batch_size: int, clip: float, iss: isscli.IssTraining | None = None) -> None:
    model.train()
    hidden = model.init_hidden(batch_size)
    for i in range(0, train_data.size(0) - 1, bptt):
        data, targets = get_batch(train_data, i, bptt)
        hidden = repackage_hidden(hidden)
        optimizer.zero_grad()
        output, hidden = model(data, hidden)
        loss = F.nll_loss(output, targets)
        loss.backward()
        if iss is not None:
            iss.after_backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if iss is not None:
            iss.after_step()


@torch.no_grad()
def evaluate(model: RNNModel, data_source: torch.Tensor, bptt: int, eval_batch_size: int) -> float:
    """Mean NLL per token; starts from the model's own ``init_hidden`` and carries the state across batches."""
    model.eval()
    total_loss = 0.0
    hidden = model.init_hidden(eval_batch_size)
    for i in range(0, data_source.size(0) - 1, bptt):
        data, targets = get_batch(data_source, i, bptt)
        output, hidden = model(data, hidden)
        hidden = repackage_hidden(hidden)
        total_loss += len(data) * F.nll_loss(output, targets).item()
    return total_loss / (len(data_source) - 1)


def save(result: isscli.ModuleCompaction, path: Path) -> None:
    """One tensor per parameter (a tied weight once: safetensors refuses two names for one tensor)."""
    save_file({name: parameter.detach() for name, parameter in result.model.named_parameters()}, str(path))


def load(path: Path, fresh: RNNModel) -> RNNModel:
    """The compacted weights in a freshly built dense ``RNNModel``."""
    reloaded = isscli.load_compacted(fresh, load_file(str(path)))
    assert type(reloaded) is RNNModel
    return reloaded


@contextmanager
def output_directory(path: str | None) -> Iterator[Path]:
    """``--out`` (created), or a temporary directory removed afterwards."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory() as temporary:
        yield Path(temporary)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-sized run (2 x 24 units -> [10, 6])")
    parser.add_argument("--epochs", type=int,
                        help="epochs in all: a third dense, then pruning, a quarter recovery (default 12; tiny 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--untied", action="store_true", help="do not tie the decoder to the embedding")
    parser.add_argument("--out", help="where to write lm.safetensors and word_lm_roundtrip.json "
                        "(default: a temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 2:
        parser.error("--epochs must be at least 2: pruning, then recovery")
    nhid, targets, sentences = (24, [10, 6], 2500) if args.tiny else (64, [24, 16], 12000)
    epochs = args.epochs or (8 if args.tiny else 12)
    warmup, recover = epochs // 3, max(1, epochs // 4)
    prune = epochs - warmup - recover
    bptt, batch_size, eval_batch_size, lr, clip = 20, 20, 10, 10.0, 0.25  # pytorch/examples: lr 20, for 200+ units
    nlayers, tied = 2, not args.untied

    corpus = Corpus(sentences, args.seed)
    ntokens = len(corpus.idx2word)
    train_data = batchify(corpus.train, batch_size)
    val_data, test_data = batchify(corpus.valid, eval_batch_size), batchify(corpus.test, eval_batch_size)

    def new_model() -> RNNModel:
        return RNNModel(ntokens, nhid, nhid, nlayers, dropout=0.2, tie_weights=tied)

    torch.manual_seed(args.seed)
    dense = new_model()
    dense_optimizer = torch.optim.SGD(dense.parameters(), lr=lr)
    for _ in range(epochs):
        train_epoch(dense, dense_optimizer, train_data, bptt, batch_size, clip)
    dense_nll = evaluate(dense, test_data, bptt, eval_batch_size)

    torch.manual_seed(args.seed)  # the same initial weights as the dense model
    model = new_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(warmup):  # dense first: ISS shrinks a model that has learned something
        train_epoch(model, optimizer, train_data, bptt, batch_size, clip)
    example = (val_data[:bptt], model.init_hidden(eval_batch_size))  # what forward takes: (input, hidden)
    iss = isscli.IssTraining(model, optimizer, batches_per_epoch=len(range(0, train_data.size(0) - 1, bptt)),
                             example_input=example, target_hidden=targets, prune_epochs=prune,
                             recover_epochs=recover, log_loss=True)
    for _ in range(iss.epochs):
        train_epoch(model, optimizer, train_data, bptt, batch_size, clip, iss)
        iss.end_epoch(evaluate(model, val_data, bptt, eval_batch_size))  # a mean NLL: log_loss=True
    iss_nll = evaluate(model, test_data, bptt, eval_batch_size)

    # 1. compact: the user's RNNModel, smaller, still taking init_hidden's dense-sized zeros
    result = isscli.compact_module(model, example, spec=iss.spec)
    small = result.model
    assert type(small) is RNNModel, type(small)
    assert result.max_difference <= 1e-5, result.max_difference
    assert list(result.units.values()) == targets, (result.units, targets)
    small_nll = evaluate(small, test_data, bptt, eval_batch_size)  # init_hidden(…) of the dense size

    with output_directory(args.out) as out:
        path = out / "lm.safetensors"
        save(result, path)  # 2.
        reloaded = load(path, new_model())  # 3.
        reloaded_nll = evaluate(reloaded, test_data, bptt, eval_batch_size)
        figures = {
            "nhid": nhid, "targets": targets, "tied": tied, "epochs": warmup + iss.epochs, "vocabulary": ntokens,
            "units": result.units, "rnn_sizes": small.rnn.hidden_sizes,
            "embedding_dim": small.encoder.embedding_dim, "still_tied": small.decoder.weight is small.encoder.weight,
            "dense_test_ppl": math.exp(dense_nll), "iss_test_ppl": math.exp(iss_nll),
            "compact_test_ppl": math.exp(small_nll), "reloaded_test_ppl": math.exp(reloaded_nll),
            "reload_relative_difference": abs(reloaded_nll - small_nll) / small_nll,
            "reloaded_still_tied": reloaded.decoder.weight is reloaded.encoder.weight,
            "reloaded_class": type(reloaded).__name__,
            "parameters_dense": result.parameters_before, "parameters_compact": result.parameters_after,
            "max_difference": result.max_difference, "not_compared": result.not_compared,
            "compact_class": type(small).__name__, "file_bytes": path.stat().st_size,
            "file": str(path) if args.out is not None else None,
        }
        (out / "word_lm_roundtrip.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert figures["reload_relative_difference"] <= 1e-6, figures
    print(f"RNNModel, LSTM {nhid} x {nlayers}{' (tied)' if tied else ''} -> units {result.units} "
          f"after {warmup} dense, {prune} pruning and {recover} recovery epochs; vocabulary {ntokens}")
    print(f"test perplexity: dense {figures['dense_test_ppl']:.3f}, ISS {figures['iss_test_ppl']:.3f}, "
          f"compact {figures['compact_test_ppl']:.3f}, reloaded {figures['reloaded_test_ppl']:.3f}")
    print(f"parameters: {result.parameters_before:,} -> {result.parameters_after:,}; compact model is a "
          f"{type(small).__name__}, max output difference {result.max_difference:.1e}")
    return figures


if __name__ == "__main__":
    main()
