"""parity.save / parity.load: safetensors torch loads unchanged, torch .pt files read with
weights_only=True, atomic writes, and clear errors for files that are not a GRU's or are corrupt."""

from __future__ import annotations

import os
import pickle

import jax
import numpy as np
import pytest
import safetensors.torch
import torch
from _helpers import random_torch
from flax import nnx

import jaxgru
import parity
from parity import _arrays
from parity.weights import _storage


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def same_state(got: dict, want: dict) -> None:
  assert sorted(got) == sorted(want)
  for k in want:
    assert _arrays.same_bits(got[k], want[k]), k


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
def test_saved_file_loads_into_torch_unchanged_and_back(tmp_path, dtype):
  model = parity.from_torch(random_torch(torch.nn.GRU(3, 4, num_layers=2, bidirectional=True), 0, dtype))
  path = parity.save(model, tmp_path / "gru.safetensors")
  torch_gru = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=dtype)
  torch_gru.load_state_dict(safetensors.torch.load_file(path))  # strict, torch's own loader
  same_state(torch_gru.state_dict(), model.state_dict())
  same_state(parity.load(path), model.state_dict())


def test_every_source_saves(tmp_path):
  torch_cell = random_torch(torch.nn.GRUCell(3, 4), 0, torch.float32)
  linen, variables = parity.from_torch(torch_cell, linen=True)
  sources = {
    "torch": (torch_cell, None),
    "nnx": (parity.from_torch(torch_cell), None),
    "linen": (linen, variables),
    "variables": (variables, None),
    "params": (dict(variables["params"]), None),
  }
  for name, (source, extra) in sources.items():
    path = parity.save(source, tmp_path / f"{name}.safetensors", variables=extra)
    same_state(parity.load(path), torch_cell.state_dict())
    torch.nn.GRUCell(3, 4).load_state_dict(safetensors.torch.load_file(path))


def test_loads_torch_state_dict_files(tmp_path):
  torch_gru = random_torch(torch.nn.GRU(3, 4, batch_first=True), 0, torch.float32)
  torch.save(torch_gru.state_dict(), tmp_path / "gru.pt")
  same_state(parity.load(tmp_path / "gru.pt"), torch_gru.state_dict())
  torch.save(torch_gru.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
  same_state(parity.load(tmp_path / "legacy.pth"), torch_gru.state_dict())
  model = torch.nn.Sequential()
  model.add_module("gru", torch_gru)
  model.add_module("fc", torch.nn.Linear(4, 1))
  torch.save(model.state_dict(), tmp_path / "model.pt")
  same_state(parity.load(tmp_path / "model.pt", prefix="gru."), torch_gru.state_dict())
  with pytest.raises(ValueError, match="prefix='gru.'"):
    parity.load(tmp_path / "model.pt")
  loaded = parity.load(tmp_path / "gru.pt", dtype=np.float64)
  assert all(v.dtype == np.float64 for v in loaded.values())


def test_torch_load_is_weights_only(tmp_path, monkeypatch):
  seen = {}
  real = torch.load

  def spy(*args, **kwargs):
    seen.update(kwargs)
    return real(*args, **kwargs)

  monkeypatch.setattr(torch, "load", spy)
  torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "gru.pt")
  parity.load(tmp_path / "gru.pt")
  assert seen["weights_only"] is True


def test_a_pickled_module_is_refused_not_unpickled(tmp_path):
  torch.save(torch.nn.GRU(3, 4), tmp_path / "module.pt")  # a whole module: arbitrary pickle
  with pytest.raises(ValueError, match="weights_only=True.*state_dict"):
    parity.load(tmp_path / "module.pt")


def _crash_after(nbytes: int):
  def write(file, data):
    file.write(data[:nbytes])
    file.flush()
    raise OSError("disk full (simulated)")

  return write


def test_a_crash_mid_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
  path = tmp_path / "gru.safetensors"
  old = parity.from_torch(torch.nn.GRU(3, 4))
  parity.save(old, path)
  old_bytes = path.read_bytes()
  monkeypatch.setattr(_storage, "write_all", _crash_after(100))
  with pytest.raises(OSError, match="simulated"):
    parity.save(parity.from_torch(torch.nn.GRU(3, 4)), path)
  assert path.read_bytes() == old_bytes
  assert os.listdir(tmp_path) == ["gru.safetensors"]
  with pytest.raises(OSError, match="simulated"):
    parity.save(old, tmp_path / "new.safetensors")
  assert os.listdir(tmp_path) == ["gru.safetensors"]  # no truncated new file either


def test_an_interrupt_mid_write_also_cleans_up(tmp_path, monkeypatch):
  def interrupted(file, data):
    file.write(data[:10])
    raise KeyboardInterrupt

  monkeypatch.setattr(_storage, "write_all", interrupted)
  with pytest.raises(KeyboardInterrupt):
    parity.save(torch.nn.GRU(3, 4), tmp_path / "gru.safetensors")
  assert os.listdir(tmp_path) == []


def test_saved_file_has_ordinary_permissions(tmp_path):
  path = parity.save(torch.nn.GRU(3, 4), tmp_path / "gru.safetensors")
  umask = os.umask(0)
  os.umask(umask)
  assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_strict_load_lists_every_problem(tmp_path):
  state_dict = dict(torch.nn.GRU(3, 4, num_layers=2).state_dict())
  del state_dict["bias_ih_l1"]
  state_dict["weight_hh_l1"] = torch.zeros(12, 3)
  state_dict["fc.weight"] = torch.zeros(2, 2)
  safetensors.torch.save_file(state_dict, tmp_path / "bad.safetensors")
  with pytest.raises(ValueError) as info:
    parity.load(tmp_path / "bad.safetensors")
  message = str(info.value)
  assert "bad.safetensors does not hold a torch GRU" in message
  assert "missing key(s): bias_ih_l1" in message
  assert "'fc.weight'" in message
  assert "weight_hh_l1: got shape (12, 3), expected (12, 4)" in message


def test_corrupt_and_foreign_files_get_clear_errors(tmp_path):
  good = parity.save(torch.nn.GRU(3, 4), tmp_path / "good.safetensors").read_bytes()
  (tmp_path / "truncated.safetensors").write_bytes(good[: len(good) - 7])
  (tmp_path / "header.safetensors").write_bytes(good[:20])
  (tmp_path / "empty.safetensors").write_bytes(b"")
  (tmp_path / "garbage.pt").write_bytes(b"\x80\x02" + bytes(range(64)))
  (tmp_path / "zip.pt").write_bytes(b"PK\x03\x04" + bytes(range(64)))
  (tmp_path / "text.pth").write_text("hello")
  torch.save(torch.zeros(3), tmp_path / "tensor.pt")
  torch.save({"epoch": 3, "model": torch.nn.GRU(3, 4).state_dict()}, tmp_path / "checkpoint.pt")
  safetensors.torch.save_file({"weight": torch.zeros(2, 2)}, tmp_path / "linear.safetensors")
  good_pt = (tmp_path / "gru.pt").open("wb")
  torch.save(torch.nn.GRU(3, 4).state_dict(), good_pt)
  good_pt.close()
  (tmp_path / "truncated.pt").write_bytes((tmp_path / "gru.pt").read_bytes()[:300])
  expected = {
    "truncated.safetensors": "not a valid safetensors file",
    "header.safetensors": "not a valid safetensors file",
    "empty.safetensors": "neither a safetensors file nor a torch.save file",
    "garbage.pt": "not a readable torch file",
    "zip.pt": "not a readable torch file",
    "truncated.pt": "not a readable torch file",
    "text.pth": "neither a safetensors file nor a torch.save file",
    "tensor.pt": "holds a Tensor, not a state dict",
    "checkpoint.pt": r"holds a checkpoint.*\[.model.\]",
    "linear.safetensors": "does not hold a torch GRU",
  }
  for name, match in expected.items():
    with pytest.raises(ValueError, match=match):
      parity.load(tmp_path / name)
  with pytest.raises(FileNotFoundError):
    parity.load(tmp_path / "missing.pt")


def test_save_refuses_what_torch_cannot_load(tmp_path):
  with pytest.raises(ValueError, match="classic"):
    parity.save(jaxgru.GRU(3, 4, variant="classic", rngs=nnx.Rngs(0)), tmp_path / "x.safetensors")
  with pytest.raises(TypeError, match="mapping"):
    parity.save("weights", tmp_path / "x.safetensors")
  with pytest.raises(FileNotFoundError, match="directory"):
    parity.save(torch.nn.GRU(3, 4), tmp_path / "nope" / "x.safetensors")
  assert not (tmp_path / "x.safetensors").exists()


def test_pickle_is_never_used_for_safetensors(tmp_path, monkeypatch):
  monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle used"))
  path = parity.save(torch.nn.GRU(3, 4), tmp_path / "gru.safetensors")
  parity.load(path)


class _Evil:
  """A pickle that would run a command when unpickled (weights_only=False)."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_advice_to_run_it(tmp_path):
  marker = tmp_path / "executed"
  torch.save({"weight_ih_l0": torch.zeros(3, 1), "x": _Evil(marker)}, tmp_path / "evil.pt")
  with open(tmp_path / "evil.pkl", "wb") as file:
    pickle.dump(_Evil(marker), file, protocol=2)
  (tmp_path / "garbage.pt").write_bytes(b"\x80\x02" + bytes(range(64)))
  for name in ("evil.pt", "evil.pkl"):
    for read in (parity.load, parity.load_tensors):
      with pytest.raises(ValueError, match="pickled code or objects that are not tensors") as info:
        read(tmp_path / name)
      message = str(info.value)
      assert "system" in message and "not executed" in message and "state_dict()" in message
      assert "weights_only=False" not in message and "truncated" not in message
  with pytest.raises(ValueError, match="not a readable torch file") as info:
    parity.load(tmp_path / "garbage.pt")
  assert "weights_only=False" not in str(info.value) and "will likely succeed" not in str(info.value)
  assert not marker.exists()


def test_a_prefix_without_its_dot_gets_the_right_one_suggested(tmp_path):
  model = torch.nn.Module()
  model.rnn = torch.nn.GRU(3, 4)
  model.decoder = torch.nn.Linear(4, 2)
  torch.save(model.state_dict(), tmp_path / "model.pt")
  with pytest.raises(ValueError, match=r"use prefix='rnn\.'"):
    parity.load(tmp_path / "model.pt", prefix="rnn")
  with pytest.raises(ValueError, match=r"use prefix='rnn\.'"):
    parity.state_dict_to_params(model.state_dict(), prefix="rnn")
  outer = torch.nn.Module()
  outer.model = model
  torch.save(outer.state_dict(), tmp_path / "outer.pt")
  with pytest.raises(ValueError, match=r"prefix='model\.rnn\.'"):  # the whole prefix, not only the rest
    parity.load(tmp_path / "outer.pt", prefix="model.")
  with pytest.raises(ValueError, match=r"(?s)no key starting with prefix='gru\.'.*prefix='model\.rnn\.'"):
    parity.load(tmp_path / "outer.pt", prefix="gru.")
  same_state(parity.load(tmp_path / "outer.pt", prefix="model.rnn."), model.rnn.state_dict())


def test_save_onto_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
  (tmp_path / "store").mkdir()
  target = tmp_path / "store" / "gru.safetensors"
  target.write_bytes(b"old")
  target.chmod(0o600)
  link = tmp_path / "latest.safetensors"
  link.symlink_to(os.path.join("store", "gru.safetensors"))  # relative, like `ln -s`
  torch_gru = random_torch(torch.nn.GRU(3, 4), 0, torch.float32)
  assert parity.save(torch_gru, link) == link
  assert link.is_symlink() and os.readlink(link) == os.path.join("store", "gru.safetensors")
  same_state(parity.load(target), torch_gru.state_dict())
  assert target.stat().st_mode & 0o777 == 0o600  # a replaced file keeps its permissions
  assert sorted(os.listdir(tmp_path / "store")) == ["gru.safetensors"]  # no temporary file left
  dangling = tmp_path / "dangling.safetensors"
  dangling.symlink_to(tmp_path / "store" / "new.safetensors")
  parity.save(torch_gru, dangling)
  assert dangling.is_symlink() and (tmp_path / "store" / "new.safetensors").is_file()
