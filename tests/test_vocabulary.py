"""Vocabularies: files in three forms, the two orders, caps, raw text, one-file corpora; PTB's ids unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isscli.data.corpus import UNK, load_corpus
from isscli.data.vocabulary import VocabularyChoice, first_difference, read_vocabulary_file
from isscli.io.errors import IsscliError
from tests.conftest import SHARED_DATA

PTB = SHARED_DATA / "ptb"
#: The fingerprint of PTB's vocabulary as isscli has always numbered it (by count, ties alphabetically).
PTB_VOCABULARY_SHA256 = "135c1cdfba9ba2627ec3793c69ec07de0dd88160d58aef56c285c140f4831094"


def corpus_folder(folder: Path, train: str, valid: str, test: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return folder


def test_vocabulary_files_in_three_forms(tmp_path: Path) -> None:
    words = ["<unk>", "the", "cat", "<eos>"]
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    (tmp_path / "list.json").write_text(json.dumps(words), encoding="utf-8")
    (tmp_path / "map.json").write_text(json.dumps({w: i for i, w in reversed(list(enumerate(words)))}),
                                       encoding="utf-8")
    for name in ("words.txt", "list.json", "map.json"):
        assert read_vocabulary_file(tmp_path / name) == tuple(words), name


@pytest.mark.parametrize("content, message", [
    ("the\ncat\nthe\n", "'the' twice"),
    ("the\n\ncat\n", "line 2 is not one word"),
    ("a b\n", "line 1 is not one word"),
    ('{"the": 0, "cat": 2}', "ids are not 0 … 1"),
    ('{"the": "0"}', "neither a JSON list"),
    ("[1, 2]", "neither a JSON list"),
    ("[", "not valid JSON"),
])
def test_bad_vocabulary_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IsscliError, match=message):
        read_vocabulary_file(path)


def test_first_seen_numbers_words_as_pytorchs_word_language_model(tmp_path: Path) -> None:
    folder = corpus_folder(tmp_path, "b a b\nc a\n", "a d\n", "e b\n")
    corpus = load_corpus(folder, VocabularyChoice(order="first-seen"))
    # data.Corpus of pytorch/examples: train, then valid, then test, <eos> after every line
    assert corpus.vocabulary.words == ["b", "a", "<eos>", "c", "d", "e"]
    assert corpus.unknown()["valid"]["mapped"] == 0
    by_count = load_corpus(folder)
    assert by_count.vocabulary.words == ["<eos>", "a", "b", "c", UNK]  # b 2, a 2, <eos> 2 → alphabetically


def test_caps_send_rare_words_to_unk_and_count_them(tmp_path: Path) -> None:
    folder = corpus_folder(tmp_path, "a a a b b c\n", "a c d\n", "b\n")
    capped = load_corpus(folder, VocabularyChoice(max_vocab=3))
    assert capped.vocabulary.words == ["a", "b", UNK]  # <eos> and c (1 each) lose, and <unk> takes a slot
    assert len(capped.vocabulary) == 3
    rare = load_corpus(folder, VocabularyChoice(min_count=2))
    assert rare.vocabulary.words == ["a", "b", UNK]
    report = rare.unknown()
    assert report["valid"] == {"count": 3, "share": 3 / 4, "mapped": 3}  # c, d and <eos>
    assert report["train"]["mapped"] == 2  # c and <eos>


def test_a_given_vocabulary_without_unk_must_hold_every_word(tmp_path: Path) -> None:
    folder = corpus_folder(tmp_path, "a b\n", "a zebra\n", "b\n")
    with pytest.raises(IsscliError, match="'zebra' is not in the vocabulary .*mine.txt.*, which has no <unk>"):
        load_corpus(folder, VocabularyChoice(words=("a", "b", "<eos>"), source="the vocabulary of mine.txt"))
    given = load_corpus(folder, VocabularyChoice(words=("<eos>", "b", "a", UNK), source="file"))
    assert [given.vocabulary.words[i] for i in given.splits["valid"]] == ["a", UNK, "<eos>"]


def test_one_text_file_is_split_by_lines_90_5_5(tmp_path: Path) -> None:
    text = tmp_path / "book.txt"
    text.write_text("".join(f"line {i} w{i % 7}\n" for i in range(40)), encoding="utf-8")
    corpus = load_corpus(text)
    lines = {split: int((ids == corpus.vocabulary.index["<eos>"]).sum()) for split, ids in corpus.splits.items()}
    assert lines == {"train": 36, "valid": 2, "test": 2}
    assert corpus.layout == "one file, split by lines 90/5/5 (train/valid/test, in order)"
    assert corpus.describe()["layout"] == corpus.layout
    with pytest.raises(IsscliError, match="too few to split"):
        (tmp_path / "short.txt").write_text("a\nb\n", encoding="utf-8")
        load_corpus(tmp_path / "short.txt")


def test_caps_and_a_given_vocabulary_do_not_mix() -> None:
    with pytest.raises(IsscliError, match="`max_vocab` and `min_count` cap a vocabulary built from text"):
        VocabularyChoice(words=("a",), max_vocab=3)
    with pytest.raises(IsscliError, match="unknown `vocab_order`"):
        VocabularyChoice(order="alphabetical")


def test_first_difference_names_the_first_differing_word() -> None:
    assert first_difference(["a", "b", "c"], ["a", "x", "c"], "model", "file") == "id 1 is 'b' in model but 'x' in file"
    assert first_difference(["a"], ["a", "b"], "model", "file") == "model has 1 words, file 2"
    assert first_difference(["a"], ["a"], "model", "file") is None


@pytest.mark.skipif(not PTB.is_dir(), reason="../shared/data/ptb is absent (PTB is read from there, never copied)")
def test_ptb_keeps_its_ids() -> None:
    corpus = load_corpus(PTB)
    assert corpus.vocabulary.fingerprint() == PTB_VOCABULARY_SHA256
    assert corpus.vocabulary.words[:5] == ["the", "<unk>", "<eos>", "N", "of"]
    assert {split: int(ids.numel()) for split, ids in corpus.splits.items()} == {
        "train": 929_589, "valid": 73_760, "test": 82_430}
    assert [int(ids[:5].sum()) for ids in corpus.splits.values()] == [49_862, 1_917, 924]
    assert all(report["mapped"] == 0 for report in corpus.unknown().values())  # PTB's <unk> are in the text


def test_raw_text_trains_finetunes_compacts_and_evaluates(run_cli, tmp_path: Path) -> None:  # noqa: ANN001
    import random

    rng = random.Random(3)
    words = [f"w{i}" for i in range(60)]
    book = tmp_path / "book.txt"  # raw text: rare words, no <unk>, one file
    book.write_text("".join(" ".join(rng.choice(words[: rng.choice((20, 60))]) for _ in range(8)) + "\n"
                            for _ in range(400)), encoding="utf-8")
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"embedding_size": 8, "hidden_sizes": [[10], [8]]}), encoding="utf-8")
    quick = ["--epochs", "1", "--max-batches", "8", "--batch-size", "4", "--bptt", "8", "--eval-batch-size", "4",
             "--device", "cpu"]
    dense, tuned = tmp_path / "dense.safetensors", tmp_path / "tuned.safetensors"
    trained = run_cli("train", "--preset", "tiny", "--config", config, "--data", book, "--max-vocab", "30",
                      "-o", dense, *quick, "--json", "-")
    assert trained.code == 0, trained.stderr
    data = json.loads(trained.stdout)["data"]
    assert data["vocabulary_size"] == 30 and data["layout"].startswith("one file, split by lines 90/5/5")
    assert data["unknown"]["valid"]["mapped"] > 0 and 0 < data["unknown"]["test"]["share"] < 1
    assert "words outside the vocabulary read as <unk>" in trained.stderr
    assert run_cli("finetune", dense, "--data", book, "--target-hidden", "5,4", "--prune-epochs", "1",
                   "--recover-epochs", "1", "-o", tuned, *quick).code == 0
    pruned, small = tmp_path / "pruned.safetensors", tmp_path / "small.safetensors"
    assert run_cli("prune", tuned, "--group-threshold", "0", "-o", pruned).code == 0
    assert run_cli("compact", pruned, "-o", small).code == 0
    scored = run_cli("eval", small, "--data", book, "--json", "-")
    assert scored.code == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["unknown"]["test"] == data["unknown"]["test"]  # the stored vocabulary reads the text the same way
