"""Word-level language model: embedding → stacked recurrent layers → linear decoder.

Parameter names match PyTorch's word-language-model example (``encoder.weight``,
``rnn.weight_ih_l0``, ``decoder.weight``), so its checkpoints load as they are.
"""

from __future__ import annotations

from torch import Tensor, nn

from isscli.models.config import ModelConfig
from isscli.models.recurrent import LayerState, RecurrentStack


class LanguageModel(nn.Module):
    """Time-major LM; dropout on the embedding, between layers and before the decoder (Zaremba)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.vocab_size, config.embedding_size)
        self.rnn = RecurrentStack(config.cell, config.embedding_size, config.hidden_sizes, config.dropout)
        self.decoder = nn.Linear(self.rnn.output_size, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.encoder.weight
        if config.init_range is not None:
            nn.init.uniform_(self.encoder.weight, -config.init_range, config.init_range)
            self.rnn.reset_parameters(config.init_range)
            if not config.tie_weights:
                nn.init.uniform_(self.decoder.weight, -config.init_range, config.init_range)
            nn.init.zeros_(self.decoder.bias)

    def forward(
        self, tokens: Tensor, state: list[list[LayerState]] | None = None
    ) -> tuple[Tensor, list[list[LayerState]]]:
        """``tokens [T, B]`` → logits ``[T, B, V]`` and the state to carry to the next batch."""
        embedded = self.drop(self.encoder(tokens))
        output, state = self.rnn(embedded, state)
        return self.decoder(self.drop(output)), state
