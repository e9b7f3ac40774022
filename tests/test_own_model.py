"""A user's own model: an LM trained with plain PyTorch in the style of pytorch/examples' word_language_model
(its Dictionary numbers words by first appearance), saved as a state_dict, then read by isscli."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from isscli.models.checkpoint import load_checkpoint

SENTENCES = ["the cat sat on the mat", "a dog ran to the tree", "my friend looked at a bird",
             "the bird sat by the river", "a cat slept on my mat"]


class RNNModel(nn.Module):
    """word_language_model's RNNModel, LSTM, untied: encoder → rnn → decoder."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens: torch.Tensor, hidden=None):  # noqa: ANN001, ANN201
        output, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(output), hidden


class Dictionary:
    """word_language_model's Dictionary: a word gets the next id the first time it is seen."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def tokenize(self, path: Path) -> torch.Tensor:
        ids = []
        for line in path.read_text(encoding="utf-8").splitlines():
            for word in line.split() + ["<eos>"]:
                if word not in self.word2idx:
                    self.word2idx[word] = len(self.idx2word)
                    self.idx2word.append(word)
                ids.append(self.word2idx[word])
        return torch.tensor(ids)


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def their_perplexity(model: RNNModel, data: torch.Tensor, bptt: int = 35) -> float:
    """word_language_model's evaluate(): mean cross-entropy per token, state carried across chunks."""
    model.eval()
    total, hidden = 0.0, None
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            seq_len = min(bptt, len(data) - 1 - i)
            output, hidden = model(data[i:i + seq_len], hidden)
            total += len(data[i:i + seq_len]) * F.cross_entropy(output.view(-1, output.size(-1)),
                                                                data[i + 1:i + 1 + seq_len].reshape(-1)).item()
    return math.exp(total / (len(data) - 1))


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Their corpus, their vocabulary file, their trained model as a torch.save'd state_dict."""
    folder = tmp_path_factory.mktemp("theirs")
    rng = random.Random(1)
    for split, count in (("train", 300), ("valid", 40), ("test", 40)):
        text = "".join(rng.choice(SENTENCES) + "\n" for _ in range(count))
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    dictionary = Dictionary()
    data = {split: dictionary.tokenize(folder / f"{split}.txt") for split in ("train", "valid", "test")}
    (folder / "vocab.txt").write_text("\n".join(dictionary.idx2word) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    model = RNNModel(len(dictionary.idx2word), 16, 24, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    train = batchify(data["train"], 8)
    for _ in range(3):
        hidden = None
        for i in range(0, train.size(0) - 1, 20):
            inputs, targets = train[i:i + 20], train[i + 1:i + 21]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            output, hidden = model(inputs[: len(targets)], hidden)
            loss = F.cross_entropy(output.view(-1, output.size(-1)), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.save(model.state_dict(), folder / "model.pt")
    return {"folder": folder, "model": model, "data": data, "words": dictionary.idx2word}


def test_their_model_is_scored_as_they_score_it_and_never_read_with_a_guessed_order(run_cli, theirs, tmp_path):  # noqa: ANN001
    folder = theirs["folder"]
    imported = tmp_path / "model.safetensors"
    assert run_cli("import-pt", folder / "model.pt", "-o", imported).code == 0
    expected = their_perplexity(theirs["model"], batchify(theirs["data"]["test"], 10))
    assert expected < len(theirs["words"]) / 2  # a model that learned something

    guessed = run_cli("eval", imported, "--data", folder, "--vocab", folder / "vocab.txt")
    assert guessed.code == 2 and "carries no model config" in guessed.stderr and "--model" in guessed.stderr
    assert "--arch" in guessed.stderr  # its forward is never guessed: the user says what it is
    refused = run_cli("eval", imported, "--arch", "lm", "--data", folder, "--batch-size", "10", "--bptt", "35")
    assumed, error = refused.stderr.strip().splitlines()  # what --arch assumes, said; then the one-line error
    assert refused.code == 2 and assumed.startswith("assumed:") and error.startswith("error:")
    assert "carries no vocabulary" in refused.stderr and "--vocab" in refused.stderr
    assert "--vocab-order=first-seen" in refused.stderr

    scored = run_cli("eval", imported, "--arch", "lm", "--data", folder, "--vocab", folder / "vocab.txt",
                     "--batch-size", "10", "--bptt", "35", "--json", "-")
    assert scored.code == 0, scored.stderr
    assert json.loads(scored.stdout)["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert "isscli's `lm` architecture" in json.loads(scored.stdout)["assumption"] and "assumed:" in scored.stderr
    ordered = run_cli("eval", imported, "--arch", "lm", "--data", folder, "--vocab-order", "first-seen",
                      "--batch-size", "10", "--bptt", "35", "--json", "-")
    assert json.loads(ordered.stdout)["perplexity"] == pytest.approx(expected, rel=1e-4)

    wrong = run_cli("eval", imported, "--arch", "lm", "--data", folder, "--vocab-order", "frequency",
                    "--batch-size", "10", "--bptt", "35", "--json", "-")
    report = json.loads(wrong.stdout)
    assert report["perplexity"] > 3 * expected
    if report["perplexity"] >= len(theirs["words"]):
        assert "worse than a uniform guess" in report["warning"] and "warning:" in wrong.stderr


def test_their_model_finetunes_with_its_vocabulary_which_isscli_then_carries(run_cli, theirs, tmp_path) -> None:  # noqa: ANN001
    folder = theirs["folder"]
    imported = tmp_path / "model.safetensors"
    assert run_cli("import-pt", folder / "model.pt", "-o", imported).code == 0
    quick = ["--arch", "lm", "--data", folder, "--epochs", "1", "--max-batches", "10", "--batch-size", "8",
             "--bptt", "10", "--eval-batch-size", "10", "--preset", "tiny", "--device", "cpu"]
    refused = run_cli("finetune", imported, "--lambda", "0.01", "-o", tmp_path / "x.safetensors", *quick)
    assert refused.code == 2 and "carries no vocabulary" in refused.stderr
    tuned = tmp_path / "tuned.safetensors"
    result = run_cli("finetune", imported, "--target-hidden", "12,10", "--prune-epochs", "1", "--recover-epochs", "1",
                     "--vocab", folder / "vocab.txt", "-o", tuned, *quick, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    start = their_perplexity(theirs["model"], batchify(theirs["data"]["valid"], 10), bptt=10)
    assert report["start_valid"]["perplexity"] == pytest.approx(start, rel=1e-4)  # the first row: as given
    assert "start: valid perplexity" in result.stderr
    assert load_checkpoint(tuned).vocabulary == theirs["words"]  # carried from now on
    # every later command reads it from the checkpoint: no --vocab needed, and a wrong one is refused
    pruned, small = tmp_path / "pruned.safetensors", tmp_path / "small.safetensors"
    assert run_cli("prune", tuned, "--group-threshold", "0", "-o", pruned).code == 0
    assert run_cli("compact", pruned, "-o", small).code == 0
    assert load_checkpoint(small).vocabulary == theirs["words"]
    assert run_cli("eval", small, "--data", folder).code == 0
    # the compacted model runs outside isscli: in ONNX Runtime it computes what their own code computes
    onnxruntime = pytest.importorskip("onnxruntime")
    exported = tmp_path / "small.onnx"
    assert run_cli("export", small, "--format", "onnx", "-o", exported).code == 0
    ours = RNNModel(len(theirs["words"]), 16, 24, 2)
    ours.load_state_dict(load_checkpoint(pruned).tensors)  # their module, the pruned (dense-shaped) weights
    ours.eval()
    tokens = theirs["data"]["test"][:60].view(12, 5)
    with torch.no_grad():
        expected, _ = ours(tokens)
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    feeds = {"tokens": tokens.numpy()}
    feeds.update({i.name: torch.zeros(1, 5, i.shape[2]).numpy() for i in session.get_inputs() if i.name != "tokens"})
    logits = session.run(["logits"], feeds)[0]
    assert logits.shape == (12, 5, len(theirs["words"]))
    assert float((torch.from_numpy(logits) - expected).abs().max()) <= 1e-4 * max(1.0, float(expected.abs().max()))
    other = tmp_path / "other.txt"
    other.write_text("\n".join(sorted(theirs["words"])) + "\n", encoding="utf-8")
    clash = run_cli("eval", small, "--data", folder, "--vocab", other)
    assert clash.code == 2 and "disagrees with the vocabulary" in clash.stderr and "id 0 is" in clash.stderr


def test_a_start_worse_than_a_uniform_guess_is_refused_unless_forced(run_cli, corpus, tmp_path) -> None:  # noqa: ANN001
    from isscli.data.corpus import load_corpus
    from isscli.models.checkpoint import save_checkpoint
    from tests.conftest import tiny_config, write_model

    words = len(load_corpus(corpus).vocabulary)
    loaded = load_checkpoint(write_model(tmp_path / "m.safetensors", tiny_config(vocab_size=words)))
    loaded.tensors["decoder.weight"] = loaded.tensors["decoder.weight"] * 200  # wildly confident, mostly wrong
    wild = save_checkpoint(tmp_path / "wild.safetensors", loaded.tensors, loaded.config)
    scored = run_cli("eval", wild, "--data", corpus, "--vocab-order", "frequency", "--json", "-")
    assert scored.code == 0 and "worse than a uniform guess" in json.loads(scored.stdout)["warning"]
    quick = ["--data", corpus, "--vocab-order", "frequency", "--epochs", "1", "--max-batches", "3", "--batch-size", "4",
             "--bptt", "5", "--preset", "tiny"]
    refused = run_cli("finetune", wild, "-o", tmp_path / "no.safetensors", *quick)
    assert refused.code == 2 and "worse than a uniform guess" in refused.stderr and "--force" in refused.stderr
    assert not (tmp_path / "no.safetensors").exists()
    forced = run_cli("finetune", wild, "-o", tmp_path / "yes.safetensors", *quick, "--force")
    assert forced.code == 0, forced.stderr
