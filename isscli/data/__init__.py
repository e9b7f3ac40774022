"""Corpora: PTB-format language modelling, sentence classification, download and resolution."""

from isscli.data.corpus import EOS, UNK, Corpus, Vocabulary, batchify, bptt_chunks, load_corpus
from isscli.data.download import PTB_SHA256, PTB_URL, download_ptb
from isscli.data.resolve import DataSource, resolve_data
from isscli.data.sentences import SentenceCorpus, load_sentences, sentence_batches

__all__ = [
    "EOS", "PTB_SHA256", "PTB_URL", "UNK", "Corpus", "DataSource", "SentenceCorpus", "Vocabulary",
    "batchify", "bptt_chunks", "download_ptb", "load_corpus", "load_sentences", "resolve_data", "sentence_batches",
]
