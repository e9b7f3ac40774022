"""Check that two models compute the same function on random inputs.

Used after compaction, where exactness is the contract: the smaller model's outputs must
equal the pruned model's. Language models run two consecutive chunks so the carried
hidden state is compared too. A NaN or an infinity in either model's outputs makes the
difference NaN: a check on it fails, never passes (``max`` over Python floats would drop a NaN).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from isscli.models.config import ModelConfig


@torch.no_grad()
def output_difference(
    reference: nn.Module, candidate: nn.Module, config: ModelConfig, steps: int = 12, batch: int = 4, seed: int = 0
) -> tuple[float, float]:
    """Largest absolute difference between the two models' outputs (eval mode), and the largest |output|.

    The second number lets callers judge the difference relative to the outputs' scale:
    trained models have large logits, where fp32 summation order alone moves the last digits.
    """
    generator = torch.Generator().manual_seed(seed)
    reference.eval()
    candidate.eval()
    if config.family in ("lm", "rhn"):
        state_a = state_b = None
        pairs = []
        for _ in range(2):
            tokens = torch.randint(0, config.vocab_size, (steps, batch), generator=generator)
            out_a, state_a = reference(tokens, state_a)
            out_b, state_b = candidate(tokens, state_b)
            pairs.append((out_a, out_b))
        return compare(pairs)
    tokens = torch.randint(1, config.vocab_size, (steps, batch), generator=generator)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    tokens[torch.arange(steps).unsqueeze(1) >= lengths.unsqueeze(0)] = 0
    return compare([(reference(tokens, lengths), candidate(tokens, lengths))])


def compare(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Largest |a − b| and largest |a| over the pairs; NaN for both when any output is not finite."""
    if not all(bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all()) for a, b in pairs):
        return math.nan, math.nan
    worst = max(float((a - b).abs().max()) for a, b in pairs)
    return worst, max(float(a.abs().max()) for a, _ in pairs)


def max_output_difference(reference: nn.Module, candidate: nn.Module, config: ModelConfig, **kwargs: int) -> float:
    """Largest absolute difference between the two models' outputs (eval mode)."""
    return output_difference(reference, candidate, config, **kwargs)[0]
