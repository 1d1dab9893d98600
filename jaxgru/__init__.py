"""jaxgru: PyTorch's ``torch.nn.GRU``, ``nn.LSTM`` and ``nn.RNN`` in JAX and Flax, exactly.

- :func:`gru`, :func:`gru_cell`, :func:`lstm`, :func:`lstm_cell`, :func:`rnn`, :func:`rnn_cell`:
  the pure functional core, over torch-layout params.
- :class:`GRU`, :class:`LSTM`, :class:`RNN` and the cells :class:`GRUCell`, :class:`LSTMCell`,
  :class:`RNNCell`: Flax NNX modules; :mod:`jaxgru.linen`: Flax Linen modules.
- :func:`init_gru_params`, :func:`init_lstm_params`, :func:`init_rnn_params` and the cells':
  torch's initialisation.
- :func:`native_available`, :func:`native_status`: whether ``impl="native"`` (the C++ kernel) can run here;
  :func:`export_checks`: what ``jax.export`` needs to keep it in a CPU export.
"""

from jaxgru import linen
from jaxgru._core import gru, gru_cell, gru_step
from jaxgru._lstm import lstm, lstm_cell
from jaxgru._native_library import export_checks, native_available, native_status
from jaxgru._nnx import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from jaxgru._params import (
  GRUSpec,
  RecurrentSpec,
  expected_shapes,
  gru_spec,
  init_gru_cell_params,
  init_gru_params,
  init_lstm_cell_params,
  init_lstm_params,
  init_rnn_cell_params,
  init_rnn_params,
  lstm_spec,
  rnn_spec,
)
from jaxgru._rnn import rnn, rnn_cell

__version__ = "0.1.0"

__all__ = [
  "GRU",
  "GRUCell",
  "GRUSpec",
  "LSTM",
  "LSTMCell",
  "RNN",
  "RNNCell",
  "expected_shapes",
  "export_checks",
  "gru",
  "gru_cell",
  "gru_spec",
  "gru_step",
  "init_gru_cell_params",
  "init_gru_params",
  "init_lstm_cell_params",
  "init_lstm_params",
  "init_rnn_cell_params",
  "init_rnn_params",
  "linen",
  "lstm",
  "lstm_cell",
  "lstm_spec",
  "native_available",
  "native_status",
  "RecurrentSpec",
  "rnn",
  "rnn_cell",
  "rnn_spec",
]
