"""Drop-in ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with per-layer and per-direction hidden sizes (see :mod:`.recurrent`)."""

from isscli.nn.recurrent import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN"]
