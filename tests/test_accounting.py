"""Parameter and multiply-add accounting: the paper's numbers, and agreement with built models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from isscli.iss.accounting import multiply_adds_per_step, parameter_bytes, parameter_count, recurrent_multiply_adds
from isscli.models import ModelConfig, build_model, preset_config
from isscli.runtime.unstructured import weight_matrices


def large(*sizes: int) -> ModelConfig:
    return ModelConfig.from_dict({**preset_config("large"), "hidden_sizes": [[s] for s in sizes]})


def test_paper_parameter_counts() -> None:
    """Table 1: 66.0M weights for 2×1500, 21.8M for ISS (373, 315); embedding and decoder bias included."""
    assert parameter_count(large(1500, 1500)) == 66_034_000
    assert parameter_count(large(373, 315)) == 21_826_900
    assert f"{parameter_count(large(1500, 1500)) / 1e6:.1f}M" == "66.0M"
    assert f"{parameter_count(large(373, 315)) / 1e6:.1f}M" == "21.8M"


def test_paper_multiply_add_reduction() -> None:
    """Table 1's 7.48×: 4·H·(in+H) per layer plus H_last·V for the decoder, per step."""
    dense, iss = large(1500, 1500), large(373, 315)
    assert multiply_adds_per_step(dense) == 4 * 1500 * 3000 * 2 + 1500 * 10_000 == 51_000_000
    assert multiply_adds_per_step(iss) == 4 * 373 * 1873 + 4 * 315 * 688 + 315 * 10_000 == 6_811_396
    reduction = multiply_adds_per_step(dense) / multiply_adds_per_step(iss)
    assert reduction == pytest.approx(7.4875, abs=1e-4)
    assert int(reduction * 100) / 100 == 7.48  # the paper truncates


def test_bytes_follow_the_dtype() -> None:
    config = large(373, 315)
    assert parameter_bytes(config) == 4 * 21_826_900
    assert parameter_bytes(config, torch.float16) == 2 * 21_826_900


def test_classifier_head_is_not_per_step() -> None:
    config = ModelConfig.from_dict(preset_config("bilstm-classifier"))
    assert multiply_adds_per_step(config) == recurrent_multiply_adds(config) == 2 * 4 * 128 * (128 + 128)


def test_highway_network_counts_match_the_paper() -> None:
    """The RHN baseline (width 830, depth 10, tied decoder) has 23.5M parameters."""
    config = ModelConfig.from_dict(preset_config("rhn"))
    assert f"{parameter_count(config) / 1e6:.1f}M" == "23.5M"
    assert parameter_count(config) == sum(p.numel() for p in build_model(config).parameters())
    assert multiply_adds_per_step(config) == 11 * 2 * 830 * 830 + 830 * 10_000


@st.composite
def configs(draw: st.DrawFn) -> ModelConfig:
    family = draw(st.sampled_from(["lm", "classifier"]))
    bidirectional = family == "classifier" and draw(st.booleans())
    layers = draw(st.integers(1, 3))
    sizes = [[draw(st.integers(1, 9)) for _ in range(2 if bidirectional else 1)] for _ in range(layers)]
    tied = family == "lm" and draw(st.booleans())
    embedding = sum(sizes[-1]) if tied else draw(st.integers(1, 9))
    return ModelConfig.from_dict({
        "family": family, "vocab_size": draw(st.integers(2, 30)), "embedding_size": embedding,
        "hidden_sizes": sizes, "cell": draw(st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"])),
        "tie_weights": tied, "num_classes": draw(st.integers(2, 5)) if family == "classifier" else None,
    })


@settings(max_examples=40, deadline=None)
@given(configs())
def test_counts_agree_with_built_models(config: ModelConfig) -> None:
    """From the config alone, the same numbers as the model's tensors: every parameter, and one
    multiply-add per weight of each matrix used at every step."""
    model = build_model(config)
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())
    matrices = weight_matrices(model)
    per_step = {name: m for name, m in matrices.items() if config.family == "lm" or not name.startswith("classifier")}
    assert multiply_adds_per_step(config) == sum(m.numel() for m in per_step.values())
