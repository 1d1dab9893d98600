"""parity.compare / parity.assert_close: what the report holds and prints, that it catches a
difference, and that it refuses to compare modules that are not configured alike."""

from __future__ import annotations

import copy

import jax
import numpy as np
import pytest
import torch
from _helpers import random_torch
from flax import nnx

import jaxgru
import parity


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _gru(**config):
  return random_torch(torch.nn.GRU(3, 4, **config), 0, torch.float64)


X = np.random.default_rng(0).standard_normal((5, 2, 3))


def test_report_rows_cover_outputs_and_every_gradient():
  source = _gru(num_layers=2, bidirectional=True)
  h0 = np.random.default_rng(1).standard_normal((4, 2, 4))
  report = parity.compare(source, parity.from_torch(source), X, h0, lengths=np.array([5, 2]))
  names = [row.name for row in report.rows]
  assert names[:2] == ["output", "h_n"]
  assert {f"grad {k}" for k in source.state_dict()} | {"grad x", "grad h0"} == set(names[2:])
  assert report.ok and report.tol == 1e-10
  assert all(row.max_abs < 1e-12 and row.reference > 0 for row in report.rows)
  text = str(report)
  assert "torch float64 cpu vs jaxgru float64 cpu" in text
  assert "grad weight_hh_l1_reverse" in text and "max abs" in text and "max rel" in text
  no_grads = parity.compare(source, parity.from_torch(source), X, grads=False)
  assert [row.name for row in no_grads.rows] == ["output", "h_n"]


def test_a_changed_weight_is_caught_and_shown():
  source = _gru()
  model = parity.from_torch(source)
  model.bias_hh_l0[...] = model.bias_hh_l0[...].at[9].add(1e-6)  # b_hn: only r * (W_hn h + b_hn) sees it
  report = parity.compare(source, model, X)
  assert not report.ok and "output" in [row.name for row in report.failures]
  with pytest.raises(AssertionError, match=r"(?s)disagree.*output.*NO"):
    parity.assert_close(source, model, X)


def test_other_jax_sides_params_linen_and_torch_tensors():
  source = _gru(batch_first=True)
  x = torch.from_numpy(np.swapaxes(X, 0, 1).copy()).requires_grad_(True)
  parity.assert_close(source, parity.state_dict_to_params(source.state_dict()), x)
  parity.assert_close(source, parity.from_torch(source, linen=True), x)
  cell = random_torch(torch.nn.GRUCell(3, 4), 0, torch.float64)
  report = parity.assert_close(cell, parity.from_torch(cell), X[0], X[1, :, :1].repeat(4, axis=1))
  assert {"grad x", "grad h0"} <= {row.name for row in report.rows}


def test_mixed_precision_gets_the_looser_tolerance():
  source = _gru()
  model = parity.from_torch(copy.deepcopy(source).float())
  with jax.default_matmul_precision("highest"):
    report = parity.compare(source, model, X)
  assert report.tol == 1e-5 and report.ok


@pytest.mark.parametrize(
  ("jax_module", "kwargs", "error", "match"),
  [
    (lambda s: parity.from_torch(torch.nn.GRU(3, 4, batch_first=True, dtype=torch.float64)), {}, ValueError, "batch_first"),
    (lambda s: jaxgru.GRU(3, 4, num_layers=2, param_dtype=np.float64, rngs=nnx.Rngs(0)), {}, ValueError, "num_layers"),
    (lambda s: jaxgru.GRU(3, 4, variant="classic", param_dtype=np.float64, rngs=nnx.Rngs(0)), {}, ValueError, "classic"),
    (lambda s: parity.from_torch(torch.nn.GRUCell(3, 4, dtype=torch.float64)), {}, TypeError, "must be a jaxgru.GRU, its params"),
    (lambda s: parity.from_torch(s), {"lengths": np.array([5, 2, 1])}, ValueError, "lengths must be 2 integers"),
    (lambda s: parity.from_torch(s), {"lengths": np.array([6, 2])}, ValueError, r"lengths must lie in \[1, 5\]"),
    (lambda s: parity.from_torch(s), {"lengths": np.array([5.0, 2.0])}, ValueError, "integers"),
  ],
)
def test_bad_comparisons_are_refused(jax_module, kwargs, error, match):
  source = _gru()
  with pytest.raises(error, match=match):
    parity.compare(source, jax_module(source), X, **kwargs)


def test_compare_needs_a_torch_reference_and_leaves_its_mode():
  with pytest.raises(TypeError, match="torch_module"):
    parity.compare(jaxgru.GRU(3, 4, rngs=nnx.Rngs(0)), jaxgru.GRU(3, 4, rngs=nnx.Rngs(0)), X)
  source = _gru(num_layers=2, dropout=0.5).train()
  assert parity.compare(source, parity.from_torch(source), X).ok  # dropout off on both sides
  assert source.training


# torch's other layers and cells: (constructor, the initial state's shapes; an LSTM's is a pair)
OTHERS = {
  "lstm-proj-bidirectional": (lambda: torch.nn.LSTM(3, 4, 2, bidirectional=True, proj_size=2), ((4, 2, 2), (4, 2, 4))),
  "rnn-relu": (lambda: torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True), ((1, 2, 4),)),
  "lstm-cell": (lambda: torch.nn.LSTMCell(3, 4), ((2, 4), (2, 4))),
  "rnn-cell": (lambda: torch.nn.RNNCell(3, 4, nonlinearity="relu"), ((2, 4),)),
}


@pytest.mark.parametrize("name", OTHERS)
def test_lstm_and_rnn_rows_cover_every_state_part_and_gradient(name):
  """An LSTM's c_n and c0 are compared beside h_n and h0; an RNN keeps its nonlinearity; cells
  run one step; every parameter randomised, float64 to 1e-12."""
  make, shapes = OTHERS[name]
  source = random_torch(make(), 0, torch.float64)
  rng = np.random.default_rng(2)
  cell = "cell" in name
  x = X[0] if cell else (np.swapaxes(X, 0, 1) if getattr(source, "batch_first", False) else X)
  state = tuple(rng.standard_normal(s) for s in shapes)
  lstm = isinstance(source, torch.nn.LSTM | torch.nn.LSTMCell)
  h0 = state if lstm else state[0]
  lengths = None if cell else np.array([5, 2])
  report = parity.compare(source, parity.from_torch(source), x, h0, lengths=lengths)
  names = [row.name for row in report.rows]
  assert names[: 3 if lstm else 2] == (["output", "h_n", "c_n"] if lstm else ["output", "h_n"])
  inputs = {"grad x", "grad h0"} | ({"grad c0"} if lstm else set())
  assert {f"grad {k}" for k in source.state_dict()} | inputs == set(names[3 if lstm else 2 :])
  assert report.ok and all(row.max_abs < 1e-12 for row in report.rows)
  assert all(row.reference > 0 for row in report.rows if not (cell and row.name == "grad c0"))
  parity.assert_close(source, parity.from_torch(source, linen=True), x, h0, lengths=lengths)
  parity.assert_close(source, parity.state_dict_to_params(source.state_dict()), x, h0, lengths=lengths)


def test_lstm_and_rnn_differences_are_caught_and_refused():
  source = random_torch(torch.nn.LSTM(3, 4, proj_size=2), 0, torch.float64)
  model = parity.from_torch(source)
  model.weight_hr_l0[...] = model.weight_hr_l0[...].at[1, 3].add(1e-6)
  report = parity.compare(source, model, X)
  assert not report.ok and {"output", "h_n", "grad weight_hr_l0"} <= {row.name for row in report.failures}
  other = parity.from_torch(random_torch(torch.nn.LSTM(3, 4, proj_size=3), 0, torch.float64))
  with pytest.raises(ValueError, match="proj_size: torch 2, JAX 3"):
    parity.compare(source, other, X)
  with pytest.raises(TypeError, match=r"an LSTM's h0 must be the pair \(h0, c0\)"):
    parity.compare(source, model, X, np.zeros((1, 2, 2)))
  rnn = random_torch(torch.nn.RNN(3, 4, nonlinearity="relu"), 0, torch.float64)
  tanh = jaxgru.RNN(3, 4, nonlinearity="tanh", param_dtype=np.float64, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="nonlinearity: torch 'relu', JAX 'tanh'"):
    parity.compare(rnn, tanh, X)
  with pytest.raises(TypeError, match="must be a jaxgru.RNN"):
    parity.compare(rnn, model, X)
