"""``python -m parity``: torch's GRU, LSTM and RNN (and their cells) against jaxgru over a sweep, on this machine's devices.

Every configuration runs in float64 and float32, with and without ``lengths`` (packed
sequences on torch's side), every parameter randomised, biases included. Each run compares the
output, ``h_n`` (an LSTM's ``c_n``) and the gradients of every parameter, the input and ``h0``
(an LSTM's ``c0``) (:func:`parity.compare`); the table shows the worst of them per run. Matrix products run at full
precision on both sides (JAX ``"highest"``, torch TF32 off). The exit status is 1 when any run
is past its tolerance (float64 1e-10, float32 1e-5, relative above magnitude 1), else 0.

Devices: the CPU always; a GPU as well when both torch (CUDA) and JAX see one.

Sweeps: the default covers every pair of settings of layers (1, 2), bidirectional, bias and
batch_first (6 GRU configurations, plus GRUCell with and without bias), and four LSTMs (with and
without ``proj_size``) and RNNs (tanh and ReLU) spread over the same settings, with LSTMCell and
RNNCell; ``--full`` runs the GRU's whole product (16) beside them; ``--quick`` two GRUs, a
cell, a projected LSTM and a ReLU RNN.

Other frameworks (:mod:`parity.proof.frameworks`): every GRU, RNN and LSTM without a projection
of the sweep also goes to Keras 3 layers and to an ONNX model, run by Keras (JAX backend) and
ONNX Runtime (CPU) against torch, float32, with and without lengths; a framework whose package
is missing is skipped with a note, and ``--no-frameworks`` skips both.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import sys
from collections.abc import Sequence

import flax
import jax
import numpy as np

import parity
from jaxgru import _compat
from parity import _argtypes, _extras

try:  # the parity extra; --help works without it
  import torch

  from parity.proof import frameworks
  from parity.proof import report as _report
except ModuleNotFoundError as error:
  _MISSING: ModuleNotFoundError | None = _extras.missing(error, "python -m parity")
else:
  _MISSING = None

I, H, T, B = 3, 5, 6, 4
LENGTHS = np.array([6, 3, 1, 4])  # unsorted, a length-1 and a full sequence


@dataclasses.dataclass(frozen=True)
class Config:
  cell: bool = False
  num_layers: int = 1
  bidirectional: bool = False
  bias: bool = True
  batch_first: bool = False
  mode: str = "GRU"  # torch's layer: "GRU", "LSTM" or "RNN"
  proj_size: int = 0  # an LSTM's
  nonlinearity: str = "tanh"  # an RNN's

  def _options(self) -> dict:
    return {"LSTM": {} if self.cell else {"proj_size": self.proj_size}, "RNN": {"nonlinearity": self.nonlinearity}}.get(
      self.mode, {}
    )

  def __str__(self) -> str:
    extra = [f"{k}={v}" for k, v in self._options().items() if v]
    if self.cell:
      return " ".join([f"{self.mode}Cell", *([] if self.bias else ["bias=F"]), *extra])
    flags = [f"L={self.num_layers}", "bi" if self.bidirectional else "uni"]
    flags += [] if self.bias else ["bias=F"]
    flags += ["batch_first"] if self.batch_first else []
    return " ".join([self.mode, *flags, *extra])

  def state_sizes(self) -> tuple[int, ...]:
    """Each part of the initial state's feature size: (H,), or an LSTM's (P or H, H)."""
    return ((self.proj_size or H), H) if self.mode == "LSTM" else (H,)

  def torch_module(self, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    if self.cell:
      module = getattr(torch.nn, f"{self.mode}Cell")(I, H, bias=self.bias, dtype=dtype, **self._options())
    else:
      module = getattr(torch.nn, self.mode)(
        I,
        H,
        self.num_layers,
        bias=self.bias,
        batch_first=self.batch_first,
        bidirectional=self.bidirectional,
        dtype=dtype,
        **self._options(),
      )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
      for p in module.parameters():  # zero biases hide bugs: redraw everything
        p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) * 1.2 - 0.6)
    return module


def sweep(name: str) -> list[Config]:
  """The configurations of a named sweep: ``quick``, ``default`` (pairwise) or ``full``."""
  cells = [Config(cell=True), Config(cell=True, bias=False)]
  # the LSTM (projected or not) and the RNN (tanh or ReLU), each over the four settings' extremes
  others = [
    Config(False, 2, True, True, True, mode="LSTM", proj_size=2),
    Config(False, 1, False, False, False, mode="LSTM"),
    Config(False, 2, True, False, False, mode="RNN", nonlinearity="relu"),
    Config(False, 1, False, True, True, mode="RNN"),
    Config(cell=True, mode="LSTM"),
    Config(cell=True, bias=False, mode="RNN", nonlinearity="relu"),
  ]
  if name == "quick":
    return [Config(num_layers=2, bidirectional=True, batch_first=True), Config(bias=False), cells[0], others[0], others[2]]
  if name == "full":
    grus = [Config(False, *flags) for flags in itertools.product((1, 2), (False, True), (True, False), (False, True))]
    return grus + cells + others
  # every pair of values of any two of (layers, bidirectional, bias, batch_first) occurs at least once
  pairwise = [(1, False, True, False), (1, True, False, True), (2, False, False, True), (2, True, True, False)]
  pairwise += [(1, False, True, True), (2, True, False, False)]
  return [Config(False, *flags) for flags in pairwise] + cells + others


@dataclasses.dataclass(frozen=True)
class Device:
  name: str
  torch: torch.device
  jax: jax.Device


def devices(cpu_only: bool = False) -> tuple[list[Device], str | None]:
  """The CPU, and a GPU when both torch and JAX have one; with a note when only one side does."""
  found = [Device("cpu", torch.device("cpu"), jax.devices("cpu")[0])]
  if cpu_only:
    return found, None
  try:
    jax_gpus = jax.devices("gpu")
  except RuntimeError:
    jax_gpus = []
  torch_gpu = torch.cuda.is_available()
  if jax_gpus and torch_gpu:
    found.append(Device("gpu", torch.device("cuda", 0), jax_gpus[0]))
    return found, None
  if jax_gpus or torch_gpu:
    side = "JAX" if jax_gpus else "torch"
    return found, f"note: only {side} sees a GPU, so the sweep runs on the CPU alone"
  return found, None


def _inputs(config: Config, dtype: type, seed: int, with_h0: bool) -> tuple[np.ndarray, np.ndarray | tuple | None]:
  """x and h0 (an LSTM's pair (h0, c0); None without ``with_h0``) for ``config``."""
  rng = np.random.default_rng(seed)
  if config.cell:
    x, rows = rng.standard_normal((B, I)).astype(dtype), (B,)
  else:
    x = rng.standard_normal((B, T, I) if config.batch_first else (T, B, I)).astype(dtype)
    rows = (config.num_layers * (2 if config.bidirectional else 1), B)
  if not with_h0:
    return x, None
  parts = tuple(rng.standard_normal((*rows, size)).astype(dtype) for size in config.state_sizes())
  return x, parts if config.mode == "LSTM" else parts[0]


def run(configs: Sequence[Config], devices_: Sequence[Device], seed: int = 0) -> list[dict]:
  """One :func:`parity.compare` per device, configuration, dtype and lengths setting."""
  rows = []
  dtypes = ((torch.float64, np.float64), (torch.float32, np.float32))
  for device, (index, config), (t_dtype, np_dtype) in itertools.product(devices_, enumerate(configs), dtypes):
    for lengths in (False,) if config.cell else (False, True):
      with_h0 = (index + lengths) % 2 == 1  # half the runs pass h0 (and compare its gradient)
      module = config.torch_module(t_dtype, seed + index).to(device.torch)
      jax_module = parity.from_torch(module)
      x, h0 = _inputs(config, np_dtype, seed + index, with_h0)
      result = parity.compare(module, jax_module, x, h0, lengths=LENGTHS if lengths else None, seed=seed, jax_device=device.jax)
      worst = result.worst()
      rows.append(
        dict(
          device=device.name,
          config=str(config),
          dtype=np.dtype(np_dtype).name,
          lengths="yes" if lengths else "-",
          h0="yes" if with_h0 else "-",
          quantities=len(result.rows),
          worst=worst.name,
          max_abs=worst.max_abs,
          scale=max(1.0, worst.reference),
          tol=result.tol,
          ok=result.ok,
          report=result,
        )
      )
  return rows


def table(rows: Sequence[dict]) -> str:
  head = ("device", "module", "dtype", "lengths", "h0", "compared", "worst quantity", "max abs", "tol x scale", "ok")
  body = [
    (
      r["device"],
      r["config"],
      r["dtype"],
      r["lengths"],
      r["h0"],
      str(r["quantities"]),
      r["worst"],
      f"{r['max_abs']:.2e}",
      f"{r['tol'] * r['scale']:.1e}",
      "yes" if r["ok"] else "NO",
    )
    for r in rows
  ]
  widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
  line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
  return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def build_parser() -> argparse.ArgumentParser:
  """``python -m parity``'s command line."""
  parser = argparse.ArgumentParser(prog="python -m parity", description=_argtypes.plain(__doc__.split("\n\n")[0]))
  size = parser.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_true", help="two GRUs, a cell, a projected LSTM and a ReLU RNN")
  size.add_argument("--full", action="store_true", help="every combination of the four GRU settings, and the LSTMs and RNNs")
  parser.add_argument("--cpu-only", action="store_true", help="skip a GPU even when there is one")
  parser.add_argument("--seed", type=_argtypes.seed, default=0, help="weights, inputs and cotangents, in [0, 2**32) (default 0)")
  parser.add_argument("--verbose", action="store_true", help="also print every run's full report")
  parser.add_argument("--no-frameworks", action="store_true", help="skip Keras and ONNX Runtime (the other frameworks)")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if _MISSING is not None:
    parser.exit(2, f"{_MISSING}\n")
  configs = sweep("quick" if args.quick else "full" if args.full else "default")
  found, note = devices(args.cpu_only)
  print(
    f"parity sweep: torch {torch.__version__}, jax {jax.__version__}, flax {flax.__version__}, "
    f"python {platform.python_version()}; devices: {', '.join(d.name for d in found)}"
  )
  print("precision: JAX matmuls 'highest', torch TF32 off; every parameter randomised; dropout off")
  print(
    f"pass: max abs <= tol x max(1, max |torch|); tol float64 {_report.TOLERANCES['float64']:g}, float32 {_report.TOLERANCES['float32']:g}"
  )
  if note:
    print(note)
  with _compat.enable_x64(True):
    rows = run(configs, found, args.seed)
  if not args.no_frameworks:
    framework_rows, notes = frameworks.run(configs, _inputs, LENGTHS, args.seed)
    rows += framework_rows
    for note in notes:
      print(note)
  print(table(rows))
  failed = [r for r in rows if not r["ok"]]
  if args.verbose or failed:
    for r in failed if not args.verbose else rows:
      print(f"\n{r['device']} {r['config']} {r['dtype']} lengths={r['lengths']} h0={r['h0']}:\n{r['report']}")
  print(f"\n{len(rows) - len(failed)} of {len(rows)} runs within tolerance" + (f"; {len(failed)} MISMATCHED" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
