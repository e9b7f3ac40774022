"""Sentence classifier: embedding → (bi)directional recurrent layers → pooling → linear."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isscli.models.config import ModelConfig
from isscli.models.recurrent import RecurrentStack

PAD_INDEX = 0


class SequenceClassifier(nn.Module):
    """Time-major classifier; padding (index 0) is masked out of the pooling."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=PAD_INDEX)
        self.rnn = RecurrentStack(config.cell, config.embedding_size, config.hidden_sizes, config.dropout)
        self.classifier = nn.Linear(self.rnn.output_size, int(config.num_classes or 2))
        if config.init_range is not None:
            nn.init.uniform_(self.encoder.weight, -config.init_range, config.init_range)
            self.rnn.reset_parameters(config.init_range)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``tokens [T, B]`` (and true ``lengths [B]``) → class logits ``[B, C]``."""
        steps, batch = tokens.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long)
        lengths = lengths.to(tokens.device)
        output, _ = self.rnn(self.drop(self.encoder(tokens)), lengths=lengths)
        valid = (torch.arange(steps, device=tokens.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2)
        pooling = self.config.pooling
        if pooling == "max":
            pooled = output.masked_fill(~valid, float("-inf")).amax(dim=0)
        elif pooling == "mean":
            pooled = (output * valid).sum(dim=0) / lengths.clamp(min=1).unsqueeze(1).to(output.dtype)
        else:
            pooled = self._last_states(output, lengths)
        logits: torch.Tensor = self.classifier(self.drop(pooled))
        return logits

    def _last_states(self, output: Tensor, lengths: Tensor) -> Tensor:
        """Forward directions' output at the last valid step; reverse ones' at step 0."""
        last = output.gather(0, (lengths - 1).clamp(min=0).view(1, -1, 1).expand(1, -1, output.shape[2]))[0]
        sizes = self.config.hidden_sizes[-1]
        if len(sizes) == 1:
            return last
        return torch.cat([last[:, : sizes[0]], output[0, :, sizes[0] :]], dim=1)
