"""Hostile and broken files against every loader of ``parity``: each ends in an error its
docstring lists (FileNotFoundError, ValueError, TypeError) naming the file, nothing outside the
model's folder is read, nothing pickled runs, and no file makes a loader take much more memory
than the file's size.

Loaders: ``parity.load``, ``parity.load_tensors`` (torch and safetensors files),
``parity.onnx.onnx_to_params`` and ``parity.onnx.run_onnx`` (ONNX files, external data),
``parity.keras.keras_to_params`` (``.keras`` files).
"""

from __future__ import annotations

import os
import pathlib
import pickle
import textwrap

import jax
import numpy as np
import onnx
import pytest
import torch
from _helpers import run_python

import jaxgru
import parity
from parity import keras as pkeras
from parity import onnx as ponnx

DOCUMENTED = (FileNotFoundError, ValueError, TypeError)


def _refused(call, path: pathlib.Path, expected=ValueError, match: str | None = None) -> str:
  """Calls ``call(path)``: it raises ``expected`` (a documented type, not a subclass leaking
  through), whose message names the file."""
  with pytest.raises(DOCUMENTED) as caught:
    call(path)
  assert type(caught.value) is expected, f"{type(caught.value).__name__}: {caught.value}"
  message = str(caught.value)
  assert str(path) in message or path.name in message, message
  if match is not None:
    assert match in message, message
  return message


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
  """One file of each kind, good and hostile."""
  folder = tmp_path_factory.mktemp("hostile")
  gru = torch.nn.GRU(3, 4)
  out = {}

  def save(name, obj, **kwargs):
    out[name] = folder / name
    torch.save(obj, out[name], **kwargs)

  save("good.pt", gru.state_dict())
  save("legacy.pt", gru.state_dict(), _use_new_zipfile_serialization=False)
  out["good.safetensors"] = parity.save(gru, folder / "good.safetensors")
  for source in ("good.pt", "legacy.pt", "good.safetensors"):
    data = out[source].read_bytes()
    for cut in (1, 10, 100, 300, len(data) // 2, len(data) - 10):
      name = f"{source}.cut{cut}"
      out[name] = folder / name
      out[name].write_bytes(data[:cut])
  out["random.pt"] = folder / "random.pt"
  out["random.pt"].write_bytes(b"\x80" + np.random.default_rng(0).bytes(500))  # legacy pickle's first byte
  out["random.bin"] = folder / "random.bin"
  out["random.bin"].write_bytes(np.random.default_rng(1).bytes(500))
  out["empty.pt"] = folder / "empty.pt"
  out["empty.pt"].write_bytes(b"")
  save("int-value.pt", {"weight_ih_l0": 5})
  save("int-key.pt", {1: torch.zeros(3), "weight_ih_l0": torch.zeros(12, 3)})
  save("meta.pt", {"weight_ih_l0": torch.zeros(12, 3, device="meta")})
  save("sparse.pt", {"weight_ih_l0": torch.eye(12, 3).to_sparse()})
  save("list.pt", [torch.zeros(3)])
  save("bomb.pt", {"weight_ih_l0": torch.zeros(1).expand(16384, 16384)})  # 1 GiB of one float
  save("overlap.pt", {"weight_ih_l0": torch.zeros(8191).as_strided((4096, 4096), (1, 1))})
  for protocol in (2, 4):  # GLOBAL, STACK_GLOBAL
    out[f"payload{protocol}.pt"] = folder / f"payload{protocol}.pt"
    out[f"payload{protocol}.pt"].write_bytes(pickle.dumps(_Payload(), protocol=protocol))
  out["dir"] = folder / "a-directory"
  out["dir"].mkdir()
  out["missing"] = folder / "missing.pt"
  return out


class _Payload:
  def __reduce__(self):
    return (os.system, ("touch /tmp/jaxgru-hostile-payload-ran",))


TORCH_LOADERS = {"load": parity.load, "load_tensors": parity.load_tensors}


@pytest.mark.parametrize("loader", TORCH_LOADERS)
def test_truncated_random_and_empty_files_are_value_errors(files, loader):
  broken = [k for k in files if ".cut" in k] + ["random.pt", "random.bin", "empty.pt"]
  for name in broken:
    _refused(TORCH_LOADERS[loader], files[name])


@pytest.mark.parametrize("loader", TORCH_LOADERS)
@pytest.mark.parametrize(
  ("name", "expected", "match"),
  [
    ("dir", ValueError, "is a directory"),
    ("missing", FileNotFoundError, None),
    ("int-value.pt", ValueError, "values that are not tensors: {'weight_ih_l0': 'int'}"),
    ("int-key.pt", ValueError, "keys must be str names, these are not: [1]"),
    ("meta.pt", ValueError, "meta tensor"),
    ("sparse.pt", ValueError, "sparse"),
    ("list.pt", ValueError, "not a state dict"),
    ("bomb.pt", ValueError, "(16384, 16384) tensor (1.0 GiB once its elements are read) on 4 bytes"),
    ("overlap.pt", ValueError, "(4096, 4096) tensor"),
    ("payload2.pt", ValueError, "It was not executed"),
    ("payload4.pt", ValueError, "nothing in it was executed"),
  ],
)
def test_each_hostile_torch_file_ends_in_a_documented_error(files, loader, name, expected, match):
  marker = pathlib.Path("/tmp/jaxgru-hostile-payload-ran")
  marker.unlink(missing_ok=True)
  _refused(TORCH_LOADERS[loader], files[name], expected, match)
  assert not marker.exists(), "the pickled payload ran"


def test_a_stride_zero_bomb_is_refused_before_any_memory_is_taken(files):
  """A 1.5 KB file describing 1 GiB: peak memory stays near the process's own (it was 1.39 GB)."""
  proc = run_python(
    f"""
    import resource
    import parity
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for load in (parity.load_tensors, parity.load):
      try:
        load({str(files["bomb.pt"])!r})
      except ValueError:
        pass
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """
  )
  grown_mb = float(proc.stdout.strip().splitlines()[-1])
  assert files["bomb.pt"].stat().st_size < 4096
  assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB reading a {files['bomb.pt'].stat().st_size}-byte file"


def test_tied_and_ordinary_files_still_load(files, tmp_path):
  """The checks refuse views that repeat elements, not tensors sharing a storage."""
  embedding = torch.randn(5, 3)
  torch.save({"encoder.weight": embedding, "decoder.weight": embedding, "part": embedding[1:3]}, tmp_path / "tied.pt")
  arrays = parity.load_tensors(tmp_path / "tied.pt")
  assert arrays["encoder.weight"] is arrays["decoder.weight"] and arrays["part"].shape == (2, 3)
  assert set(parity.load(files["good.pt"])) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
  assert set(parity.load(files["legacy.pt"])) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}


# ONNX


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict[str, pathlib.Path]:
  """A GRU saved with its weights in an external file beside it, and models whose external data
  points outside their folder: ``../``, an absolute path, a symbolic link, a name that exists
  only under the working directory."""
  base = tmp_path_factory.mktemp("onnx")
  gru = torch.nn.GRU(3, 4)
  out = {"torch": gru}
  (base / "model").mkdir()
  out["external"] = base / "model" / "gru.onnx"
  onnx.save_model(
    ponnx.model_proto(parity.from_torch(gru)),
    str(out["external"]),
    save_as_external_data=True,
    all_tensors_to_one_file=True,
    location="data.bin",
    size_threshold=0,
  )
  data = (base / "model" / "data.bin").read_bytes()
  (base / "secret").mkdir()
  (base / "secret" / "data.bin").write_bytes(data)
  (base / "cwd" / "sub").mkdir(parents=True)
  (base / "cwd" / "sub" / "data.bin").write_bytes(bytes(len(data)))  # zeros, under the working directory
  out["cwd"] = base / "cwd"

  def relocated(name: str, location: str) -> pathlib.Path:
    model = onnx.load(str(out["external"]), load_external_data=False)
    for tensor in model.graph.initializer:
      for entry in tensor.external_data:
        if entry.key == "location":
          entry.value = location
    (base / name).mkdir()
    onnx.save_model(model, str(base / name / "gru.onnx"))
    return base / name / "gru.onnx"

  out["parent"] = relocated("parent", "../secret/data.bin")
  out["absolute"] = relocated("absolute", str(base / "secret" / "data.bin"))
  out["working-dir"] = relocated("working-dir", "sub/data.bin")
  out["symlink"] = relocated("symlink", "data.bin")
  (base / "symlink" / "data.bin").symlink_to(base / "secret" / "data.bin")
  out["random"] = base / "random.onnx"
  out["random"].write_bytes(np.random.default_rng(0).bytes(300))
  out["truncated"] = base / "truncated.onnx"
  whole = ponnx.model_proto(parity.from_torch(gru)).SerializeToString()
  out["truncated"].write_bytes(whole[: len(whole) // 2])
  out["dir"] = base / "model"
  out["missing"] = base / "missing.onnx"
  return out


def _x():
  return np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)


def test_external_data_is_read_from_the_models_folder_whatever_the_working_directory(onnx_files, monkeypatch):
  want = onnx_files["torch"](torch.from_numpy(_x()))[0].detach().numpy()
  monkeypatch.chdir(onnx_files["cwd"])
  output, _ = ponnx.run_onnx(onnx_files["external"], _x())
  np.testing.assert_allclose(output, want, atol=1e-6)
  params = ponnx.onnx_to_params(onnx_files["external"])
  np.testing.assert_array_equal(params["weight_hh_l0"], onnx_files["torch"].weight_hh_l0.detach().numpy())


ONNX_LOADERS = {"run_onnx": lambda path: ponnx.run_onnx(path, _x()), "onnx_to_params": ponnx.onnx_to_params}


@pytest.mark.parametrize("loader", ONNX_LOADERS)
@pytest.mark.parametrize("name", ["parent", "absolute", "symlink", "working-dir"])
def test_external_data_outside_the_models_folder_is_refused(onnx_files, monkeypatch, loader, name):
  monkeypatch.chdir(onnx_files["cwd"])  # where "sub/data.bin" exists: it must not be read
  _refused(ONNX_LOADERS[loader], onnx_files[name], ValueError, "outside the model's folder")


@pytest.mark.parametrize("loader", ONNX_LOADERS)
@pytest.mark.parametrize(
  ("name", "expected", "match"),
  [
    ("random", ValueError, "not a readable ONNX model"),
    ("truncated", ValueError, "not a readable ONNX model"),
    ("dir", ValueError, "is a directory"),
    ("missing", FileNotFoundError, None),
  ],
)
def test_broken_onnx_files_end_in_documented_errors(onnx_files, loader, name, expected, match):
  _refused(ONNX_LOADERS[loader], onnx_files[name], expected, match)


def test_a_model_proto_with_external_data_is_refused(onnx_files):
  model = onnx.load(str(onnx_files["external"]), load_external_data=False)
  for call in ONNX_LOADERS.values():
    with pytest.raises(ValueError, match="stored in external files, which a ModelProto has no folder to read from"):
      call(model)


def _model_bytes(mode: str) -> bytes:
  init = {"GRU": jaxgru.init_gru_params, "LSTM": jaxgru.init_lstm_params, "RNN": jaxgru.init_rnn_params}[mode]
  return ponnx.model_proto(init(jax.random.key(0), 3, 4, bidirectional=True), lengths=True).SerializeToString()


def _edited(data: bytes, edit) -> bytes:
  model = onnx.ModelProto.FromString(data)
  edit(model)
  return model.SerializeToString()


def _weight(model, name="W_l0"):
  return next(t for t in model.graph.initializer if t.name == name)


# name -> (the model's bytes, what run_onnx's error says and onnx_to_params's; None: it runs, or reads)
ODD_MODELS = {
  "data-type-34": (
    _edited(_model_bytes("GRU"), lambda m: setattr(_weight(m), "data_type", 34)),
    "does not have valid data type",
    "'W_l0' (data_type 34, dims [2, 12, 3]) cannot be read",
  ),
  "empty": (b"", "holds no graph", "holds no graph"),
  "op-type-not-utf8": (_model_bytes("GRU").replace(b"Transpose", b"Transpos\xff"), "UnicodeDecodeError", "not UTF-8 text"),
  "direction-not-utf8": (
    _model_bytes("LSTM").replace(b"bidirectional", b"bidirectiona\xff"),
    "UnicodeDecodeError",
    "not UTF-8 text: b'bidirectiona\\xff'",
  ),
  "dim-name-not-utf8": (_model_bytes("RNN").replace(b"batch", b"batc\xff"), "holds text that is not UTF-8", None),
  "unknown-op": (
    _edited(_model_bytes("GRU"), lambda m: setattr(m.graph.node[-1], "op_type", "NoSuchOp")),
    "ONNX Runtime cannot load the model",
    None,  # its GRU nodes are intact: read as they are
  ),
  "unshaped-input": (_edited(_model_bytes("GRU"), lambda m: m.graph.input[0].type.tensor_type.ClearField("shape")), None, None),
  "unnamed-dims": (
    _edited(_model_bytes("LSTM"), lambda m: [d.Clear() for d in m.graph.input[0].type.tensor_type.shape.dim]),
    None,
    None,
  ),
}


@pytest.mark.parametrize("name", ODD_MODELS)
def test_odd_onnx_models_run_or_end_in_documented_errors_naming_the_file(name, tmp_path):
  """Legal models with unshaped or unnamed dimensions run (they are free); odd content is a ValueError naming the file."""
  data, run_words, read_words = ODD_MODELS[name]
  path = tmp_path / f"{name}.onnx"
  path.write_bytes(data)
  run = lambda p: ponnx.run_onnx(p, _x(), lengths=np.array([5, 3]))
  if run_words is None:
    output, _ = run(path)
    assert output.shape == (5, 2, 8)
  else:
    _refused(run, path, ValueError, run_words)
  if read_words is None:
    assert sorted(ponnx.onnx_to_params(path))[0] == "bias_hh_l0"
  else:
    _refused(ponnx.onnx_to_params, path, ValueError, read_words)


@pytest.mark.parametrize("mode", ["GRU", "LSTM", "RNN"])
def test_corrupt_onnx_files_only_end_in_documented_errors_naming_the_file(mode, tmp_path):
  """Truncations at 40 points, 150 single-byte changes and every field of the graph's messages
  cleared, each through both loaders: a result or a documented error that names the file."""
  data = _model_bytes(mode)
  rng = np.random.default_rng(0)
  broken = [data[:k] for k in range(0, len(data), max(1, len(data) // 40))]
  for _ in range(150):
    flipped = bytearray(data)
    flipped[rng.integers(len(data))] = rng.integers(256)
    broken.append(bytes(flipped))
  model = onnx.ModelProto.FromString(data)
  for part in [model.graph, *model.graph.node, *model.graph.input, *model.graph.output, *model.graph.initializer]:
    for field, _ in part.ListFields():
      part.ClearField(field.name)
      broken.append(model.SerializeToString())
      model = onnx.ModelProto.FromString(data)
      break
  x, lengths = _x(), np.array([5, 3])
  for k, content in enumerate(broken):
    path = tmp_path / f"{mode}-{k}.onnx"
    path.write_bytes(content)
    for loader in (lambda p: ponnx.run_onnx(p, x, lengths=lengths), ponnx.onnx_to_params):
      try:
        loader(path)
      except DOCUMENTED as err:
        assert type(err) in DOCUMENTED and str(path) in str(err), f"{type(err).__name__}: {err}"


def test_onnx_runtime_refusals_are_value_errors(onnx_files):
  with pytest.raises(ValueError, match="x's last axis must be the input size 3"):
    ponnx.run_onnx(onnx_files["external"], np.zeros((5, 2, 2), np.float32))


# Keras


def test_a_keras_file_is_read_and_broken_ones_are_documented_errors(tmp_path):
  keras = pkeras.keras
  model = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4, return_sequences=True)])
  model.save(tmp_path / "gru.keras")
  from_file = pkeras.keras_to_params(str(tmp_path / "gru.keras"))
  from_model = pkeras.keras_to_params(model)
  assert all(np.array_equal(from_file[k], from_model[k]) for k in from_model)
  (tmp_path / "random.keras").write_bytes(np.random.default_rng(0).bytes(200))
  _refused(pkeras.keras_to_params, tmp_path / "random.keras", ValueError, "not a Keras model that can be read safely")
  _refused(pkeras.keras_to_params, tmp_path, ValueError, "is a directory")
  _refused(pkeras.keras_to_params, tmp_path / "missing.keras", FileNotFoundError)


def test_the_probe_script_of_this_suite_runs_in_a_fresh_process(files):
  """The loaders import cleanly on their own (no state left by the fixtures' imports)."""
  proc = run_python(
    textwrap.dedent(
      f"""
      import parity
      try:
        parity.load_tensors({str(files["int-key.pt"])!r})
      except ValueError as error:
        print("refused:", error)
      """
    )
  )
  assert "refused:" in proc.stdout and "keys must be str names" in proc.stdout
