"""Issue 21, repros 7, 10 and 12 and the <unk> guard: text inputs lose a BOM, vocabulary files say what is wrong
with them, ``max_vocab`` counts what it says, sizes are bounded before work, a classifier needs two words, and a
vocabulary that reads most of the training text as <unk> is refused before training."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import isscli.data.vocabulary as vocabulary_module
from isscli.api.corpora import load_task, vocabulary_choice
from isscli.data.corpus import UNK, load_corpus
from isscli.data.sentences import load_sentences
from isscli.data.vocabulary import MAX_VOCABULARY, VocabularyChoice, read_vocabulary_file
from isscli.io.errors import IsscliError
from isscli.io.jsonfile import read_json
from isscli.learn.recipes import RECIPES
from isscli.models.checkpoint import save_checkpoint
from isscli.models.config import NUMBERS, ModelConfig
from isscli.observer import SilentObserver
from tests.conftest import tiny_config, write_model

BOM = codecs.BOM_UTF8
QUICK = ["--epochs", "1", "--max-batches", "2", "--batch-size", "4", "--bptt", "8", "--eval-batch-size", "4",
         "--device", "cpu"]


def corpus_folder(folder: Path, train: str, valid: str, test: str, prefix: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}.txt").write_bytes(prefix + text.encode("utf-8"))
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- repro 7: a byte-order mark is stripped from every text input ----------------------------------------------------


@pytest.mark.parametrize("content", ["the\ncat\n<unk>\n", '["the", "cat", "<unk>"]',
                                     '{"the": 0, "cat": 1, "<unk>": 2}'])
def test_a_bom_in_a_vocabulary_file_is_not_part_of_the_first_word(tmp_path: Path, content: str) -> None:
    path = tmp_path / "vocab.txt"
    path.write_bytes(BOM + content.encode("utf-8"))
    assert read_vocabulary_file(path) == ("the", "cat", UNK)


def test_a_bom_in_a_corpus_and_in_a_single_text_file_is_stripped(tmp_path: Path) -> None:
    plain = load_corpus(corpus_folder(tmp_path / "plain", "the cat\nthe dog\n", "the cat\n", "the\n"))
    marked = load_corpus(corpus_folder(tmp_path / "bom", "the cat\nthe dog\n", "the cat\n", "the\n", BOM))
    assert marked.vocabulary.words == plain.vocabulary.words
    assert all(torch.equal(marked.splits[s], plain.splits[s]) for s in plain.splits)
    assert all(report["mapped"] == 0 for report in marked.unknown().values())
    book = tmp_path / "book.txt"
    book.write_bytes(BOM + b"".join(b"the w%d\r\n" % (i % 5) for i in range(40)))  # Windows: BOM and CRLF
    assert "\ufeffthe" not in load_corpus(book).vocabulary.index
    assert load_corpus(book).vocabulary.words[0] == "<eos>"  # 40 lines, 40 "the": ties alphabetically


def test_a_bom_in_sst2_and_mr_sentence_files_is_stripped(tmp_path: Path) -> None:
    sst = tmp_path / "sst"
    sst.mkdir()
    for split in ("train", "dev", "test"):
        (sst / f"{split}.txt").write_bytes(BOM + b"1 a good film\n0 a bad film\n")
    read = load_sentences(sst)
    assert read.num_classes == 2 and "\ufeffa" not in read.vocabulary.index
    mr = tmp_path / "mr"
    mr.mkdir()
    (mr / "rt-polarity.all").write_bytes(BOM + "\n".join(f"{i % 2} caf\xe9 {i}" for i in range(20)).encode("latin-1"))
    assert len(load_sentences(mr).splits["train"]) == 18


@pytest.mark.parametrize("what", ["spec", "config", "settings file", "mapping file"])
def test_a_bom_in_a_json_file_is_stripped(tmp_path: Path, what: str) -> None:
    path = tmp_path / "file.json"
    path.write_bytes(BOM + b'{"epochs": 2}')
    assert read_json(path, what) == {"epochs": 2}


def test_a_bom_in_every_file_of_a_training_run_reads_like_none(run_cli, corpus: Path, tmp_path: Path) -> None:  # noqa: ANN001
    words = sorted({w for line in (corpus / "ptb.train.txt").read_text(encoding="utf-8").split("\n") for w in
                    line.split()}) + ["<eos>", UNK]
    vocab, settings, config = tmp_path / "vocab.txt", tmp_path / "settings.json", tmp_path / "model.json"
    vocab.write_bytes(BOM + "\n".join(words).encode("utf-8"))
    settings.write_bytes(BOM + b'{"seed": 3}')
    config.write_bytes(BOM + json.dumps({"embedding_size": 8, "hidden_sizes": [[6]]}).encode("utf-8"))
    output = tmp_path / "model.safetensors"
    result = run_cli("train", "--preset", "tiny", "--config", config, "--settings", settings, "--vocab", vocab,
                     "--data", corpus, "-o", output, *QUICK, "--json", "-")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["seed"] == 3 and report["data"]["vocabulary_size"] == len(words)
    assert all(split["count"] == 0 for split in report["data"]["unknown"].values())  # "the" is not <unk>


# -- repro 10: a classifier needs <pad> and one word --------------------------------------------------------------


def test_the_smallest_vocabulary_of_each_family() -> None:
    with pytest.raises(IsscliError, match="vocab_size is 1, but a classifier needs at least 2 .*<pad>"):
        ModelConfig.from_dict(tiny_config(family="classifier", vocab_size=1, num_classes=2, hidden_sizes=[[6]]))
    assert ModelConfig.from_dict(tiny_config(family="classifier", vocab_size=2, num_classes=2, hidden_sizes=[[6]]))
    assert ModelConfig.from_dict(tiny_config(vocab_size=1))  # an LM's every id is a word
    assert ModelConfig.from_dict(tiny_config(family="rhn", vocab_size=1, embedding_size=6, hidden_sizes=[[6]], depth=2))
    assert NUMBERS["vocab_size"][2] == MAX_VOCABULARY


@pytest.mark.parametrize("command", ["export", "bench", "compact"])
def test_a_one_word_classifier_is_refused_in_one_line(run_cli, tmp_path: Path, command: str) -> None:  # noqa: ANN001
    config = tiny_config(family="classifier", vocab_size=2, num_classes=2, hidden_sizes=[[6]])
    two = write_model(tmp_path / "two.safetensors", config)
    one = tmp_path / "one.safetensors"  # its header says 1 word, as a hand-edited or foreign file could
    save_checkpoint(one, load_file(two), {**ModelConfig.from_dict(config).to_dict(), "vocab_size": 1})
    before = sha256(one)
    arguments = {"export": ["-o", tmp_path / "one.onnx"], "bench": [],
                 "compact": ["-o", tmp_path / "small.safetensors"]}[command]
    result = run_cli(command, one, *arguments)
    assert result.code == 2, result.stderr
    assert "vocab_size is 1, but a classifier needs at least 2" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert sha256(one) == before and not (tmp_path / "one.onnx").exists()
    if command == "compact":
        assert run_cli("compact", two, "-o", tmp_path / "small.safetensors").code == 0  # two words run


# -- repro 12: vocabulary files, max_vocab, vocab with vocab_order, the size cap ---------------------------------------


@pytest.mark.parametrize("content, words", [("the\t5\ncat\t3\n", ("'the'", "awk '{print $1}'")),
                                            ("   5 the\n   3 cat\n", ("'the'", "awk '{print $2}'"))])
def test_a_word_count_file_is_named_as_one(tmp_path: Path, content: str, words: tuple[str, str]) -> None:
    path = tmp_path / "counts.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IsscliError) as caught:
        read_vocabulary_file(path)
    assert "line 1" in caught.value.message and "looks like a list of word counts" in caught.value.message
    assert "one word per line" in caught.value.message
    assert all(word in caught.value.hint for word in words)


def test_a_word_count_file_is_refused_by_train_with_the_file_format_not_a_corpus_word(  # noqa: ANN001
        run_cli, corpus: Path, tmp_path: Path) -> None:
    counts = tmp_path / "counts.txt"
    counts.write_text("the\t120\ncat\t40\n<unk>\t3\n", encoding="utf-8")
    output = tmp_path / "model.safetensors"
    result = run_cli("train", "--preset", "tiny", "--data", corpus, "--vocab", counts, "-o", output, *QUICK)
    assert result.code == 2
    assert "counts.txt line 1 is 'the\\t120', a word and a number" in result.stderr
    assert not output.exists()


@pytest.mark.parametrize("content, entry", [
    ('["the", ""]', "id 1, '', is empty"),
    ('["the", "a b"]', "id 1, 'a b', holds whitespace"),
    ('{"the": 0, "a\\tb": 1}', "id 1, 'a\\\\tb', holds whitespace"),
    ('{"": 0}', "id 0, '', is empty"),
])
def test_json_vocabularies_refuse_entries_that_are_not_one_word(tmp_path: Path, content: str, entry: str) -> None:
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IsscliError, match=entry):
        read_vocabulary_file(path)


@pytest.mark.parametrize("order", ["frequency", "first-seen"])
def test_max_vocab_counts_every_word_unk_included(tmp_path: Path, order: str) -> None:
    folder = corpus_folder(tmp_path, "a a a b b c d e\n", "a c f\n", "b\n")  # 6 kinds in train with <eos>
    for cap in range(2, 10):
        words = load_corpus(folder, VocabularyChoice(order=order, max_vocab=cap)).vocabulary.words
        assert len(words) == min(cap, 7), (cap, words)  # the 6 of train, and <unk> for valid's f
        assert UNK in words
    fits = corpus_folder(tmp_path / "fits", "a b\n", "a\n", "b\n")
    assert load_corpus(fits, VocabularyChoice(order=order, max_vocab=3)).vocabulary.words[-1] != UNK  # no word lost
    with pytest.raises(IsscliError, match="`max_vocab` 1 cannot hold <unk> and one word.*<unk> and <eos> included"):
        VocabularyChoice(order=order, max_vocab=1)


def test_max_vocab_keeps_a_texts_own_unk_at_its_rank(tmp_path: Path) -> None:
    folder = corpus_folder(tmp_path, "a a a b b <unk> c\n", "d\n", "a\n")
    assert load_corpus(folder, VocabularyChoice(max_vocab=3)).vocabulary.words == ["a", "b", UNK]


def test_max_vocab_one_is_refused_by_the_cli(run_cli, corpus: Path, tmp_path: Path) -> None:  # noqa: ANN001
    result = run_cli("train", "--preset", "tiny", "--data", corpus, "--max-vocab", "1", "-o", tmp_path / "m.st",
                     *QUICK)
    assert result.code == 2 and "--max-vocab 1 cannot hold <unk> and one word" in result.stderr
    assert "give --max-vocab ≥ 2" in result.stderr


@pytest.mark.parametrize("command", ["train", "eval"])
def test_vocab_with_vocab_order_is_refused(run_cli, corpus: Path, dense: Path, tmp_path: Path,  # noqa: ANN001
                                           command: str) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("the\n<unk>\n", encoding="utf-8")
    target = ["--preset", "tiny", "-o", tmp_path / "m.safetensors", *QUICK] if command == "train" else [dense]
    result = run_cli(command, *target, "--data", corpus, "--vocab", vocab, "--vocab-order", "first-seen")
    assert result.code == 2, result.stderr
    assert "--vocab and --vocab-order both say how the words are numbered" in result.stderr
    assert "give one of them" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(IsscliError, match="`vocab` and `vocab_order`"):
        vocabulary_choice(vocab, "frequency")


def test_a_vocabulary_over_the_cap_is_refused_before_anything_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vocabulary_module, "MAX_VOCABULARY", 5)
    text, listed, mapped = tmp_path / "v.txt", tmp_path / "v.json", tmp_path / "m.json"
    words = [f"w{i}" for i in range(6)]
    text.write_text("\n".join(words) + "\n", encoding="utf-8")
    listed.write_text(json.dumps(words), encoding="utf-8")
    mapped.write_text(json.dumps({w: i for i, w in enumerate(words)}), encoding="utf-8")
    for path, unit in ((text, "lines"), (listed, "words"), (mapped, "words")):
        with pytest.raises(IsscliError, match=f"has 6 {unit}, more than the 5 words isscli models"):
            read_vocabulary_file(path)
    text.write_text("\n".join(words[:5]), encoding="utf-8")  # 5 words, no final newline: within the cap
    assert len(read_vocabulary_file(text)) == 5
    folder = corpus_folder(tmp_path / "c", " ".join(words) + "\n", "w0\n", "w1\n")
    with pytest.raises(IsscliError, match="built from the training text has 7 words") as caught:
        load_corpus(folder)
    assert "`max_vocab`" in caught.value.hint
    assert len(load_corpus(folder, VocabularyChoice(max_vocab=5)).vocabulary) == 5
    sst = tmp_path / "sst"
    sst.mkdir()
    for split in ("train", "dev", "test"):
        (sst / f"{split}.txt").write_text("1 a b c d\n0 e\n", encoding="utf-8")
    with pytest.raises(IsscliError, match="training sentences has 7 words"):
        load_sentences(sst)
    monkeypatch.setattr(vocabulary_module, "MAX_JSON_BYTES", 10)
    with pytest.raises(IsscliError, match="is larger than"):
        read_vocabulary_file(listed)


# -- what to build, item 2: a vocabulary that reads most of the training text as <unk> --------------------------------


def test_training_on_a_mostly_unk_vocabulary_is_refused_before_training(  # noqa: ANN001
        run_cli, corpus: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    capped = run_cli("train", "--preset", "tiny", "--data", corpus, "--max-vocab", "2", "-o", output, *QUICK)
    assert capped.code == 2
    assert "reads 82.1% of the train split as <unk>" in capped.stderr and "--allow-unknown" in capped.stderr
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<unk>\n", encoding="utf-8")  # everything is <unk>: the "perplexity 1.00" of the issue
    given = run_cli("train", "--preset", "tiny", "--data", corpus, "--vocab", vocab, "-o", output, *QUICK)
    assert given.code == 2 and "reads 100.0% of the train split as <unk>" in given.stderr
    assert not output.exists() and not output.with_suffix(".log.jsonl").exists()
    allowed = run_cli("train", "--preset", "tiny", "--data", corpus, "--max-vocab", "2", "--allow-unknown",
                      "-o", output, *QUICK)
    assert allowed.code == 0, allowed.stderr  # on purpose: the flag lets it train
    assert output.exists()


def test_finetuning_on_a_foreign_corpus_is_refused_but_scoring_it_is_not(  # noqa: ANN001
        run_cli, corpus: Path, tmp_path: Path) -> None:
    model = tmp_path / "capped.safetensors"  # its vocabulary has <unk>, so foreign words are read as <unk>
    trained = run_cli("train", "--preset", "tiny", "--data", corpus, "--max-vocab", "16", "-o", model, *QUICK)
    assert trained.code == 0, trained.stderr
    foreign = corpus_folder(tmp_path / "foreign", "zebras graze here\n" * 40, "zebras graze\n" * 5,
                            "zebras graze\n" * 5)
    tuned = tmp_path / "tuned.safetensors"
    refused = run_cli("finetune", model, "--data", foreign, "--lambda", "0.001", "-o", tuned, *QUICK)
    assert refused.code == 2 and "reads 75.0% of the train split as <unk>" in refused.stderr  # all but <eos>
    assert f"stored in {model}" in refused.stderr and not tuned.exists()
    scored = run_cli("eval", model, "--data", foreign, "--batch-size", "4", "--json", "-")  # reported, not refused
    assert scored.code == 0, scored.stderr
    assert json.loads(scored.stdout)["unknown"]["test"]["share"] > 0.5


@pytest.mark.parametrize("family", ["lm", "classifier"])
def test_allow_unknown_trains_on_it_on_purpose(tmp_path: Path, family: str) -> None:
    settings = RECIPES["tiny"].updated({"batch_size": 2, "eval_batch_size": 2})
    if family == "lm":
        data = corpus_folder(tmp_path / "lm", "a b c d\n" * 10, "a b\n" * 5, "c d\n" * 5)
        choice = VocabularyChoice(words=("a", UNK, "<eos>"), source="mine")
    else:
        data = tmp_path / "sst"
        data.mkdir()
        for split in ("train", "dev", "test"):
            (data / f"{split}.txt").write_text("1 a b c\n0 d e\n" * 3, encoding="utf-8")
        choice = VocabularyChoice(words=("<pad>", UNK, "a"), source="mine")
    arguments = (family, data, settings, torch.device("cpu"), SilentObserver(), choice)
    with pytest.raises(IsscliError, match=r"reads \d+\.\d% of the train split as <unk>"):
        load_task(*arguments)
    assert load_task(*arguments, allow_unknown=True)[2] == list(choice.words)
    assert load_task(*arguments, splits={"train": "batch_size"})[2] == list(choice.words)  # scoring: not refused


def test_a_checkpoints_stored_vocabulary_is_checked_like_a_vocabulary_file(tmp_path: Path) -> None:
    import json

    import torch
    from safetensors.torch import save_file

    from isscli.models.checkpoint import VOCABULARY_KEY, load_checkpoint

    for words, said in ((["a", "b c"], "its word of id 1, 'b c', is not one word"),
                        (["a", ""], "its word of id 1, '', is not one word"),
                        (["a", "a"], "is not a list of distinct words")):
        path = tmp_path / "v.safetensors"
        save_file({"w": torch.zeros(2)}, str(path), metadata={VOCABULARY_KEY: json.dumps(words)})
        with pytest.raises(IsscliError, match=re.escape(said)):
            load_checkpoint(path)
