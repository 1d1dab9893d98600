"""variant="classic" (the seed tutorial's "reset before" GRU) against a float64 NumPy oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxgru


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def numpy_classic(params, x, h0, lengths, num_layers, bidirectional):
  """The classic equations written out step by step: x (T, B, I), h0 (L*D, B, H)."""
  steps, batch = x.shape[:2]
  lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
  dirs = 2 if bidirectional else 1
  layer_in, finals = x, []
  for layer in range(num_layers):
    outs = []
    for d in range(dirs):
      sfx = f"_l{layer}" + ("_reverse" if d else "")
      w_ih, w_hh = params["weight_ih" + sfx], params["weight_hh" + sfx]
      b_ih = params.get("bias_ih" + sfx, np.zeros(w_ih.shape[0]))
      b_hh = params.get("bias_hh" + sfx, np.zeros(w_ih.shape[0]))
      hidden = w_hh.shape[1]
      (w_ir, w_iz, w_in), (w_hr, w_hz, w_hn) = np.split(w_ih, 3), np.split(w_hh, 3)
      (b_ir, b_iz, b_in), (b_hr, b_hz, b_hn) = np.split(b_ih, 3), np.split(b_hh, 3)
      out = np.zeros((steps, batch, hidden))
      final = np.zeros((batch, hidden))
      for b in range(batch):
        h = h0[layer * dirs + d, b]
        order = range(lengths[b]) if d == 0 else reversed(range(lengths[b]))
        for t in order:
          xt = layer_in[t, b]
          r = _sigmoid(w_ir @ xt + b_ir + w_hr @ h + b_hr)
          z = _sigmoid(w_iz @ xt + b_iz + w_hz @ h + b_hz)
          cand = np.tanh(w_in @ xt + b_in + w_hn @ (r * h) + b_hn)
          h = (1 - z) * h + z * cand
          out[t, b] = h
        final[b] = h
      outs.append(out)
      finals.append(final)
    layer_in = np.concatenate(outs, axis=-1)
  return layer_in, np.stack(finals)


@pytest.mark.parametrize(
  "layers, bidirectional, bias, lengths",
  [(1, False, True, None), (2, True, True, [4, 1, 3]), (3, True, False, None), (2, False, True, [2, 4, 4])],
)
def test_classic_matches_numpy(layers, bidirectional, bias, lengths, x64):
  params = jaxgru.init_gru_params(jax.random.key(layers), 3, 5, layers, bias, bidirectional, jnp.float64)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((4, 3, 3))
  h0 = rng.standard_normal((layers * (2 if bidirectional else 1), 3, 5))
  out, h_n = jaxgru.gru(params, x, h0, lengths=None if lengths is None else np.array(lengths), variant="classic")
  want_out, want_h = numpy_classic({k: np.asarray(v) for k, v in params.items()}, x, h0, lengths, layers, bidirectional)
  np.testing.assert_allclose(out, want_out, rtol=0, atol=1e-12)
  np.testing.assert_allclose(h_n, want_h, rtol=0, atol=1e-12)


def test_classic_differs_from_torch_variant(x64):
  params = jaxgru.init_gru_params(jax.random.key(0), 3, 5, dtype=jnp.float64)
  x = np.random.default_rng(0).standard_normal((4, 2, 3))
  assert np.abs(jaxgru.gru(params, x)[0] - jaxgru.gru(params, x, variant="classic")[0]).max() > 1e-3


def test_classic_cell_and_gradients(x64):
  params = jaxgru.init_gru_cell_params(jax.random.key(1), 3, 4, dtype=jnp.float64)
  rng = np.random.default_rng(1)
  x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
  seq_params = {f"{k}_l0": v for k, v in params.items()}
  _, h_seq = jaxgru.gru(seq_params, x[None], h[None], variant="classic")
  np.testing.assert_allclose(jaxgru.gru_cell(params, x, h, variant="classic"), h_seq[0], atol=1e-14)
  check_grads(lambda p, x, h: jaxgru.gru_cell(p, x, h, variant="classic"), (params, x, h), order=2, modes=["fwd", "rev"])
