"""Whole models: a GRU with the rest of a model's state dict, both ways, tied weights included
(parity.load_tensors, parity.save_tensors, parity.save(prefix=, extra=), parity.tied_names), and
the train/eval mode a converted module gets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.torch
import torch
from _helpers import random_torch

import parity


class TiedModel(torch.nn.Module):
  """The structure of torch's word_language_model: embedding, GRU, decoder tied to the embedding."""

  def __init__(self, vocab=7, size=4):
    super().__init__()
    self.encoder = torch.nn.Embedding(vocab, size)
    self.rnn = torch.nn.GRU(size, size, num_layers=2, dropout=0.5)
    self.decoder = torch.nn.Linear(size, vocab)
    self.decoder.weight = self.encoder.weight
    self.norm = torch.nn.BatchNorm1d(size)  # an int64 buffer (num_batches_tracked) too


def random_model(seed=0) -> TiedModel:
  model = random_torch(TiedModel(), seed, torch.float32)
  with torch.no_grad():
    model.norm.running_mean.uniform_(-1, 1)
    model.norm.num_batches_tracked.fill_(12345678901)  # past int32
  return model


def same(a, b) -> bool:
  a, b = np.asarray(a), parity._arrays.any_tensor_to_numpy(b) if isinstance(b, torch.Tensor) else np.asarray(b)
  return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_load_tensors_reads_every_tensor_and_keeps_ties(tmp_path, suffix):
  model = random_model()
  path = tmp_path / f"model{suffix}"
  if suffix == ".pt":
    torch.save(model.state_dict(), path)
  else:
    parity.save_tensors(model.state_dict(), path)
  tensors = parity.load_tensors(path)
  assert sorted(tensors) == sorted(model.state_dict())
  assert all(isinstance(v, np.ndarray) and same(v, model.state_dict()[k]) for k, v in tensors.items())
  assert tensors["norm.num_batches_tracked"].dtype == np.int64  # not narrowed, whatever JAX's mode
  assert tensors["decoder.weight"] is tensors["encoder.weight"]
  assert [set(g) for g in parity.tied_names(tensors)] == [{"encoder.weight", "decoder.weight"}]
  assert parity.tied_names(model.state_dict()) == [("encoder.weight", "decoder.weight")]
  encoder = parity.load_tensors(path, prefix="encoder.", dtype=jnp.bfloat16)
  assert list(encoder) == ["weight"] and encoder["weight"].dtype == ml_dtypes.bfloat16
  norm = parity.load_tensors(path, prefix="norm.", dtype="float16")
  assert norm["running_mean"].dtype == np.float16 and norm["num_batches_tracked"].dtype == np.int64  # floats only


def test_every_dtype_round_trips_bit_for_bit(tmp_path):
  tensors = {
    name: (torch.randn(2, 3) * 100).to(dtype)
    for name, dtype in [
      ("f16", torch.float16),
      ("bf16", torch.bfloat16),
      ("f32", torch.float32),
      ("f64", torch.float64),
      ("f8", torch.float8_e4m3fn),
      ("c64", torch.complex64),
      ("i8", torch.int8),
      ("u8", torch.uint8),
      ("i64", torch.int64),
      ("bool", torch.bool),
    ]
  }
  path = parity.save_tensors(tensors, tmp_path / "all.safetensors")
  loaded = parity.load_tensors(path)
  assert all(same(loaded[k], v) for k, v in tensors.items())
  back = safetensors.torch.load_file(path)  # torch's own reader
  assert all(
    v.dtype == tensors[k].dtype and torch.equal(v.view(torch.uint8), tensors[k].view(torch.uint8)) for k, v in back.items()
  )
  as_jax = {k: jnp.asarray(v) if k not in ("f64", "i64") else v for k, v in loaded.items()}  # 32-bit JAX narrows those
  again = parity.save_tensors(as_jax, tmp_path / "b.safetensors")
  assert all(same(parity.load_tensors(again)[k], v) for k, v in tensors.items())  # from JAX arrays too


def test_a_gru_and_the_rest_of_its_model_load_into_torch_strictly(tmp_path):
  source = random_model(0).eval()
  gru = parity.from_torch(source.rnn)
  others = {k: v for k, v in parity.load_tensors(_saved(source, tmp_path)).items() if not k.startswith("rnn.")}
  others["encoder.weight"] = jnp.asarray(others["encoder.weight"])  # trained in JAX: one array, both names
  others["decoder.weight"] = others["encoder.weight"]
  path = parity.save(gru, tmp_path / "back.safetensors", prefix="rnn.", extra=others)
  target = random_model(1)
  result = target.load_state_dict(safetensors.torch.load_file(path), strict=True)
  assert not result.missing_keys and not result.unexpected_keys
  assert target.decoder.weight is target.encoder.weight  # the tie holds
  assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
  assert [set(g) for g in parity.tied_names(parity.load_tensors(path))] == [{"encoder.weight", "decoder.weight"}]
  assert all(
    torch.equal(v, source.rnn.state_dict()[k]) for k, v in parity.params_to_state_dict(parity.load(path, prefix="rnn.")).items()
  )
  with pytest.raises(ValueError, match=r"repeats the GRU's keys \['rnn.bias_hh_l0'"):
    parity.save(gru, tmp_path / "x.safetensors", prefix="rnn.", extra=source.state_dict())
  with pytest.raises(TypeError, match="extra must be a mapping"):
    parity.save(gru, tmp_path / "x.safetensors", extra=[1])
  with pytest.raises(TypeError, match="str keys"):
    parity.save_tensors({0: np.zeros(2)}, tmp_path / "x.safetensors")
  with pytest.raises(TypeError, match="'b' must|these entries are not"):
    parity.save_tensors({"a": np.zeros(2), "b": 3.0}, tmp_path / "x.safetensors")


def _saved(model, tmp_path):
  torch.save(model.state_dict(), tmp_path / "model.pt")
  return tmp_path / "model.pt"


def test_params_and_state_dicts_with_a_prefix():
  model = random_model()
  params = parity.state_dict_to_params(model.state_dict(), prefix="rnn.")
  assert sorted(params) == sorted(model.rnn.state_dict())
  state_dict = parity.params_to_state_dict(params, prefix="rnn.")
  assert all(torch.equal(v, model.state_dict()[k]) for k, v in state_dict.items())
  with pytest.raises(ValueError, match="no key starting with prefix='gru.'"):
    parity.state_dict_to_params(model.state_dict(), prefix="gru.")
  with pytest.raises(TypeError, match="prefix must be a str"):
    parity.params_to_state_dict(params, prefix=None)


def test_training_mode_after_conversion_is_explicit():
  torch_gru = torch.nn.GRU(3, 4, num_layers=2, dropout=0.5).eval()
  assert parity.from_torch(torch_gru).deterministic  # torch's eval(): no dropout until .train()
  assert "deterministic=True" in repr(parity.from_torch(torch_gru))
  assert not parity.from_torch(torch_gru, training=True).deterministic
  assert parity.from_torch(torch_gru.train(), training=False).deterministic
  assert not parity.module_from_params(parity.state_dict_to_params(torch_gru.state_dict())).deterministic
  with pytest.raises(TypeError, match="training must be"):
    parity.from_torch(torch_gru, training="False")
  with pytest.raises(TypeError, match="training must be"):
    parity.module_from_params(parity.state_dict_to_params(torch_gru.state_dict()), training=1)
  with pytest.raises(ValueError, match="deterministic= at call time"):
    parity.from_torch(torch_gru, training=True, linen=True)


def test_jax_arrays_and_float64_in_x64():
  with jax.enable_x64(True):
    model = random_torch(TiedModel(), 0, torch.float64)
    params = parity.state_dict_to_params(model.state_dict(), prefix="rnn.")
    assert next(iter(params.values())).dtype == jnp.float64
