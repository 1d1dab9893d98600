"""torch's own tests of ``nn.LSTM``, ``nn.RNN`` and their cells (``test/test_nn.py``), ported to jaxgru.

Each keeps what torch's test checks and says which one it is: packed sequences against each sequence
run alone (``test_variable_sequence``), no initial state against zeros
(``test_rnn_initial_hidden_state``), refused shapes (``test_rnn_args_check``), the cells stepped six
times and differentiated (``test_RNN_cell``, ``test_LSTM_cell``), the nonlinearity's choices
(``test_RNN_nonlinearity``) and a projected LSTM's shapes (``test_LSTM_proj``'s).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgru

MODES = ["LSTM", "RNN_TANH", "RNN_RELU"]


def _layer(mode: str, params, x, state=None, **options):
  """``(output, state parts)`` of the jaxgru layer for torch's ``mode``."""
  if mode == "LSTM":
    out, (h, c) = jaxgru.lstm(params, x, state, **options)
    return out, (h, c)
  out, h = jaxgru.rnn(params, x, None if state is None else state[0], nonlinearity=mode[4:].lower(), **options)
  return out, (h,)


def _params(mode: str, key, input_size, hidden_size, num_layers=1, bidirectional=False, proj_size=0, dtype=jnp.float64):
  if mode == "LSTM":
    return jaxgru.init_lstm_params(key, input_size, hidden_size, num_layers, True, bidirectional, proj_size, dtype)
  return jaxgru.init_rnn_params(key, input_size, hidden_size, num_layers, True, bidirectional, dtype)


@pytest.mark.parametrize("mode", ["LSTM", "RNN_TANH"])
def test_variable_sequence(mode, x64):
  """torch's ``test_variable_sequence``: a padded batch with lengths gives, for every sequence, the
  outputs (zero past its length) and final states of that sequence run alone, both directions, two
  layers, with and without a projection."""
  lengths = [6, 6, 3, 1, 1]
  proj = 2 if mode == "LSTM" else 0
  params = _params(mode, jax.random.key(0), 3, 4, num_layers=2, bidirectional=True, proj_size=proj)
  x = jax.random.normal(jax.random.key(1), (6, len(lengths), 3), jnp.float64)
  out, state = jax.jit(lambda x: _layer(mode, params, x, lengths=np.array(lengths)))(x)
  alone = jax.jit(lambda x: _layer(mode, params, x[:, None]), static_argnums=())
  for b, n in enumerate(lengths):
    want_out, want_state = alone(x[:n, b])
    np.testing.assert_allclose(out[:n, b], want_out[:, 0], atol=1e-12)
    np.testing.assert_array_equal(out[n:, b], 0.0)
    for got, want in zip(state, want_state, strict=True):
      np.testing.assert_allclose(got[:, b], want[:, 0], atol=1e-12)


@pytest.mark.parametrize("mode", ["LSTM", "RNN_TANH"])
def test_rnn_initial_hidden_state(mode, x64):
  """torch's ``test_rnn_initial_hidden_state``: no initial state is the zero state."""
  params = _params(mode, jax.random.key(2), 3, 4, num_layers=2)
  x = jax.random.normal(jax.random.key(3), (5, 6, 3), jnp.float64)
  zeros = tuple(jnp.zeros((2, 6, 4), jnp.float64) for _ in range(2 if mode == "LSTM" else 1))
  for got, want in zip(_layer(mode, params, x), _layer(mode, params, x, zeros), strict=True):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), got, want)


@pytest.mark.parametrize("mode", MODES)
def test_rnn_args_check(mode):
  """torch's ``test_rnn_args_check``: a wrong input size, batch of the state, number of layers times
  directions, or hidden size (an LSTM's h and c apart) is refused, naming the argument."""
  input_size, hidden_size, num_layers, batch, steps = 3, 5, 2, 4, 6
  params = _params(mode, jax.random.key(4), input_size, hidden_size, num_layers, bidirectional=True, dtype=jnp.float32)
  lstm = mode == "LSTM"

  def run(x_shape, h_shape, c_shape=(2 * num_layers, batch, hidden_size)):
    state = (jnp.zeros(h_shape), jnp.zeros(c_shape)) if lstm else (jnp.zeros(h_shape),)
    return _layer(mode, params, jnp.zeros(x_shape), state)

  good_h = (2 * num_layers, batch, hidden_size)
  run((steps, batch, input_size), good_h)  # the right shapes run
  with pytest.raises(ValueError, match=r"x.shape\[-1\] must be input_size=3"):
    run((steps, batch, input_size + 1), good_h)
  h_name = r"hx\[0\] \(h0\)" if lstm else "h0"
  for bad in (
    (2 * num_layers, batch + 1, hidden_size),
    (num_layers, batch, hidden_size),
    (2 * num_layers, batch, hidden_size + 1),
  ):
    with pytest.raises(ValueError, match=rf"{h_name} must have shape \(4, 4, 5\)"):
      run((steps, batch, input_size), bad)
  if lstm:
    with pytest.raises(ValueError, match=r"hx\[1\] \(c0\) must have shape \(4, 4, 5\)"):
      run((steps, batch, input_size), good_h, (2 * num_layers, batch, hidden_size + 1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell(mode, bias, x64):
  """torch's ``test_RNN_cell`` and ``test_LSTM_cell``: a cell of input 10 and hidden 20 stepped six
  times over a batch of 3, then differentiated through all six steps (every gradient finite, the
  parameters' non-zero)."""
  rng = np.random.default_rng(5)
  x, h, c = rng.standard_normal((3, 10)), rng.standard_normal((3, 20)), rng.standard_normal((3, 20))
  if mode == "LSTM":
    params = jaxgru.init_lstm_cell_params(jax.random.key(6), 10, 20, bias, jnp.float64)

    def run(params, h, c):
      for _ in range(6):
        h, c = jaxgru.lstm_cell(params, x, (h, c))
      return jnp.sum(h + c)
  else:
    params = jaxgru.init_rnn_cell_params(jax.random.key(6), 10, 20, bias, jnp.float64)

    def run(params, h, c):
      for _ in range(6):
        h = jaxgru.rnn_cell(params, x, h, nonlinearity=mode[4:].lower())
      return jnp.sum(h)

  grads = jax.jit(jax.grad(run, argnums=(0, 1, 2)))(params, h, c)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert all(np.any(g != 0) for g in jax.tree.leaves(grads[0]))
  assert set(grads[0]) == ({"weight_ih", "weight_hh", "bias_ih", "bias_hh"} if bias else {"weight_ih", "weight_hh"})


def test_rnn_nonlinearity():
  """torch's ``test_RNN_nonlinearity``: tanh by default, relu on request, anything else refused."""
  params = jaxgru.init_rnn_params(jax.random.key(7), 1, 10)
  x = -jnp.ones((3, 2, 1))
  tanh, _ = jaxgru.rnn(params, x)
  relu, _ = jaxgru.rnn(params, x, nonlinearity="relu")
  assert np.all(np.asarray(relu) >= 0) and np.any(np.asarray(tanh) < 0)
  with pytest.raises(ValueError, match="Unknown nonlinearity 'garbage'"):
    jaxgru.rnn(params, x, nonlinearity="garbage")
  with pytest.raises(ValueError, match="Unknown nonlinearity 'garbage'"):
    jaxgru.RNNCell(1, 10, nonlinearity="garbage", rngs=__import__("flax").nnx.Rngs(0))


def test_lstm_proj_shapes():
  """A projected LSTM's shapes, as torch's tests of ``proj_size`` check them: h and every output of
  size P, c of size H, every layer above the first reading D*P features."""
  params = jaxgru.init_lstm_params(jax.random.key(8), 3, 7, num_layers=3, bidirectional=True, proj_size=2)
  assert params["weight_ih_l1"].shape == (28, 4) and params["weight_hh_l2_reverse"].shape == (28, 2)
  shapes = lambda x: jax.eval_shape(lambda p, x: jaxgru.lstm(p, x), params, x)  # noqa: E731
  out, (h, c) = shapes(jnp.ones((5, 4, 3)))
  assert out.shape == (5, 4, 4) and h.shape == (6, 4, 2) and c.shape == (6, 4, 7)
  out, (h, c) = shapes(jnp.ones((5, 3)))  # unbatched
  assert out.shape == (5, 4) and h.shape == (6, 2) and c.shape == (6, 7)
