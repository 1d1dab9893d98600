"""parity's conversions between torch.nn.GRU / GRUCell (LSTM, RNN and their cells) and jaxgru:
bit-exact round trips in both directions for float16, bfloat16, float32 and float64, configuration
carried over, strict errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import random_torch
from flax import nnx

import jaxgru
import parity
from parity import _arrays

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
CONFIGS = [
  dict(num_layers=1),
  dict(num_layers=2, bidirectional=True, batch_first=True),
  dict(num_layers=2, bias=False, dropout=0.25),
]


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):  # float64 must survive; 32-bit mode refuses it (tested below)
    yield


def special_values(module: torch.nn.Module) -> torch.nn.Module:
  """Bits that any rounding or value conversion would disturb: NaN payloads aside, -0.0,
  infinities, NaN and the smallest subnormal of the dtype."""
  with torch.no_grad():
    p = next(iter(module.parameters())).view(-1)
    tiny = torch.finfo(p.dtype).smallest_normal / 4
    p[:5] = torch.tensor([-0.0, float("inf"), float("-inf"), float("nan"), tiny], dtype=p.dtype)
  return module


def assert_same_bits(got: dict, want: dict) -> None:
  assert list(got) == list(want)
  for k in want:
    assert _arrays.same_bits(got[k], want[k]), k


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_gru_round_trip_torch_nnx_torch_is_bit_exact(dtype, config):
  source = special_values(random_torch(torch.nn.GRU(3, 4, **config), 0, dtype))
  model = parity.from_torch(source)
  assert isinstance(model, jaxgru.GRU)
  for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"):
    assert getattr(model, name) == getattr(source, name), name
  assert model.param_dtype == _arrays.numpy_dtype(dtype)
  assert_same_bits(model.state_dict(), source.state_dict())
  back = parity.to_torch(model)
  assert type(back) is torch.nn.GRU and back.dropout == source.dropout and back.batch_first == source.batch_first
  assert_same_bits(back.state_dict(), source.state_dict())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gru_round_trip_jax_torch_jax_is_bit_exact(dtype):
  jdtype = _arrays.numpy_dtype(dtype)
  model = jaxgru.GRU(2, 3, num_layers=2, bidirectional=True, param_dtype=jdtype, rngs=nnx.Rngs(1))
  model.weight_hh_l1[...] = model.weight_hh_l1[...].at[0, :3].set(jnp.array([-0.0, jnp.inf, jnp.nan], jdtype))
  before = model.state_dict()
  torch_model = parity.to_torch(model)
  assert next(torch_model.parameters()).dtype == dtype
  back = parity.from_torch(torch_model)
  assert_same_bits(back.state_dict(), before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cell_round_trips_are_bit_exact(dtype):
  source = special_values(random_torch(torch.nn.GRUCell(3, 4), 0, dtype))
  cell = parity.from_torch(source)
  assert isinstance(cell, jaxgru.GRUCell) and cell.param_dtype == _arrays.numpy_dtype(dtype)
  assert_same_bits(cell.state_dict(), source.state_dict())
  back = parity.to_torch(cell)
  assert type(back) is torch.nn.GRUCell
  assert_same_bits(back.state_dict(), source.state_dict())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linen_round_trips_are_bit_exact(dtype):
  source = special_values(random_torch(torch.nn.GRU(3, 4, num_layers=2, batch_first=True), 0, dtype))
  module, variables = parity.from_torch(source, linen=True)
  assert isinstance(module, jaxgru.linen.GRU) and module.num_layers == 2 and module.batch_first
  assert_same_bits(dict(variables["params"]), source.state_dict())
  assert_same_bits(parity.to_torch(module, variables).state_dict(), source.state_dict())

  cell = random_torch(torch.nn.GRUCell(3, 4, bias=False), 1, dtype)
  module, variables = parity.from_torch(cell, linen=True)
  assert isinstance(module, jaxgru.linen.GRUCell) and not module.bias
  assert_same_bits(parity.to_torch(module, variables).state_dict(), cell.state_dict())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_state_dict_level_round_trips_are_bit_exact(dtype):
  state_dict = special_values(random_torch(torch.nn.GRU(3, 4, bidirectional=True), 0, dtype)).state_dict()
  params = parity.state_dict_to_params(state_dict)
  assert all(isinstance(v, jax.Array) for v in params.values())
  assert_same_bits(params, state_dict)
  back = parity.params_to_state_dict(params)
  assert all(isinstance(v, torch.Tensor) for v in back.values())
  assert_same_bits(back, state_dict)
  torch.nn.GRU(3, 4, bidirectional=True, dtype=dtype).load_state_dict(back)  # torch takes it as is


LAYERS = [
  lambda: torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, batch_first=True, dropout=0.25),
  lambda: torch.nn.LSTM(3, 5, bias=False),
  lambda: torch.nn.RNN(3, 5, num_layers=2, nonlinearity="relu", bidirectional=True),
  lambda: torch.nn.LSTMCell(3, 5),
  lambda: torch.nn.RNNCell(3, 5, bias=False, nonlinearity="relu"),
]
CONFIG_NAMES = ("input_size", "hidden_size", "bias", "num_layers", "batch_first", "dropout", "bidirectional", "proj_size")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("make", LAYERS, ids=["lstm_proj", "lstm_no_bias", "rnn_relu", "lstm_cell", "rnn_cell"])
def test_lstm_and_rnn_round_trips_are_bit_exact(make, dtype, tmp_path):
  """torch's LSTM, RNN and their cells to jaxgru's (NNX and Linen) and back, every bit and every
  configuration argument (``proj_size``, ``nonlinearity``) kept; through state dicts and files too."""
  source = special_values(random_torch(make(), 0, dtype))
  kind = type(source).__name__
  model = parity.from_torch(source)
  assert type(model) is getattr(jaxgru, kind) and model.param_dtype == _arrays.numpy_dtype(dtype)
  for name in CONFIG_NAMES + ("nonlinearity",):  # what the jaxgru module has (torch's RNN keeps proj_size=0 too)
    assert not hasattr(model, name) or getattr(model, name) == getattr(source, name), name
  assert_same_bits(model.state_dict(), source.state_dict())
  back = parity.to_torch(model)
  assert type(back) is type(source) and getattr(back, "nonlinearity", None) == getattr(source, "nonlinearity", None)
  assert_same_bits(back.state_dict(), source.state_dict())
  module, variables = parity.from_torch(source, linen=True)
  assert type(module) is getattr(jaxgru.linen, kind)
  assert_same_bits(parity.to_torch(module, variables).state_dict(), source.state_dict())
  params = parity.state_dict_to_params({"enc." + k: v for k, v in source.state_dict().items()}, prefix="enc.")
  assert_same_bits(parity.params_to_state_dict(params), source.state_dict())
  nonlinearity = getattr(source, "nonlinearity", "tanh")
  assert type(parity.module_from_params(params, nonlinearity=nonlinearity)) is getattr(jaxgru, kind)
  parity.save(model, tmp_path / "layer.safetensors")
  torch.save(source.state_dict(), tmp_path / "layer.pt")
  for path in (tmp_path / "layer.safetensors", tmp_path / "layer.pt"):
    loaded = parity.load(path)  # safetensors keeps its keys sorted
    assert set(loaded) == set(source.state_dict())
    assert_same_bits({k: loaded[k] for k in source.state_dict()}, source.state_dict())


def test_converted_lstm_computes_torchs_numbers():
  source = random_torch(torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2), 0, torch.float64)
  x = np.random.default_rng(0).standard_normal((6, 2, 3))
  out, (h, c) = parity.from_torch(source)(x)
  want, (want_h, want_c) = source(torch.from_numpy(x))
  for got, ref in ((out, want), (h, want_h), (c, want_c)):
    np.testing.assert_allclose(got, ref.detach().numpy(), atol=1e-12)


def test_converted_modules_compute_the_same(precision):
  source = random_torch(torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True), 0, precision.torch_dtype)
  x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(precision.np_dtype)
  parity.assert_close(source, parity.from_torch(source), x, tol=precision.tol)
  module, variables = parity.from_torch(source, linen=True)
  parity.assert_close(source, (module, variables), x, tol=precision.tol)
  want, _ = source(torch.from_numpy(x))
  got, _ = module.apply(variables, x)
  np.testing.assert_allclose(got, want.detach().numpy(), atol=precision.tol)


def test_modes_and_dtype_cast():
  source = torch.nn.GRU(3, 4, num_layers=2, dropout=0.5).eval()
  model = parity.from_torch(source, rngs=nnx.Rngs(dropout=3, params=0))
  assert model.deterministic
  assert not parity.to_torch(model).training
  model.train()
  assert parity.to_torch(model).training
  params = parity.state_dict_to_params(source.state_dict(), dtype="bfloat16")
  assert all(v.dtype == jnp.bfloat16 for v in params.values())
  np.testing.assert_array_equal(
    np.asarray(params["weight_ih_l0"], np.float32), source.weight_ih_l0.detach().to(torch.bfloat16).float().numpy()
  )


def test_float64_in_32_bit_mode_is_refused_not_rounded():
  source = torch.nn.GRU(3, 4, dtype=torch.float64)
  with jax.enable_x64(False), pytest.raises(TypeError, match="jax_enable_x64"):
    parity.from_torch(source)


def test_strict_errors_list_every_problem_at_once():
  state_dict = dict(torch.nn.GRU(3, 4, num_layers=2).state_dict())
  del state_dict["bias_hh_l1"]
  state_dict["weight_ih_l1"] = torch.zeros(12, 5)
  state_dict["extra"] = torch.zeros(1)
  with pytest.raises(ValueError) as info:
    parity.state_dict_to_params(state_dict)
  message = str(info.value)
  assert "missing key(s): bias_hh_l1" in message
  assert "'extra'" in message
  assert "weight_ih_l1: got shape (12, 5), expected (12, 4)" in message


def test_a_models_state_dict_gets_a_prefix_hint():
  model = torch.nn.Sequential()
  model.add_module("gru", torch.nn.GRU(3, 4))
  with pytest.raises(ValueError, match="prefix='gru.'"):
    parity.state_dict_to_params(model.state_dict())


@pytest.mark.parametrize(
  ("call", "error", "match"),
  [
    (lambda: parity.from_torch(torch.nn.Linear(3, 4)), TypeError, "torch.nn.GRU, LSTM or RNN"),
    (lambda: parity.to_torch(torch.nn.GRU(3, 4)), TypeError, "jaxgru.GRU"),
    (lambda: parity.to_torch({"weight_ih_l0": np.zeros((12, 3))}), TypeError, "params_to_state_dict"),
    (lambda: parity.state_dict_to_params([1, 2]), TypeError, "mapping"),
    (lambda: parity.state_dict_to_params({"model": {"weight_ih_l0": 1}}), TypeError, "under one of its keys"),
    (lambda: parity.state_dict_to_params({"weight_ih": torch.zeros(6, 3, dtype=torch.int32)}), TypeError, "float16"),
    (lambda: parity.state_dict_to_params(torch.nn.GRU(3, 4).state_dict(), dtype="int8"), TypeError, "dtype"),
    (lambda: parity.to_torch(jaxgru.linen.GRU(3, 4)), ValueError, "variables"),
    (
      lambda: parity.to_torch(jaxgru.linen.GRU(3, 5), {"params": parity.state_dict_to_params(torch.nn.GRU(3, 4).state_dict())}),
      ValueError,
      "size mismatch",
    ),
    (lambda: parity.to_torch(jaxgru.GRU(3, 4, variant="classic", rngs=nnx.Rngs(0))), ValueError, "classic"),
  ],
)
def test_bad_input_gets_clear_errors(call, error, match):
  with pytest.raises(error, match=match):
    call()
