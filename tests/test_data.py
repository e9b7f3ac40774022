"""Data readers, batching, the PTB downloader and data resolution, on corpora written by the tests."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import torch

from isscli.data import resolve as resolve_module
from isscli.data.corpus import EOS, UNK, batchify, bptt_chunks, count_chunks, find_split_files, load_corpus
from isscli.data.download import download_ptb
from isscli.data.resolve import FALLBACK, resolve_data
from isscli.data.sentences import PAD, load_sentences, parse_examples, sentence_batches, split_mr
from isscli.io.errors import IsscliError
from isscli.learn.tasks import LanguageModelTask, evaluate_stream
from isscli.models import build_model
from tests.conftest import SHARED_DATA


def write_corpus(folder: Path, train: str, valid: str, test: str, prefix: str = "ptb.") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{prefix}{split}.txt").write_text(text, encoding="utf-8")
    return folder


# -- PTB-format corpora -------------------------------------------------------------------


def test_eos_ends_every_line_and_vocabulary_comes_from_train(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path, " b a \n c b \n", " a b \n", " c \n")
    corpus = load_corpus(folder)
    # counts in train: b 2, <eos> 2, a 1, c 1 → by count, then alphabetically
    assert corpus.vocabulary.words == ["<eos>", "b", "a", "c"]
    decoded = [corpus.vocabulary.words[i] for i in corpus.splits["train"]]
    assert decoded == ["b", "a", EOS, "c", "b", EOS]
    assert [corpus.vocabulary.words[i] for i in corpus.splits["test"]] == ["c", EOS]


def test_valid_words_outside_the_vocabulary_become_unk_when_it_exists(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path, "a <unk> b\n", "a zebra\n", "b\n")
    corpus = load_corpus(folder)
    assert [corpus.vocabulary.words[i] for i in corpus.splits["valid"]] == ["a", UNK, EOS]


def test_raw_text_gains_unk_for_the_words_train_lacks(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path, "a b\n", "a zebra\n", "b\n")
    corpus = load_corpus(folder)
    assert corpus.vocabulary.words == ["<eos>", "a", "b", UNK]  # <unk> is added last: the other ids stay
    assert [corpus.vocabulary.words[i] for i in corpus.splits["valid"]] == ["a", UNK, EOS]
    assert corpus.unknown()["valid"] == {"count": 1, "share": 1 / 3, "mapped": 1}


def test_split_files_are_found_under_several_names(tmp_path: Path) -> None:
    plain = write_corpus(tmp_path / "plain", "a\n", "a\n", "a\n", prefix="")
    (plain / "valid.txt").rename(plain / "dev.txt")
    assert find_split_files(plain)["valid"].name == "dev.txt"
    partial = write_corpus(tmp_path / "partial", "a\n", "a\n", "a\n")
    (partial / "ptb.test.txt").unlink()
    with pytest.raises(IsscliError, match="no test file"):
        find_split_files(partial)
    (partial / "test.txt").write_text("a\n", encoding="utf-8")
    (partial / "wiki.test.tokens").write_text("a\n", encoding="utf-8")
    with pytest.raises(IsscliError, match="2 .*test file"):
        find_split_files(partial)
    with pytest.raises(IsscliError, match="not found"):
        load_corpus(tmp_path / "absent")


def test_non_utf8_text_is_a_one_line_error(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path, "a\n", "a\n", "a\n")
    (folder / "ptb.train.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(IsscliError, match="not utf-8 text"):
        load_corpus(folder)


def test_batchify_cuts_contiguous_time_major_streams() -> None:
    stream = batchify(torch.arange(23), 4)
    assert stream.shape == (5, 4)
    assert stream[:, 1].tolist() == [5, 6, 7, 8, 9]  # column b holds a contiguous stretch
    chunks = list(bptt_chunks(stream, 3))
    assert [c[0].shape[0] for c in chunks] == [3, 1] == [c[1].shape[0] for c in chunks]
    assert count_chunks(stream, 3) == len(chunks)
    for inputs, targets in chunks:
        assert torch.equal(targets, inputs + 1)  # targets are the next tokens
    with pytest.raises(IsscliError, match="too few"):
        batchify(torch.arange(5), 4)


def test_hidden_state_is_carried_across_batches(tmp_path: Path) -> None:
    """Scoring in chunks of 3 steps with the carried state equals scoring in one pass."""
    words = " ".join(f"w{i % 7}" for i in range(300))
    corpus = load_corpus(write_corpus(tmp_path, words + "\n", words[:200] + "\n", "w1\n"))
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": len(corpus.vocabulary), "embedding_size": 4,
                         "hidden_sizes": [[5], [3]]})
    cpu = torch.device("cpu")
    chunked = evaluate_stream(model, corpus.splits["valid"], "valid", 2, 3, cpu)
    whole = evaluate_stream(model, corpus.splits["valid"], "valid", 2, 10_000, cpu)
    assert chunked.count == whole.count
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-5)
    task = LanguageModelTask(corpus, batch_size=4, bptt=5, eval_batch_size=2, device=cpu)
    first, second = list(task.batches(1, 2))
    task.step(model, first)
    carried = task.step(model, second).total
    task.state = None
    assert task.step(model, second).total != pytest.approx(carried)  # the second batch saw the first's state
    task.batches(2, None)
    assert task.state is None  # every epoch starts from a zero state


def test_lm_loss_is_summed_over_steps_and_averaged_over_the_batch(tmp_path: Path) -> None:
    words = " ".join(f"w{i % 5}" for i in range(400))
    corpus = load_corpus(write_corpus(tmp_path, words + "\n", "w1\n", "w2\n"))
    torch.manual_seed(0)
    model = build_model({"family": "lm", "vocab_size": len(corpus.vocabulary), "embedding_size": 4,
                         "hidden_sizes": [[3]]})
    task = LanguageModelTask(corpus, batch_size=4, bptt=6, eval_batch_size=2, device=torch.device("cpu"))
    inputs, targets = next(task.batches(1, None))
    step = task.step(model, (inputs, targets))
    with torch.no_grad():
        logits, _ = model(inputs)
    mean = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert float(step.objective.detach()) == pytest.approx(float(mean) * 6, rel=1e-5)  # = mean per token × bptt
    assert step.count == 24


# -- sentence classification --------------------------------------------------------------


def test_sst2_format_reads_labels_sentences_and_pads_batches(tmp_path: Path) -> None:
    folder = tmp_path / "sst"
    folder.mkdir()
    (folder / "train.txt").write_text("1 a fine film .\n0 a dull film\n1 fine\n", encoding="utf-8")
    (folder / "dev.txt").write_text("0 dull , dull\n", encoding="utf-8")
    (folder / "test.txt").write_text("1 unseen words\n", encoding="utf-8")
    corpus = load_sentences(folder)
    assert corpus.vocabulary.words[:2] == [PAD, UNK]
    assert corpus.num_classes == 2
    assert corpus.splits["train"].labels.tolist() == [1, 0, 1]
    assert corpus.splits["test"].tokens[0].tolist() == [1, 1]  # unknown words → <unk>
    tokens, lengths, labels = next(sentence_batches(corpus.splits["train"], 3))
    assert tokens.shape == (4, 3) and lengths.tolist() == [4, 3, 1]
    assert tokens[1:, 2].tolist() == [0, 0, 0]  # padding is id 0, at the end
    assert labels.tolist() == [1, 0, 1]


def test_mr_is_latin1_and_split_90_10_with_a_seed(tmp_path: Path) -> None:
    folder = tmp_path / "mr"
    folder.mkdir()
    # \x85 is "…" in MR's Latin-1 text: it must not end the line (str.splitlines would split there)
    lines = [f"{i % 2} caf\xe9 w{i} \x85 ok ." for i in range(40)]
    (folder / "rt-polarity.all").write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    corpus = load_sentences(folder, seed=3)
    assert "café" in corpus.vocabulary.index
    assert len(corpus.splits["train"]) == 36 and len(corpus.splits["test"]) == 4
    valid, test = corpus.splits["valid"], corpus.splits["test"]  # no dev set: the held-out 10% serves both
    assert torch.equal(valid.labels, test.labels)
    assert [t.tolist() for t in valid.tokens] == [t.tolist() for t in test.tokens]

    def held_out(seed: int) -> set[str]:
        examples = split_mr(parse_examples("\n".join(lines), "mr"), seed)
        return {" ".join(sentence) for sentence in examples["test"].sentences}

    assert held_out(3) == held_out(3) != held_out(4)
    train = split_mr(parse_examples("\n".join(lines), "mr"), 3)["train"].sentences
    assert not held_out(3) & {" ".join(sentence) for sentence in train}


def test_malformed_classification_line_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.txt").write_text("1 good\nnot-a-label here\n", encoding="utf-8")
    (folder / "dev.txt").write_text("1 good\n", encoding="utf-8")
    (folder / "test.txt").write_text("1 good\n", encoding="utf-8")
    with pytest.raises(IsscliError, match="line 2 is not 'LABEL SENTENCE'"):
        load_sentences(folder)


# -- the PTB downloader -------------------------------------------------------------------


SPLIT_TEXT = {"train": b" a b c \n b c \n", "valid": b" a b \n", "test": b" c \n"}


def make_archive(path: Path, contents: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split, data in contents.items():
            info = tarfile.TarInfo(f"./simple-examples/data/ptb.{split}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def checksums(contents: dict[str, bytes]) -> dict[str, str]:
    return {split: hashlib.sha256(data).hexdigest() for split, data in contents.items()}


def test_download_verifies_and_writes_the_three_files(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "simple-examples.tgz", SPLIT_TEXT)
    written = download_ptb(tmp_path / "ptb", archive.as_uri(), checksums(SPLIT_TEXT))
    assert {path.name for path in written.values()} == {"ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"}
    assert (tmp_path / "ptb" / "ptb.valid.txt").read_bytes() == SPLIT_TEXT["valid"]
    assert load_corpus(tmp_path / "ptb").vocabulary.words == ["<eos>", "b", "c", "a"]


def test_tampered_archive_fails_in_one_line_and_leaves_no_file(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    tampered = dict(SPLIT_TEXT, valid=b" a b evil \n")
    archive = make_archive(tmp_path / "simple-examples.tgz", tampered)
    with pytest.raises(IsscliError, match="checksum mismatch for ptb.valid.txt"):
        download_ptb(tmp_path / "lib", archive.as_uri(), checksums(SPLIT_TEXT))
    assert not (tmp_path / "lib").exists()
    result = run_cli("data", "ptb", tmp_path / "cli", "--url", archive.as_uri())  # the real PTB sums
    assert result.code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0] and "nothing was written" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cli").exists()
    assert not list(tmp_path.glob("**/*.tmp"))


@pytest.mark.skipif(not (SHARED_DATA / "ptb").is_dir(), reason="../shared/data/ptb is absent")
def test_cli_accepts_an_archive_of_the_real_ptb_files(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    real = {split: (SHARED_DATA / "ptb" / f"ptb.{split}.txt").read_bytes() for split in SPLIT_TEXT}
    archive = make_archive(tmp_path / "simple-examples.tgz", real)
    result = run_cli("data", "ptb", tmp_path / "ptb", "--url", archive.as_uri())  # the published sums
    assert result.code == 0, result.stderr
    assert (tmp_path / "ptb" / "ptb.train.txt").read_bytes() == real["train"]
    assert "checksums verified" in result.stdout


def test_download_refuses_to_overwrite_and_reports_bad_archives(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.tgz", SPLIT_TEXT)
    download_ptb(tmp_path / "ptb", archive.as_uri(), checksums(SPLIT_TEXT))
    with pytest.raises(IsscliError, match="already exists"):
        download_ptb(tmp_path / "ptb", archive.as_uri(), checksums(SPLIT_TEXT))
    (tmp_path / "junk.tgz").write_bytes(b"not an archive")
    with pytest.raises(IsscliError, match="not a readable tar archive"):
        download_ptb(tmp_path / "other", (tmp_path / "junk.tgz").as_uri(), checksums(SPLIT_TEXT))
    partial = make_archive(tmp_path / "partial.tgz", {"train": SPLIT_TEXT["train"]})
    with pytest.raises(IsscliError, match="has no ptb.valid.txt"):
        download_ptb(tmp_path / "other", partial.as_uri(), checksums(SPLIT_TEXT))


def test_offline_download_fails_with_one_clear_line(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    # Port 9 on the loopback interface: connection refused at once, as with no network.
    result = run_cli("data", "ptb", tmp_path / "ptb", "--url", "http://127.0.0.1:9/simple-examples.tgz")
    assert result.code == 2
    assert "cannot download http://127.0.0.1:9/simple-examples.tgz" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_cli("data", "ptb", tmp_path / "ptb", "--url", (tmp_path / "none.tgz").as_uri())
    assert missing.code == 2 and "cannot download" in missing.stderr


# -- resolution and the shipped corpus ----------------------------------------------------


def test_resolution_order_flag_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = write_corpus(tmp_path / "named", "a\n", "a\n", "a\n")
    monkeypatch.setenv("ISSCLI_DATA", str(tmp_path / "from-env"))
    assert resolve_data(named).origin == "--data"
    with pytest.raises(IsscliError, match="from-env.*not found"):
        resolve_data()
    write_corpus(tmp_path / "from-env", "a\n", "a\n", "a\n")
    assert resolve_data().path == tmp_path / "from-env"


def test_resolution_falls_back_to_the_shipped_corpus_when_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ISSCLI_DATA", raising=False)
    monkeypatch.setattr(resolve_module, "shared_candidates", lambda: [tmp_path / "nowhere"])
    monkeypatch.setattr(resolve_module, "default_cache", lambda: tmp_path / "cache")
    source = resolve_data(url="http://127.0.0.1:9/simple-examples.tgz")
    assert source.origin == "fallback" and source.path == FALLBACK
    assert "cannot download" in (source.note or "")
    write_corpus(tmp_path / "cache", "a\n", "a\n", "a\n")
    assert resolve_data(download=False).origin == "cache"


def test_shared_folder_is_found_next_to_the_project_root() -> None:
    root = resolve_module.project_root()
    assert (root / "isscli" / "__init__.py").is_file()
    assert root.parent / "shared" / "data" / "ptb" in resolve_module.shared_candidates()


def test_shipped_fallback_corpus_is_small_ptb_like_and_documented() -> None:
    files = sorted(p.name for p in FALLBACK.iterdir())
    assert files == ["README.md", "test.txt", "train.txt", "valid.txt"]
    assert sum((FALLBACK / name).stat().st_size for name in files) <= 1_000_000
    assert "public domain" in (FALLBACK / "README.md").read_text(encoding="utf-8")
    corpus = load_corpus(FALLBACK)
    assert 4_000 < len(corpus.vocabulary) <= 5_002
    assert corpus.splits["train"].numel() > 100_000
    words = set((FALLBACK / "train.txt").read_text(encoding="ascii").split())
    assert all(word == word.lower() for word in words - {"N"})  # lowercased, numbers as N, like PTB
    assert UNK in corpus.vocabulary.index


def test_short_epochs_go_through_the_corpus_instead_of_rereading_its_start(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path, "".join(f" w{i} \n" for i in range(40)), " w1 \n", " w2 \n")
    task = LanguageModelTask(load_corpus(folder), batch_size=2, bptt=5, eval_batch_size=2, device=torch.device("cpu"))
    every = [inputs for inputs, _ in bptt_chunks(task.train_stream, 5)]
    assert len(every) == 8
    for epoch, expected in ((1, [0, 1, 2]), (2, [3, 4, 5]), (3, [6, 7, 0]), (4, [1, 2, 3])):
        got = [inputs for inputs, _ in task.batches(epoch, 3)]
        assert [next(i for i, chunk in enumerate(every) if torch.equal(chunk, g)) for g in got] == expected, epoch
    assert len(list(task.batches(2, 3, start=2))) == 1  # a resume in the middle of epoch 2 reads its last chunk
    assert len(list(task.batches(1, None))) == 8  # whole epochs are whole
