"""Corpora: PTB-format language modelling, sentence classification, download and resolution.

The names below are imported on first use (:mod:`isscli.lazy`), so that reading a vocabulary bound does not
load torch.
"""

from isscli.lazy import lazy_exports

HOMES = {
    **dict.fromkeys(("EOS", "UNK", "Corpus", "Vocabulary", "batchify", "bptt_chunks", "load_corpus"),
                    "isscli.data.corpus"),
    **dict.fromkeys(("PTB_SHA256", "PTB_URL", "download_ptb"), "isscli.data.download"),
    **dict.fromkeys(("DataSource", "resolve_data"), "isscli.data.resolve"),
    **dict.fromkeys(("SentenceCorpus", "load_sentences", "sentence_batches"), "isscli.data.sentences"),
}
__all__ = sorted(HOMES)
__getattr__, __dir__ = lazy_exports(__name__, HOMES)
