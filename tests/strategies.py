"""Hypothesis strategies shared by the property tests: random recurrent model configs."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st


@st.composite
def architectures(draw: st.DrawFn, families: Sequence[str] = ("lm", "classifier", "rhn"),
                  cells: Sequence[str] = ("lstm", "gru", "rnn_tanh"), vocab_size: int = 17) -> dict:
    """1–3 layers of 1–6 units (bidirectional classifiers may differ per direction), tied or untied LMs, every
    pooling; an RHN of width 1–6 and depth 1–3."""
    family = draw(st.sampled_from(list(families)))
    if family == "rhn":
        width = draw(st.integers(1, 6))
        return {"family": "rhn", "vocab_size": vocab_size, "embedding_size": width, "hidden_sizes": [[width]],
                "depth": draw(st.integers(1, 3))}
    bidirectional = family == "classifier" and draw(st.booleans())
    layers = draw(st.integers(1, 3))
    sizes = [[draw(st.integers(1, 6)) for _ in range(2 if bidirectional else 1)] for _ in range(layers)]
    config = {"family": family, "cell": draw(st.sampled_from(list(cells))), "vocab_size": vocab_size,
              "hidden_sizes": sizes}
    if family == "lm" and draw(st.booleans()):
        config.update(tie_weights=True, embedding_size=sum(sizes[-1]))
    else:
        config["embedding_size"] = draw(st.integers(1, 6))
    if family == "classifier":
        config.update(num_classes=draw(st.integers(2, 4)), pooling=draw(st.sampled_from(["max", "mean", "last"])))
    return config
