"""parity.compare_models: a whole torch model against its JAX port, and load_tensors(as_jax=True)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
from _helpers import random_torch
from flax import nnx

import jaxgru
import parity


class TorchTagger(torch.nn.Module):
  """Embedding -> 2-layer GRU -> Linear, returning the logits and the final state."""

  def __init__(self):
    super().__init__()
    self.emb = torch.nn.Embedding(10, 3)
    self.rnn = torch.nn.GRU(3, 5, 2, batch_first=True)
    self.head = torch.nn.Linear(5, 2)

  def forward(self, tokens, h0):
    out, h_n = self.rnn(self.emb(tokens), h0)
    return self.head(out), h_n


class JaxTagger(nnx.Module):
  def __init__(self, rngs):
    self.emb = nnx.Embed(10, 3, param_dtype=jnp.float64, rngs=rngs)
    self.rnn = jaxgru.GRU(3, 5, 2, batch_first=True, param_dtype=jnp.float64, rngs=rngs)
    self.head = nnx.Linear(5, 2, param_dtype=jnp.float64, rngs=rngs)

  def __call__(self, tokens, h0):
    out, h_n = self.rnn(self.emb(tokens), h0)
    return self.head(out), h_n


NAMES = {"emb.weight": "emb.embedding", "head.weight": ("head.kernel", "T")}


def _ported(x64):
  torch.manual_seed(0)
  torch_model = TorchTagger().double()
  jax_model = JaxTagger(nnx.Rngs(0))
  state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
  jax_model.rnn.load_state_dict(
    parity.state_dict_to_params({k: v for k, v in state.items() if k.startswith("rnn.")}, prefix="rnn.")
  )
  jax_model.emb.embedding[...] = state["emb.weight"]
  jax_model.head.kernel[...] = state["head.weight"].T
  jax_model.head.bias[...] = state["head.bias"]
  rng = np.random.default_rng(0)
  return torch_model, jax_model, rng.integers(0, 10, (2, 7)), rng.standard_normal((2, 2, 5))


def test_a_ported_nnx_model_matches_in_every_output_and_gradient(x64):
  torch_model, jax_model, tokens, h0 = _ported(x64)
  report = parity.compare_models(torch_model, jax_model, tokens, h0, name_map=NAMES)
  assert report.ok, str(report)
  assert report.tol == 1e-10
  names = [row.name for row in report.rows]
  assert names[:2] == ["output[0]", "output[1]"] and "grad rnn.weight_hh_l1" in names and "grad head.weight" in names
  assert names[-1] == "grad input[1]" and "grad input[0]" not in names  # token ids have no gradient


def test_a_wrong_port_fails(x64):
  torch_model, jax_model, tokens, h0 = _ported(x64)
  jax_model.head.kernel[...] = jax_model.head.kernel[...] * 1.001
  report = parity.compare_models(torch_model, jax_model, tokens, h0, name_map=NAMES)
  assert not report.ok and "output[0]" in [row.name for row in report.failures]


def test_a_function_of_a_state_dict(x64):
  torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
  state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
  report = parity.compare_models(
    torch_model, lambda p, x: jnp.tanh(x @ p["0.weight"].T + p["0.bias"]), np.ones((2, 3)), params=state
  )
  assert report.ok and [row.name for row in report.rows] == ["output[0]", "grad 0.weight", "grad 0.bias", "grad input[0]"]


def test_names_that_do_not_correspond_are_listed(x64):
  torch_model, jax_model, tokens, h0 = _ported(x64)
  with pytest.raises(
    ValueError, match=r"torch names with no JAX array \['emb.weight -> emb.weight', 'head.weight -> head.weight'\]"
  ):
    parity.compare_models(torch_model, jax_model, tokens, h0)
  with pytest.raises(ValueError, match=r"head.weight has shape \(2, 5\) in torch, head.kernel \(5, 2\) in JAX"):
    parity.compare_models(torch_model, jax_model, tokens, h0, name_map={**NAMES, "head.weight": "head.kernel"})
  with pytest.raises(TypeError, match="needs params"):
    parity.compare_models(torch_model, lambda p, x: x, tokens)


def test_load_tensors_as_jax_refuses_narrowing_like_load(tmp_path):
  path = tmp_path / "model.safetensors"
  parity.save_tensors({"w": np.ones((2, 2), np.float64), "v": np.ones(3, np.float32)}, path)
  with jax.enable_x64(False):
    with pytest.raises(TypeError, match="float64, but JAX runs in 32-bit mode"):
      parity.load_tensors(path, as_jax=True)
    arrays = parity.load_tensors(path, as_jax=True, dtype=np.float32)
    assert all(isinstance(a, jax.Array) and a.dtype == jnp.float32 for a in arrays.values())
    assert parity.load_tensors(path)["w"].dtype == np.float64  # NumPy keeps the bits
  with jax.enable_x64(True):
    assert parity.load_tensors(path, as_jax=True)["w"].dtype == jnp.float64


def test_an_nnx_model_with_a_list_of_layers(x64):
  """Parameter paths with list indices (``layers.0.kernel``) map and run."""
  torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).double()

  class Stack(nnx.Module):
    def __init__(self):
      self.layers = nnx.List(
        [nnx.Linear(3, 4, param_dtype=jnp.float64, rngs=nnx.Rngs(0)), nnx.Linear(4, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(1))]
      )

    def __call__(self, x):
      return self.layers[1](self.layers[0](x))

  model = Stack()
  for k, layer in enumerate(torch_model):
    model.layers[k].kernel[...] = layer.weight.detach().numpy().T
    model.layers[k].bias[...] = layer.bias.detach().numpy()
  names = {f"{k}.weight": (f"layers.{k}.kernel", "T") for k in range(2)} | {f"{k}.bias": f"layers.{k}.bias" for k in range(2)}
  report = parity.compare_models(torch_model, model, np.ones((2, 3)), name_map=names)
  assert report.ok, str(report)


class TorchMixed(torch.nn.Module):
  """A projected bidirectional LSTM, a GRU, a ReLU RNN and a Linear head, one after another."""

  def __init__(self):
    super().__init__()
    self.encoder = torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=4)
    self.decoder = torch.nn.GRU(8, 6)
    self.refiner = torch.nn.RNN(6, 5, nonlinearity="relu")
    self.head = torch.nn.Linear(5, 2)

  def forward(self, x):
    out, _ = self.encoder(x)
    out, _ = self.decoder(out)
    out, _ = self.refiner(out)
    return self.head(out)


def test_a_model_mixing_lstm_gru_rnn_and_linear_checkpoint_in_train_checkpoint_out(tmp_path, x64):
  """Checkpoint in (parity.load per layer, load_tensors for the rest), compare_models on every
  output and gradient, a training step in JAX, one file out that torch loads strictly."""
  torch_model = random_torch(TorchMixed(), 0, torch.float64).eval()
  torch.save(torch_model.state_dict(), tmp_path / "mixed.pt")
  names = ("encoder", "decoder", "refiner")
  tensors = parity.load_tensors(tmp_path / "mixed.pt")
  params = {name: parity.load(tmp_path / "mixed.pt", prefix=f"{name}.") for name in names}
  params |= {k: jnp.asarray(tensors[f"head.{k}"]) for k in ("weight", "bias")}
  assert "weight_hr_l1_reverse" in params["encoder"]

  def model(params, x):
    out, _ = jaxgru.lstm(params["encoder"], x)
    out, _ = jaxgru.gru(params["decoder"], out)
    out, _ = jaxgru.rnn(params["refiner"], out, nonlinearity="relu")
    return out @ params["weight"].T + params["bias"]

  def of_state_dict(state, x):
    nested = {name: {k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")} for name in names}
    return model(nested | {"weight": state["head.weight"], "bias": state["head.bias"]}, x)

  x = np.random.default_rng(3).standard_normal((7, 4, 3))
  state = {name: tensors[name] for name, _ in torch_model.named_parameters()}
  report = parity.compare_models(torch_model, of_state_dict, x, params=state)
  assert report.ok and report.tol == 1e-10, str(report)
  assert {"grad encoder.weight_hr_l0", "grad refiner.weight_hh_l0", "grad head.weight"} <= {row.name for row in report.rows}

  grads = jax.grad(lambda p: jnp.mean(model(p, x) ** 2))(params)
  params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
  extra = {f"{name}.{k}": v for name in names[1:] for k, v in params[name].items()}
  extra |= {"head.weight": params["weight"], "head.bias": params["bias"]}
  path = parity.save(params["encoder"], tmp_path / "mixed.safetensors", prefix="encoder.", extra=extra)
  trained = TorchMixed().double().eval()
  trained.load_state_dict(safetensors.torch.load_file(path), strict=True)
  want = trained(torch.from_numpy(x)).detach().numpy()
  assert np.abs(np.asarray(model(params, x)) - want).max() < 1e-12
