"""``python -m parity``: the sweep prints one table and its exit status says whether all agreed."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import torch

import parity
from parity.proof import cli, frameworks

ROOT = pathlib.Path(__file__).parent.parent


def test_quick_sweep_runs_as_a_program():
  done = subprocess.run(
    [sys.executable, "-m", "parity", "--quick", "--cpu-only", "--no-frameworks"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stdout + done.stderr
  out = done.stdout
  assert "device  module" in out and "worst quantity" in out
  rows = [line for line in out.splitlines() if line.startswith("cpu ")]
  assert len(rows) == 18 and all(line.endswith("yes") for line in rows)
  assert sum(" float64 " in line for line in rows) == 9 and sum(" float32 " in line for line in rows) == 9
  assert sum(line.split()[-7] == "yes" for line in rows) == 8  # the lengths column: 4 layers x 2 dtypes
  assert sum(" LSTM L=2 bi batch_first proj_size=2 " in line for line in rows) == 4
  assert sum(" RNN L=2 bi bias=F nonlinearity=relu " in line for line in rows) == 4
  assert "18 of 18 runs within tolerance" in out


def test_the_sweep_runs_keras_and_onnx_runtime_against_torch(monkeypatch, capsys):
  pytest.importorskip("parity.frameworks.keras", reason="needs the keras extra")
  pytest.importorskip("parity.frameworks.onnx", reason="needs the onnx extra")
  configs = [
    cli.Config(num_layers=2, bidirectional=True, batch_first=True),
    cli.Config(cell=True),
    cli.Config(False, 2, True, True, False, mode="LSTM"),
    cli.Config(False, 1, False, True, True, mode="LSTM", proj_size=2),
    cli.Config(False, 2, True, True, False, mode="RNN", nonlinearity="relu"),
  ]
  monkeypatch.setattr(cli, "sweep", lambda name: configs)
  monkeypatch.setattr(cli, "run", lambda *args: [])  # torch against jaxgru: tested above
  assert cli.main(["--cpu-only"]) == 0
  out = capsys.readouterr().out
  for name in ("Keras", "ONNX Runtime"):
    rows = [line for line in out.splitlines() if f" {name}: GRU L=2 bi batch_first " in line]
    assert len(rows) == 2 and all(" float32 " in row and row.endswith("yes") for row in rows), out
  for name in ("Keras", "ONNX Runtime"):
    rows = [line for line in out.splitlines() if f" {name}: " in line]
    assert [row.split(f" {name}: ")[1].split()[0] for row in rows] == ["GRU"] * 2 + ["LSTM"] * 2 + ["RNN"] * 2, out
    assert all(row.endswith("yes") for row in rows) and [row.count(" 3 ") for row in rows] == [0, 0, 1, 1, 0, 0], out
  # neither framework has a lone cell, nor an LSTM with a projection
  assert "12 of 12 runs within tolerance" in out, out


def test_a_missing_framework_is_skipped_with_a_note(monkeypatch):
  monkeypatch.setitem(sys.modules, "parity.frameworks.onnx", None)  # as if onnx were not installed
  found, notes = frameworks.available()
  assert "ONNX Runtime" not in found and len(notes) == 1
  assert notes[0].startswith("note: ONNX Runtime skipped") and "install the onnx extra" in notes[0]


def test_sweeps_cover_every_pair_of_settings():
  for name in ("default", "full"):
    grus = [c for c in cli.sweep(name) if not c.cell and c.mode == "GRU"]
    fields = ("num_layers", "bidirectional", "bias", "batch_first")
    for a in fields:
      for b in fields:
        pairs = {(getattr(c, a), getattr(c, b)) for c in grus}
        assert len(pairs) == (2 if a == b else 4), (name, a, b)
  assert len(cli.sweep("full")) == 24 and {c.bias for c in cli.sweep("default") if c.cell} == {True, False}
  others = {(c.mode, c.cell, c.proj_size > 0, c.nonlinearity) for c in cli.sweep("default") if c.mode != "GRU"}
  assert {("LSTM", False, True, "tanh"), ("LSTM", False, False, "tanh"), ("LSTM", True, False, "tanh")} <= others
  assert {("RNN", False, False, "relu"), ("RNN", False, False, "tanh"), ("RNN", True, False, "relu")} <= others


def test_a_mismatch_exits_nonzero_with_the_table(monkeypatch, capsys):
  real = parity.from_torch

  def off_by_a_little(module, **kwargs):
    model = real(module, **kwargs)
    model.weight_ih[...] = model.weight_ih[...] * (1 + 1e-6)  # (weight_hh would not show: h0 is zero)
    return model

  monkeypatch.setattr(cli, "sweep", lambda name: [cli.Config(cell=True)])
  monkeypatch.setattr(parity, "from_torch", off_by_a_little)
  assert cli.main(["--cpu-only"]) == 1
  out = capsys.readouterr().out
  assert "NO" in out and "1 MISMATCHED" in out


def test_devices_without_a_gpu(monkeypatch):
  found, note = cli.devices()
  assert found[0].name == "cpu" and found[0].torch == torch.device("cpu")
  monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
  found, note = cli.devices()
  if len(found) == 1:  # JAX has no GPU here: the sweep says so rather than half-running
    assert "only torch sees a GPU" in note


@pytest.mark.parametrize("seed", ["-1", "4294967296", "x"])
def test_bad_seed_is_an_argparse_error(seed, capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["--seed", seed])
  assert exc.value.code == 2 and "argument --seed: " in capsys.readouterr().err
