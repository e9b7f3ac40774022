"""Check that two models compute the same function on random inputs.

Used after compaction, where exactness is the contract: the smaller model's outputs must
equal the pruned model's. Language models run two consecutive chunks so the carried
hidden state is compared too.
"""

from __future__ import annotations

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
        worst, scale = 0.0, 0.0
        for _ in range(2):
            tokens = torch.randint(0, config.vocab_size, (steps, batch), generator=generator)
            out_a, state_a = reference(tokens, state_a)
            out_b, state_b = candidate(tokens, state_b)
            worst = max(worst, float((out_a - out_b).abs().max()))
            scale = max(scale, float(out_a.abs().max()))
        return worst, scale
    tokens = torch.randint(1, config.vocab_size, (steps, batch), generator=generator)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0] = steps
    tokens[torch.arange(steps).unsqueeze(1) >= lengths.unsqueeze(0)] = 0
    out_a = reference(tokens, lengths)
    return float((out_a - candidate(tokens, lengths)).abs().max()), float(out_a.abs().max())


def max_output_difference(reference: nn.Module, candidate: nn.Module, config: ModelConfig, **kwargs: int) -> float:
    """Largest absolute difference between the two models' outputs (eval mode)."""
    return output_difference(reference, candidate, config, **kwargs)[0]
