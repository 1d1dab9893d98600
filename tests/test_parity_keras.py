"""parity.keras against Keras 3's own GRU, LSTM and SimpleRNN layers on the JAX backend (and
torch's LSTM and RNN through them): both ``reset_after`` modes, ``use_bias``, stacks,
``Bidirectional``, ``go_backwards``, masks against ``lengths``, the SimpleRNN's tanh and relu, and
the refusals where Keras computes something torch has no twin for."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxgru
import parity
from parity.proof.report import TOLERANCES, _row

pk = pytest.importorskip("parity.frameworks.keras", reason="needs the keras extra")  # imports keras with KERAS_BACKEND=jax

keras = pk.keras
B, T, I, H = 3, 5, 3, 4
LENGTHS = np.array([5, 2, 1])


def test_keras_runs_on_jax_and_the_backend_variable_does_not_leak():
  env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
  code = "import os; from parity import keras as pk; print(pk.keras.backend.backend(), 'KERAS_BACKEND' in os.environ)"
  root = pathlib.Path(__file__).parent.parent
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=root)
  assert out.stdout.split() == ["jax", "False"]


def random_params(num_layers: int, bidirectional: bool, bias: bool, dtype, seed: int = 0) -> dict[str, jax.Array]:
  shapes = jaxgru.expected_shapes(I, H, num_layers, bias, bidirectional)
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.uniform(-0.6, 0.6, s).astype(dtype)) for k, s in shapes.items()}


def inputs(num_layers: int, bidirectional: bool, dtype, seed: int = 1):
  rng = np.random.default_rng(seed)
  h0 = rng.standard_normal((num_layers * (1 + bidirectional), B, H)).astype(dtype)
  return rng.standard_normal((B, T, I)).astype(dtype), h0


def assert_forward_close(got, want, tol):
  """Keras's (output, h_n) against jaxgru's, through parity's one comparison row."""
  for name, g, w in zip(("output", "h_n"), got, want, strict=True):
    row = _row(name, np.asarray(g), np.asarray(w))
    assert row.ok(tol), f"{name}: max abs {row.max_abs:.2e} past {tol:g}"


def exact_tanh(layers):
  """Keras 3.15's ``ops.tanh`` on JAX computes float64 input in float32 (its type promotion takes
  a Python float as float32); jnp.tanh keeps float64, so the maths can be proved to 1e-10."""
  for layer in layers:
    for gru in (layer.forward_layer, layer.backward_layer) if isinstance(layer, keras.layers.Bidirectional) else (layer,):
      gru.cell.activation = jnp.tanh
  return layers


CONFIGS = [(1, False, True, "torch"), (2, True, True, "torch"), (2, False, False, "classic"), (1, True, True, "classic")]


@pytest.mark.parametrize("num_layers, bidirectional, bias, variant", CONFIGS)
def test_to_keras_computes_jaxgru_float32(num_layers, bidirectional, bias, variant):
  with jax.default_matmul_precision("highest"):
    params = random_params(num_layers, bidirectional, bias, np.float32)
    x, h0 = inputs(num_layers, bidirectional, np.float32)
    layers = pk.to_keras(params, variant=variant)
    assert [type(layer) for layer in layers] == [keras.layers.Bidirectional if bidirectional else keras.layers.GRU] * num_layers
    assert all((la.forward_layer if bidirectional else la).cell.reset_after == (variant == "torch") for la in layers)
    for h, lengths in ((None, None), (h0, LENGTHS)):
      want = jaxgru.gru(params, x, h, batch_first=True, lengths=lengths, variant=variant)
      assert_forward_close(pk.run_keras(layers, x, h, lengths), want, TOLERANCES["float32"])


@pytest.mark.parametrize("variant, num_layers", [("torch", 2), ("classic", 1)])
def test_float64_maths(variant, num_layers, x64):
  with jax.default_matmul_precision("highest"):
    params = random_params(num_layers, True, True, np.float64, seed=3)
    x, h0 = inputs(num_layers, True, np.float64)
    layers = exact_tanh(pk.to_keras(params, variant=variant))
    assert layers[0].forward_layer.cell.kernel.dtype == "float64"
    want = jaxgru.gru(params, x, h0, batch_first=True, lengths=LENGTHS, variant=variant)
    assert_forward_close(pk.run_keras(layers, x, h0, LENGTHS), want, 1e-10)


def keras_stack(reset_after: bool, use_bias: bool, dtype: str = "float32", seed: int = 0):
  """Keras's own layers, built and randomised by Keras's API: a GRU over a Bidirectional GRU."""
  options = dict(reset_after=reset_after, use_bias=use_bias, return_sequences=True, return_state=True, dtype=dtype)
  layers = [keras.layers.Bidirectional(keras.layers.GRU(H, **options), dtype=dtype), keras.layers.GRU(H, **options)]
  layers[0].build((None, None, I))
  layers[1].build((None, None, 2 * H))
  rng = np.random.default_rng(seed)
  for layer in layers:
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(dtype) for w in layer.get_weights()])
  return layers


@pytest.mark.parametrize("reset_after, use_bias", [(True, True), (False, True), (True, False)])
def test_from_keras_computes_keras(reset_after, use_bias, x64):
  """Layers Keras built, stacked unevenly (Bidirectional, then one direction): not a torch GRU."""
  with jax.default_matmul_precision("highest"):
    layers = exact_tanh(keras_stack(reset_after, use_bias, "float64"))
    with pytest.raises(ValueError, match="does not stack"):
      pk.keras_to_params(layers, variant="torch" if reset_after else "classic")
    layers = layers[:1]  # one Bidirectional layer
    x, h0 = inputs(1, True, np.float64)
    model = pk.from_keras(layers)
    assert model.variant == ("torch" if reset_after else "classic") and model.bias == use_bias and model.batch_first
    for h, lengths in ((None, None), (h0, LENGTHS)):
      assert_forward_close(model(x, h, lengths=lengths), pk.run_keras(layers, x, h, lengths), 1e-10)


def test_a_keras_sequential_stack_float32():
  with jax.default_matmul_precision("highest"):
    options = dict(return_sequences=True)
    model = keras.Sequential(
      [
        keras.Input((None, I)),
        keras.layers.Bidirectional(keras.layers.GRU(H, **options)),
        keras.layers.Bidirectional(keras.layers.GRU(H, **options)),
      ]
    )
    rng = np.random.default_rng(5)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    x, _ = inputs(2, True, np.float32)
    jax_model = pk.from_keras(model)
    assert (jax_model.num_layers, jax_model.bidirectional) == (2, True)
    row = _row("output", np.asarray(jax_model(x)[0]), np.asarray(model(x)))
    assert row.ok(TOLERANCES["float32"]), row


def test_round_trips():
  torch_variant = random_params(2, True, True, np.float32)
  back = pk.keras_to_params(pk.to_keras(torch_variant))
  assert all(np.array_equal(back[k], v) for k, v in torch_variant.items()) and back.keys() == torch_variant.keys()
  classic = random_params(1, False, True, np.float32)
  back = pk.keras_to_params(pk.to_keras(classic, variant="classic"), variant="classic")
  for kind in ("weight_ih_l0", "weight_hh_l0"):
    assert np.array_equal(back[kind], classic[kind])
  folded = np.asarray(classic["bias_ih_l0"], np.float64) + np.asarray(classic["bias_hh_l0"])
  assert np.array_equal(back["bias_ih_l0"], folded.astype(np.float32)) and not np.any(back["bias_hh_l0"])


def test_go_backwards(x64):
  with jax.default_matmul_precision("highest"):
    layer = exact_tanh(pk.to_keras(random_params(1, False, True, np.float64), go_backwards=True))[0]
    assert layer.go_backwards
    params = pk.keras_to_params(layer)
    x, h0 = inputs(1, False, np.float64)
    got = pk.run_keras([layer], x, h0)
    assert_forward_close(got, jaxgru.gru(params, x[:, ::-1], h0, batch_first=True), 1e-10)
    with pytest.raises(ValueError, match="go_backwards=True: jaxgru.GRU has no such layer"):
      pk.from_keras(layer)
    with pytest.raises(ValueError, match="go_backwards=True needs a one-layer"):
      pk.to_keras(random_params(2, False, True, np.float64), go_backwards=True)


def test_a_lone_keras_gru_repeats_its_output_over_the_mask(x64):
  """Keras's default: the last valid output repeated where torch and jaxgru output zeros."""
  with jax.default_matmul_precision("highest"):
    params = random_params(1, False, True, np.float64)
    layer = exact_tanh(pk.to_keras(params, zero_output_for_mask=False))
    x, h0 = inputs(1, False, np.float64)
    out, h_n = pk.run_keras(layer, x, h0, LENGTHS)
    want_out, want_h = jaxgru.gru(params, x, h0, batch_first=True, lengths=LENGTHS)
    np.testing.assert_allclose(h_n, want_h, atol=1e-10)
    valid = np.arange(T)[None, :] < LENGTHS[:, None]
    np.testing.assert_allclose(out[valid], np.asarray(want_out)[valid], atol=1e-10)
    last = np.asarray(want_out)[np.arange(B), LENGTHS - 1]
    np.testing.assert_allclose(out[1, 2:], np.broadcast_to(last[1], (T - 2, H)), atol=1e-10)


def _gru(**kwargs):
  layer = keras.layers.GRU(H, **kwargs)
  layer.build((None, None, I))
  return layer


@pytest.mark.parametrize(
  "layer, message",
  [
    (lambda: _gru(recurrent_dropout=0.1), "recurrent_dropout=0.1"),
    (lambda: _gru(dropout=0.2), "dropout=0.2"),
    (lambda: _gru(activation="relu"), "activation='relu'"),
    (lambda: _gru(recurrent_activation="hard_sigmoid"), "only tanh, sigmoid map"),
    (lambda: keras.layers.GRU(H), "has no weights yet"),
    (lambda: keras.layers.Bidirectional(_gru(), merge_mode="sum"), "merge_mode='sum'"),
    (lambda: _gru(reset_after=False), "read it with variant='classic'"),
    (lambda: [_gru(go_backwards=True), _gru()], "go_backwards=True: only a lone"),
  ],
)
def test_refusals(layer, message):
  with pytest.raises(ValueError, match=message):
    pk.keras_to_params(layer())


def test_type_errors():
  with pytest.raises(TypeError, match="must be a keras.layers.GRU, LSTM or SimpleRNN"):
    pk.keras_to_params([keras.layers.Dense(H)])
  with pytest.raises(TypeError, match="expected a keras.layers.GRU"):
    pk.keras_to_params(random_params(1, False, True, np.float32))
  with pytest.raises(ValueError, match="variant must be"):
    pk.to_keras(random_params(1, False, True, np.float32), variant="keras")
  layer = pk.to_keras(random_params(1, False, True, np.float32), return_state=False)
  with pytest.raises(ValueError, match="return_state=True"):
    pk.run_keras(layer, np.zeros((B, T, I), np.float32))


def test_run_keras_checks_its_inputs():
  layers = pk.to_keras(random_params(2, True, True, np.float32))
  x = np.zeros((B, T, I), np.float32)
  with pytest.raises(ValueError, match=r"x must be 3-D \(B, T, I\)"):
    pk.run_keras(layers, x[0])
  with pytest.raises(ValueError, match="input size 3"):
    pk.run_keras(layers, np.zeros((B, T, I + 1), np.float32))
  with pytest.raises(ValueError, match=r"h0 must have shape \(L\*D, B, H\) = \(4, 3, 4\)"):
    pk.run_keras(layers, x, np.zeros((2, B, H), np.float32))
  with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\]"):
    pk.run_keras(layers, x, lengths=np.array([5, 0, 1]))


# the LSTM and the SimpleRNN

CELL_CONFIGS = [
  ("LSTM", {}, 2, True, True),
  ("LSTM", {}, 1, False, False),
  ("RNN", {"nonlinearity": "relu"}, 2, True, True),
  ("RNN", {"nonlinearity": "tanh"}, 1, False, True),
]


def torch_layer(mode, options, num_layers, bidirectional, bias, dtype, seed=0):
  layer = getattr(torch.nn, mode)(I, H, num_layers, bias=bias, batch_first=True, bidirectional=bidirectional, **options)
  layer = layer.to(torch.float64 if dtype == np.float64 else torch.float32)
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in layer.parameters():  # every parameter, biases included
      p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) * 1.2 - 0.6)
  return layer


def cell_inputs(mode, num_layers, bidirectional, dtype):
  x, h0 = inputs(num_layers, bidirectional, dtype)
  c0 = np.random.default_rng(2).standard_normal(h0.shape).astype(dtype)
  return x, ((h0, c0) if mode == "LSTM" else h0)


def assert_states_close(got, want, tol, what):
  """(output, h_n) or (output, (h_n, c_n)), Keras's against torch's or jaxgru's."""
  got, want = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got) == len(want)
  for name, g, w in zip(("output", "h_n", "c_n"), got, want, strict=False):
    row = _row(name, np.asarray(g), np.asarray(w))
    assert row.ok(tol), f"{what}, {name}: max abs {row.max_abs:.2e} past {tol:g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode, options, num_layers, bidirectional, bias", CELL_CONFIGS)
def test_lstm_and_simple_rnn_to_keras_compute_torch(mode, options, num_layers, bidirectional, bias, dtype):
  """torch -> jaxgru -> Keras layers, run by Keras against torch; float64 with jnp.tanh (see exact_tanh)."""
  with jax.enable_x64(dtype == np.float64), jax.default_matmul_precision("highest"):
    module = torch_layer(mode, options, num_layers, bidirectional, bias, dtype)
    layers = pk.to_keras(parity.from_torch(module))
    kind = {"LSTM": keras.layers.LSTM, "RNN": keras.layers.SimpleRNN}[mode]
    halves = [la.forward_layer if bidirectional else la for la in layers]
    assert all(type(h) is kind and h.cell.kernel.dtype == np.dtype(dtype).name for h in halves)
    if dtype == np.float64 and options.get("nonlinearity") != "relu":
      exact_tanh(layers)
    x, state = cell_inputs(mode, num_layers, bidirectional, dtype)
    for h, lengths in ((None, None), (state, LENGTHS)):
      run = parity.run_torch(module, x, h, lengths=lengths)
      want = (run["output"], (run["h_n"], run["c_n"]) if mode == "LSTM" else run["h_n"])
      assert_states_close(pk.run_keras(layers, x, h, lengths), want, 1e-10 if dtype == np.float64 else 1e-5, mode)


def keras_cell_stack(kind, dtype, **options):
  """Keras's own layers, built and randomised by Keras's API: two Bidirectional layers of ``kind``."""
  options = dict(return_sequences=True, return_state=True, dtype=dtype) | options
  layers = [keras.layers.Bidirectional(kind(H, **options), dtype=dtype) for _ in range(2)]
  layers[0].build((None, None, I))
  layers[1].build((None, None, 2 * H))
  rng = np.random.default_rng(4)
  for layer in layers:
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(dtype) for w in layer.get_weights()])
  return layers


@pytest.mark.parametrize("kind, options", [(keras.layers.LSTM, {}), (keras.layers.SimpleRNN, {"activation": "relu"})])
def test_keras_lstm_and_simple_rnn_layers_into_jaxgru_bit_for_bit(kind, options, x64):
  with jax.default_matmul_precision("highest"):
    layers = keras_cell_stack(kind, "float64", **options)
    nonlinearity = "relu" if options else "tanh"
    params = pk.keras_to_params(layers, nonlinearity=nonlinearity)
    kernel, recurrent, bias = layers[1].backward_layer.get_weights()
    assert np.array_equal(params["weight_ih_l1_reverse"], kernel.T) and np.array_equal(
      params["weight_hh_l1_reverse"], recurrent.T
    )
    assert np.array_equal(params["bias_ih_l1_reverse"], bias) and not np.any(params["bias_hh_l1_reverse"])
    model = pk.from_keras(layers)
    assert type(model) is (jaxgru.LSTM if kind is keras.layers.LSTM else jaxgru.RNN) and model.batch_first
    assert getattr(model, "nonlinearity", nonlinearity) == nonlinearity
    if kind is keras.layers.LSTM:
      exact_tanh(layers)
    x, state = cell_inputs("LSTM" if kind is keras.layers.LSTM else "RNN", 2, True, np.float64)
    for h, lengths in ((None, None), (state, LENGTHS)):
      assert_states_close(model(x, h, lengths=lengths), pk.run_keras(layers, x, h, lengths), 1e-10, kind.__name__)


def test_lstm_and_simple_rnn_refusals():
  relu = keras_cell_stack(keras.layers.SimpleRNN, "float32", activation="relu")
  with pytest.raises(ValueError, match="read it with nonlinearity='relu'"):
    pk.keras_to_params(relu)
  with pytest.raises(ValueError, match="several kinds"):
    pk.keras_to_params([relu[0], keras_cell_stack(keras.layers.LSTM, "float32")[1]])
  with pytest.raises(ValueError, match="activation='softplus'"):
    pk.keras_to_params(keras_cell_stack(keras.layers.SimpleRNN, "float32", activation="softplus"))
  with pytest.raises(ValueError, match="proj_size=2 .weight_hr.: Keras's LSTM has no projection"):
    pk.to_keras(parity.from_torch(torch.nn.LSTM(I, H, proj_size=2)))
  lstm = pk.to_keras(jaxgru.LSTM(I, H, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r"h0 must be the pair \(h0, c0\)"):
    pk.run_keras(lstm, np.zeros((B, T, I), np.float32), np.zeros((1, B, H), np.float32))
  with pytest.raises(ValueError, match=r"c0 must have shape"):
    pk.run_keras(lstm, np.zeros((B, T, I), np.float32), (np.zeros((1, B, H), np.float32), np.zeros((2, B, H), np.float32)))
  with pytest.raises(ValueError, match="nonlinearity='tanh' but the module has nonlinearity='relu'"):
    pk.to_keras(jaxgru.RNN(I, H, nonlinearity="relu", rngs=nnx.Rngs(0)), nonlinearity="tanh")
