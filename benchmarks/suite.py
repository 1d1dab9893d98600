"""jaxgru against torch.nn.GRU and Flax's nnx.RNN(nnx.GRUCell), side by side, in one process.

Run ``python -m benchmarks`` (``--help`` for the grid, modes, contenders and repeats). For every
shape and mode each contender is compiled apart (compile time reported), warmed up, then timed
round-robin: one call of each contender in turn, repeated, so that drift of a shared machine
falls on all of them alike. Medians are reported with their interquartile range.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

import jaxgru
from benchmarks import machine

CONTENDERS = ("torch", "jaxgru", "jaxgru_nnx", "flax")
MODES = ("forward", "fwd+bwd", "train")


@dataclasses.dataclass(frozen=True)
class Shape:
  steps: int
  batch: int
  input_size: int
  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False

  @property
  def directions(self) -> int:
    return 2 if self.bidirectional else 1

  def __str__(self) -> str:
    s = f"{self.steps}x{self.batch}x{self.input_size}x{self.hidden_size}"
    return s + (f"xL{self.num_layers}" if self.num_layers > 1 else "") + ("xbi" if self.bidirectional else "")


DEFAULT_SHAPES = (
  Shape(10, 190, 1, 16),
  Shape(100, 64, 128, 128),
  Shape(100, 64, 512, 512),
  Shape(100, 64, 1024, 1024),
  Shape(1000, 16, 64, 128),
  Shape(100, 64, 256, 256, 2, True),
)

_SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)((?:xL\d+)?)((?:xbi)?)$")


def parse_shape(text: str) -> Shape:
  """``TxBxIxH``, optionally followed by ``xL<layers>`` and ``xbi``: ``100x64x256x256xL2xbi``."""
  match = _SHAPE.match(text.strip())
  if not match:
    raise argparse.ArgumentTypeError(f"shape must look like TxBxIxH[xL<layers>][xbi], e.g. 100x64x128x128xL2xbi; got {text!r}")
  steps, batch, inputs, hidden = (int(match.group(i)) for i in range(1, 5))
  layers = int(match.group(5)[2:]) if match.group(5) else 1
  if min(steps, batch, inputs, hidden, layers) < 1:
    raise argparse.ArgumentTypeError(f"every size in a shape must be >= 1, got {text!r}")
  return Shape(steps, batch, inputs, hidden, layers, bool(match.group(6)))


def flops(shape: Shape, mode: str) -> float:
  """Matrix-product FLOPs: 2*T*B*3H*(I_l + H) per layer and direction forward; backward twice that."""
  forward = 0.0
  for layer in range(shape.num_layers):
    inputs = shape.input_size if layer == 0 else shape.directions * shape.hidden_size
    forward += shape.directions * 2 * shape.steps * shape.batch * 3 * shape.hidden_size * (inputs + shape.hidden_size)
  return forward if mode == "forward" else 3 * forward


# ----------------------------------------------------------------------------- contenders


def _torch_fns(shape: Shape, x: np.ndarray, cot: np.ndarray, device: str) -> dict[str, Callable[[], Any]]:
  torch.manual_seed(0)
  model = torch.nn.GRU(shape.input_size, shape.hidden_size, shape.num_layers, bidirectional=shape.bidirectional).to(device)
  xt = torch.from_numpy(x).to(device)
  xg = xt.clone().requires_grad_(True)
  ct = torch.from_numpy(cot).to(device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def forward():
    with torch.no_grad():
      out = model(xt)[0]
    sync()
    return out

  def fwd_bwd():
    model.zero_grad(set_to_none=True)
    xg.grad = None
    (model(xg)[0] * ct).sum().backward()
    sync()

  def train():
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(xt)[0], ct).backward()
    opt.step()
    sync()

  return {"forward": forward, "fwd+bwd": fwd_bwd, "train": train}, model


def _flax_model(shape: Shape) -> Callable:
  """Flax's own GRU: nnx.RNN(nnx.GRUCell) per layer (nnx.Bidirectional when bidirectional)."""
  rngs = nnx.Rngs(0)
  layers = []
  for layer in range(shape.num_layers):
    inputs = shape.input_size if layer == 0 else shape.directions * shape.hidden_size

    def rnn(reverse: bool, inputs=inputs) -> nnx.RNN:
      cell = nnx.GRUCell(inputs, shape.hidden_size, rngs=rngs)
      return nnx.RNN(cell, time_major=True, reverse=reverse, keep_order=True, rngs=rngs)

    layers.append(nnx.Bidirectional(rnn(False), rnn(True), time_major=True, rngs=rngs) if shape.bidirectional else rnn(False))
  return nnx.List(layers) if hasattr(nnx, "List") else layers


def _jax_fns(kind: str, shape: Shape, x: jax.Array, cot: jax.Array, torch_model: torch.nn.Module) -> dict[str, Any]:
  """Jitted (fn, args) per mode; fn(*args) returns something to block on (train returns the new state)."""
  if kind == "flax":
    graphdef, params, rest = nnx.split(_flax_model(shape), nnx.Param, ...)

    def apply(p, x):
      out = x
      zeros = jnp.zeros((x.shape[1], shape.hidden_size), x.dtype)  # the carry, as torch's default h0
      for layer in nnx.merge(graphdef, p, rest):
        out = layer(out, initial_carry=(zeros, zeros) if shape.bidirectional else zeros)
      return out

  elif kind == "jaxgru":
    params = {k: jnp.asarray(v.detach().cpu().numpy()) for k, v in torch_model.state_dict().items()}

    def apply(p, x):
      return jaxgru.gru(p, x)[0]

  else:  # jaxgru_nnx: the NNX module, split once, merged inside the compiled function
    model = jaxgru.GRU(shape.input_size, shape.hidden_size, shape.num_layers, bidirectional=shape.bidirectional, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def apply(p, x):
      return nnx.merge(graphdef, p, rest)(x)[0]

  opt = optax.adam(1e-3)

  def fwd_bwd(p, x, cot):
    return jax.grad(lambda p, x: jnp.sum(apply(p, x) * cot), argnums=(0, 1))(p, x)

  def train(state, x, target):
    p, opt_state = state
    grads = jax.grad(lambda p: jnp.mean((apply(p, x) - target) ** 2))(p)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  return {
    "forward": (jax.jit(apply), (params, x)),
    "fwd+bwd": (jax.jit(fwd_bwd), (params, x, cot)),
    "train": (jax.jit(train), ((params, opt.init(params)), x, cot)),
  }


# ----------------------------------------------------------------------------- timing


def _median_iqr(values: list[float]) -> tuple[float, float]:
  q1, q2, q3 = np.percentile(values, [25, 50, 75])
  return float(q2), float(q3 - q1)


def run_cell(shape: Shape, mode: str, contenders: tuple[str, ...], args: argparse.Namespace, device: str) -> dict[str, Any]:
  """Compiles, checks and times every contender for one shape and mode, interleaved."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((shape.steps, shape.batch, shape.input_size)).astype(np.float32)
  cot = rng.standard_normal((shape.steps, shape.batch, shape.directions * shape.hidden_size)).astype(np.float32)
  torch_fns, torch_model = _torch_fns(shape, x, cot, device)
  calls: dict[str, Callable[[], Any]] = {}
  compile_s: dict[str, float] = {}
  max_error = None
  for kind in contenders:
    if kind == "torch":
      calls[kind] = torch_fns[mode]
      continue
    fn, fn_args = _jax_fns(kind, shape, jnp.asarray(x), jnp.asarray(cot), torch_model)[mode]
    start = time.perf_counter()
    compiled = fn.lower(*fn_args).compile()
    compile_s[kind] = time.perf_counter() - start
    calls[kind] = _jax_call(compiled, fn_args, mode)
    if kind == "jaxgru" and mode == "forward":  # the numbers being timed, against torch
      max_error = float(np.max(np.abs(np.asarray(compiled(*fn_args)) - torch_fns["forward"]().cpu().numpy())))
  for call in calls.values():  # warm-up
    for _ in range(args.warmup):
      call()
  times: dict[str, list[float]] = {k: [] for k in calls}
  deadline = time.perf_counter() + args.budget
  for rep in range(args.max_repeats):
    for kind, call in calls.items():
      start = time.perf_counter()
      call()
      times[kind].append(time.perf_counter() - start)
    if rep + 1 >= args.repeats and time.perf_counter() > deadline:
      break
  result: dict[str, Any] = {"shape": str(shape), "mode": mode, "gflop": flops(shape, mode) / 1e9, "results": {}}
  for kind, values in times.items():
    median, iqr = _median_iqr(values)
    result["results"][kind] = {
      "median_ms": median * 1e3,
      "iqr_ms": iqr * 1e3,
      "repeats": len(values),
      "compile_s": compile_s.get(kind),
    }
  if max_error is not None:
    result["max_abs_error_vs_torch"] = max_error
  return result


def _jax_call(compiled: Any, fn_args: tuple, mode: str) -> Callable[[], Any]:
  if mode != "train":
    return lambda: jax.block_until_ready(compiled(*fn_args))
  state = [fn_args[0]]

  def step():  # carries the training state from call to call, like a training loop
    state[0] = jax.block_until_ready(compiled(state[0], *fn_args[1:]))

  return step


# ----------------------------------------------------------------------------- reports


def ratio(cell: dict[str, Any], numerator: str, denominator: str = "jaxgru") -> float | None:
  r = cell["results"]
  if numerator in r and denominator in r:
    return r[numerator]["median_ms"] / r[denominator]["median_ms"]
  return None


def markdown(report: dict[str, Any]) -> str:
  m = report["machine"]
  lines = [
    f"Machine: {m['cpu']} ({m['cores']} cores), {m['device']}; {m['versions']}",
    f"Threads: {m['threads']}; float32, matmul precision {m['matmul_precision']}; peak matmul {report['peak_gflops']:.0f} GFLOP/s "
    f"({report['peak_source']}). Medians of interleaved repeats, compile excluded.",
    "",
    "| shape (TxBxIxH) | mode | torch ms | jaxgru ms | jaxgru_nnx ms | flax ms | torch/jaxgru | flax/jaxgru | jaxgru % of peak | jaxgru compile s |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for cell in report["cells"]:
    r = cell["results"]

    def ms(kind: str, r: dict = r) -> str:
      return f"{r[kind]['median_ms']:.2f}" if kind in r else "-"

    def fmt(value: float | None) -> str:
      return "-" if value is None else f"{value:.2f}x"

    peak = "-"
    if "jaxgru" in r:
      peak = f"{100 * cell['gflop'] / (r['jaxgru']['median_ms'] / 1e3) / report['peak_gflops']:.0f}%"
    compile_s = r.get("jaxgru", {}).get("compile_s")
    lines.append(
      f"| {cell['shape']} | {cell['mode']} | {ms('torch')} | {ms('jaxgru')} | {ms('jaxgru_nnx')} | {ms('flax')} | "
      f"{fmt(ratio(cell, 'torch'))} | {fmt(ratio(cell, 'flax'))} | {peak} | {'-' if compile_s is None else f'{compile_s:.2f}'} |"
    )
  if "seed_task" in report:
    from benchmarks import seed_task

    lines += ["", seed_task.describe(report["seed_task"])]
  if "memory" in report:
    from benchmarks import memory

    lines += ["", "```", memory.describe(report["memory"]), "```"]
  return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: pathlib.Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  cells = report["cells"]
  labels = [f"{c['shape']}\n{c['mode']}" for c in cells]
  pos = np.arange(len(cells))
  fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(cells)), 5))
  for offset, name in ((-0.2, "torch"), (0.2, "flax")):
    values = [ratio(c, name) or 0.0 for c in cells]
    ax.bar(pos + offset, values, width=0.4, label=f"{name} time / jaxgru time")
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.axhline(1.5, color="tab:red", linestyle="--", linewidth=0.8, label="1.5x")
  ax.set_xticks(pos, labels, rotation=90, fontsize=7)
  ax.set_ylabel("speed-up of jaxgru (higher is better)")
  ax.set_title(f"jaxgru vs torch.nn.GRU and nnx.RNN(GRUCell): {report['machine']['device']}")
  ax.legend()
  fig.tight_layout()
  tmp = path.with_suffix(".tmp.png")
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)


def write(report: dict[str, Any], out: pathlib.Path, name: str) -> list[pathlib.Path]:
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
  for path, text in ((paths[0], json.dumps(report, indent=2)), (paths[1], markdown(report))):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
  chart(report, paths[2])
  return paths


# ----------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
  p.add_argument(
    "--shape", action="append", type=parse_shape, help="TxBxIxH[xL<layers>][xbi]; repeatable; replaces the default grid"
  )
  p.add_argument("--add-shape", action="append", type=parse_shape, default=[], help="extends the default grid")
  p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
  p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
  p.add_argument("--repeats", type=_positive, default=5, help="minimum timed repeats per cell (default 5)")
  p.add_argument("--max-repeats", type=_positive, default=30)
  p.add_argument("--budget", type=float, default=2.0, help="seconds per cell after which no repeat beyond --repeats starts")
  p.add_argument("--warmup", type=_positive, default=1)
  p.add_argument("--torch-threads", type=_positive, help="torch.set_num_threads (default: torch's own choice)")
  p.add_argument("--tf32", choices=("off", "on"), default="off", help="TF32 matmuls on both sides (GPU only)")
  p.add_argument("--quick", action="store_true", help="a seconds-long smoke run: the seed's shape only, 2 repeats")
  p.add_argument("--no-seed-task", action="store_true", help="skip the seed task's 200-epoch training, both ways")
  p.add_argument("--no-memory", action="store_true", help="skip the remat peak-memory measurement")
  p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results")
  return p


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
  return value


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  shapes = list(args.shape or DEFAULT_SHAPES) + list(args.add_shape)
  if args.quick:
    shapes, args.repeats, args.max_repeats, args.budget = [DEFAULT_SHAPES[0]], 2, 2, 0.0
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
  tf32 = args.tf32 == "on"
  torch.backends.cuda.matmul.allow_tf32 = tf32
  torch.backends.cudnn.allow_tf32 = tf32
  precision = "tensorfloat32" if tf32 else "highest"
  with jax.default_matmul_precision(precision):
    info = machine.describe(device, precision)
    peak, source = machine.peak_gflops(device)
    print(machine.header(info), f"\npeak matmul: {peak:.0f} GFLOP/s ({source})", flush=True)
    cells = []
    for shape in shapes:
      for mode in args.modes:
        cell = run_cell(shape, mode, tuple(args.contenders), args, device)
        cells.append(cell)
        r = cell["results"]
        line = " ".join(f"{k}={v['median_ms']:.2f}ms" for k, v in r.items())
        print(
          f"{str(shape):>22} {mode:>8}  {line}  torch/jaxgru={ratio(cell, 'torch') or 0:.2f}x flax/jaxgru={ratio(cell, 'flax') or 0:.2f}x",
          flush=True,
        )
    report: dict[str, Any] = {"machine": info, "peak_gflops": peak, "peak_source": source, "cells": cells}
    if not args.no_seed_task and not args.quick:
      from benchmarks import seed_task

      report["seed_task"] = seed_task.run(device)
      print(seed_task.describe(report["seed_task"]), flush=True)
  if not args.no_memory and not args.quick:
    from benchmarks import memory

    report["memory"] = memory.run()
    print(memory.describe(report["memory"]), flush=True)
  name = device + ("-tf32" if tf32 else "")
  paths = write(report, args.out, name if not args.quick else name + "-quick")
  print("\n" + markdown(report))
  print("wrote", ", ".join(str(p) for p in paths))
  return 0
