"""Built-in model configs: Zaremba et al. (2014)'s PTB language models and small classifiers.

``large`` is the paper's baseline (embedding 1500, 2×1500 LSTM, 10k vocabulary, 66.0M
parameters); ``rhn`` is the paper's RHN baseline (Zilly et al.'s variational RHN + WT: width 830,
depth 10, 23.5M parameters); ``tiny`` is for demos and tests on two CPU cores.
"""

from __future__ import annotations

from isscli.io.errors import IsscliError
from isscli.io.jsonfile import JSONObject

PTB_VOCAB = 10_000

PRESETS: dict[str, JSONObject] = {
    "tiny": {
        "family": "lm",
        "vocab_size": PTB_VOCAB,
        "embedding_size": 64,
        "hidden_sizes": [[64], [64]],
        "dropout": 0.0,
        "init_range": 0.1,
    },
    "small": {
        "family": "lm",
        "vocab_size": PTB_VOCAB,
        "embedding_size": 200,
        "hidden_sizes": [[200], [200]],
        "dropout": 0.0,
        "init_range": 0.1,
    },
    "medium": {
        "family": "lm",
        "vocab_size": PTB_VOCAB,
        "embedding_size": 650,
        "hidden_sizes": [[650], [650]],
        "dropout": 0.5,
        "init_range": 0.05,
    },
    "large": {
        "family": "lm",
        "vocab_size": PTB_VOCAB,
        "embedding_size": 1500,
        "hidden_sizes": [[1500], [1500]],
        "dropout": 0.65,
        "init_range": 0.04,
    },
    "rhn": {
        "family": "rhn",
        "vocab_size": PTB_VOCAB,
        "embedding_size": 830,
        "hidden_sizes": [[830]],
        "depth": 10,
        "dropout": 0.25,
        "init_range": 0.04,
    },
    "bilstm-classifier": {
        "family": "classifier",
        "vocab_size": 20_000,
        "embedding_size": 128,
        "hidden_sizes": [[128, 128]],
        "num_classes": 2,
        "pooling": "max",
        "dropout": 0.5,
    },
}


def preset_config(name: str) -> JSONObject:
    if name not in PRESETS:
        raise IsscliError(f"unknown preset {name!r}", f"choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
