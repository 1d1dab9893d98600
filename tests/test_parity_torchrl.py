"""parity.torchrl: torchrl's recurrent GRUModule and LSTMModule and jaxgru with resets on the same rollouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import EXPLICIT_IMPLS, needs_native
from torchrl.modules import GRUModule, LSTMModule

import parity
from parity import torchrl  # noqa: F401  (parity.torchrl from now on)


def _module(dtype, bidirectional=False, seed=0):
  torch.manual_seed(seed)
  module = GRUModule(input_size=3, hidden_size=5, num_layers=2, bidirectional=bidirectional, in_key="obs", out_key="feat")
  module = module.to(dtype)
  with torch.no_grad():
    for p in module.parameters():  # every parameter, biases too
      p.uniform_(-0.6, 0.6)
  return module


def _rollout(seed=0, batch=4, steps=13):
  rng = np.random.default_rng(seed)
  is_init = rng.random((batch, steps)) < 0.2
  is_init[0, 0] = True  # a row that starts with a new episode
  is_init[1, 5:7] = True  # a one-step episode
  is_init[-1] = False  # a row with one episode
  return rng.standard_normal((batch, steps, 3)), is_init, rng.standard_normal((2, batch, 5))


@pytest.mark.parametrize("impl", EXPLICIT_IMPLS)
def test_recurrent_mode_equals_jaxgru_with_resets(precision, impl):
  """Outputs, h_n and the gradients of every parameter, x and h0 agree: float64 to 1e-10,
  float32 to 1e-5, whichever implementation runs."""
  x, is_init, h0 = _rollout()
  report = parity.torchrl.compare(_module(precision.torch_dtype), None, x, is_init, h0, impl=impl)
  assert report.ok, str(report)
  names = {row.name for row in report.rows}
  assert {"output", "h_n", "grad x", "grad h0", "grad weight_hh_l1", "grad bias_hh_l0"} <= names
  assert report.tol == precision.tol


def test_bidirectional_modules_agree_from_zero_states(precision):
  x, is_init, _ = _rollout(1)
  module = _module(precision.torch_dtype, bidirectional=True)
  report = parity.torchrl.compare(module, parity.torchrl.from_gru_module(module), x, is_init)
  assert report.ok, str(report)
  assert "grad weight_ih_l1_reverse" in {row.name for row in report.rows}
  with pytest.raises(ValueError, match="bidirectional GRUModule starts the reverse direction"):
    parity.torchrl.compare(module, None, x, is_init, np.zeros((4, 4, 5)))


def test_the_torchrl_run_restarts_at_every_is_init(x64):
  """run_gru_module itself: a row's output after a reset does not depend on what came before."""
  module = _module(torch.float64)
  x, is_init, h0 = _rollout()
  first = parity.torchrl.run_gru_module(module, x, is_init, h0)
  changed = x.copy()
  changed[1, :5] += 1.0  # row 1's first episode (steps 0-4); its next one starts at step 5
  second = parity.torchrl.run_gru_module(module, changed, is_init, h0)
  np.testing.assert_array_equal(first["output"][1, 5:], second["output"][1, 5:])
  assert not np.allclose(first["output"][1, :5], second["output"][1, :5])


def test_bad_rollouts_are_clear_errors():
  module = _module(torch.float32)
  x, is_init, h0 = _rollout()
  with pytest.raises(TypeError, match="module must be a torchrl.modules.GRUModule or torchrl.modules.LSTMModule, got GRU"):
    parity.torchrl.compare(torch.nn.GRU(3, 5), None, x, is_init)
  with pytest.raises(ValueError, match=r"is_init must be booleans of shape \(B, T\) = \(4, 13\)"):
    parity.torchrl.compare(module, None, x, is_init.astype(int))
  with pytest.raises(ValueError, match=r"x must be \(B, T, input_size=3\)"):
    parity.torchrl.compare(module, None, x[0], is_init)
  with pytest.raises(ValueError, match=r"h0 must have shape \(L\*D, B, H\) = \(2, 4, 5\)"):
    parity.torchrl.compare(module, None, x, is_init, h0[:1])


def _lstm_module(dtype, bidirectional=False, proj_size=2, seed=0):
  torch.manual_seed(seed)
  module = LSTMModule(
    input_size=3, hidden_size=5, num_layers=2, bidirectional=bidirectional, proj_size=proj_size, in_key="obs", out_key="feat"
  )
  module = module.to(dtype)
  with torch.no_grad():
    for p in module.parameters():  # every parameter, biases too
      p.uniform_(-0.6, 0.6)
  return module


@pytest.mark.parametrize("impl", ["fused", pytest.param("native", marks=needs_native)])
def test_lstm_module_restarts_h_and_c_like_jaxgru(precision, impl):
  """A projected 2-layer LSTMModule: outputs, h_n, c_n and the gradients of every parameter, x,
  h0 and c0 agree with jaxgru.lstm(..., resets=is_init)."""
  x, is_init, _ = _rollout()
  rng = np.random.default_rng(3)
  h0 = (rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 5)))
  report = parity.torchrl.compare(_lstm_module(precision.torch_dtype), None, x, is_init, h0, impl=impl)
  assert report.ok, str(report)
  names = {row.name for row in report.rows}
  assert {"output", "h_n", "c_n", "grad x", "grad h0", "grad c0", "grad weight_hr_l1", "grad bias_hh_l0"} <= names
  assert report.tol == precision.tol and "torchrl LSTMModule" in str(report)


def test_lstm_module_bidirectional_from_zero_states_and_its_errors(x64):
  x, is_init, _ = _rollout(1)
  module = _lstm_module(torch.float64, bidirectional=True, proj_size=0)
  model = parity.torchrl.from_lstm_module(module)
  assert model.batch_first and model.bidirectional and model.proj_size == 0
  report = parity.torchrl.compare(module, model, x, is_init)
  assert report.ok, str(report)
  assert "grad weight_ih_l1_reverse" in {row.name for row in report.rows}
  run = parity.torchrl.run_lstm_module(module, x, is_init)
  assert run["output"].shape == (4, 13, 10) and run["c_n"].shape == (4, 4, 5)
  with pytest.raises(TypeError, match="module must be a torchrl.modules.GRUModule, got LSTMModule"):
    parity.torchrl.from_gru_module(module)
  with pytest.raises(TypeError, match="module must be a torchrl.modules.LSTMModule, got GRUModule"):
    parity.torchrl.run_lstm_module(_module(torch.float64), x, is_init)
  projected = _lstm_module(torch.float64)
  with pytest.raises(TypeError, match=r"an LSTM's h0 must be the pair \(h0, c0\)"):
    parity.torchrl.compare(projected, None, x, is_init, np.zeros((2, 4, 2)))
  with pytest.raises(ValueError, match=r"h0 must have shape \(L\*D, B, P\) = \(2, 4, 2\)"):
    parity.torchrl.compare(projected, None, x, is_init, (np.zeros((2, 4, 5)), np.zeros((2, 4, 5))))
