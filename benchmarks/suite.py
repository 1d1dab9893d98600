"""jaxgru against torch's GRU, LSTM and RNN, Flax's cells, Keras and ONNX Runtime, side by side, in one process.

Run ``python -m benchmarks`` (``--help`` for the grid, modes, contenders and repeats). For every
shape and mode each JAX contender is compiled apart (compile time reported), every contender is
warmed up, then all are timed in rounds: in each round every contender, in a fresh random order,
runs a block of calls back to back (as in a training loop), after an untimed pause and call that
let the previous contender's threads go idle (torch's OpenMP threads keep spinning for a few ms
after a call and slow whoever runs next: benchmarks/NOTES.md, entry 11c). Rounds repeat, so
that drift of a shared machine falls on all of them alike; ``--interleave call`` times one call of
each in turn instead. Medians are reported with their interquartile range and minimum.

Then the seed's whole task (``benchmarks/seed_task.py``), peak memory over a long sequence with
and without ``remat`` (``benchmarks/memory.py``) and, on the CPU, recurrent-policy rollouts with
episode resets against a hand-written Flax scan and torchrl (``benchmarks/rl.py``). Reports go to ``benchmarks/results/``:
``<device>.json``, ``.md`` and ``.png`` (``cpu``, ``cuda``, ``cuda-tf32``) for the default run,
with ``-custom`` or ``-quick`` appended when the grid or the parts differ, so that a partial run
never replaces the full one.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import machine
from benchmarks.contenders import (
  CONTENDERS,
  DEVICE_ONLY,
  FORWARD_ONLY,
  OnnxRuntimeLayer,
  TorchGRU,
  jax_call,
  jax_fns,
  keras_missing,
  max_relative_error,
  onnxruntime_missing,
)
from benchmarks.report import chart, markdown, ratio, write
from benchmarks.shapes import DEFAULT_SHAPES, MODES, Shape, elementwise_flops, flops, matmul_flops, parse_shape

__all__ = [
  "CONTENDERS",
  "DEFAULT_SHAPES",
  "FORWARD_ONLY",
  "MODES",
  "PARTS",
  "Shape",
  "chart",
  "elementwise_flops",
  "flops",
  "main",
  "markdown",
  "matmul_flops",
  "parse_shape",
  "parser",
  "ratio",
  "run_cell",
  "write",
]

PARTS = ("grid", "seed", "memory", "rl")


def _stats(values: list[float]) -> dict[str, float]:
  q1, q2, q3 = np.percentile(values, [25, 50, 75])
  return {"median_ms": float(q2) * 1e3, "iqr_ms": float(q3 - q1) * 1e3, "min_ms": float(np.min(values)) * 1e3}


def run_cell(
  shape: Shape,
  mode: str,
  contenders: tuple[str, ...],
  args: argparse.Namespace,
  device: str,
  peak: float,
  *,
  device_only_on_cpu: bool = False,
) -> dict[str, Any]:
  """Compiles, checks and times every contender for one shape and mode, interleaved.
  ``device_only_on_cpu``: run :data:`DEVICE_ONLY` contenders on the CPU too (Pallas interpreted:
  the GPU script's dry run)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((shape.steps, shape.batch, shape.input_size)).astype(np.float32)
  cot = rng.standard_normal((shape.steps, shape.batch, shape.directions * shape.hidden_size)).astype(np.float32)
  reference = TorchGRU(shape, x, cot, device)  # also holds the weights jaxgru runs on
  calls: dict[str, Callable[[], Any]] = {}
  compile_s: dict[str, float] = {}
  checks: dict[str, float] = {}
  checked: dict[str, tuple[Any, tuple]] = {}
  for kind in contenders:
    if kind in DEVICE_ONLY and device == "cpu" and not device_only_on_cpu:
      continue
    if kind == "torch":
      calls[kind] = reference.calls[mode]
      continue
    if kind in FORWARD_ONLY:
      if mode != "forward" or device != "cpu":
        continue
      start = time.perf_counter()
      engine = OnnxRuntimeLayer(x, reference.state_dict())
      compile_s[kind] = time.perf_counter() - start  # the session: graph optimisation and weight prepacking
      calls[kind] = engine.forward
      continue
    fn, fn_args = jax_fns(kind, shape, jnp.asarray(x), jnp.asarray(cot), reference.state_dict())[mode]
    start = time.perf_counter()
    compiled = fn.lower(*fn_args).compile()
    compile_s[kind] = time.perf_counter() - start
    calls[kind] = jax_call(compiled, fn_args, mode)
    if kind in ("jaxgru", "jaxgru_pallas", "jaxgru_fused", "keras"):
      checked[kind] = compiled, fn_args
  first_ms: dict[str, float] = {}
  for kind, call in calls.items():  # warm-up; the first call (after compiling, for JAX) is kept apart
    for i in range(args.warmup):
      start = time.perf_counter()
      call()
      if i == 0:
        first_ms[kind] = (time.perf_counter() - start) * 1e3
  for kind, (compiled, fn_args) in checked.items():  # the numbers being timed, against torch's
    prefix = {"jaxgru_pallas": "pallas_", "jaxgru_fused": "fused_", "keras": "keras_"}.get(kind, "")
    if mode == "forward":
      got = np.asarray(compiled(*fn_args))
      checks[prefix + "max_abs_error_vs_torch"] = float(np.max(np.abs(got - reference.forward().cpu().numpy())))
    if mode == "fwd+bwd" and kind != "keras":  # Keras's gradients are a list of its own variables
      grads, grad_x = compiled(*fn_args)
      want, want_x = reference.gradients()
      checks[prefix + "max_rel_grad_error_vs_torch"] = max_relative_error({**grads, "input": grad_x}, {**want, "input": want_x})
  if "onnxruntime" in calls:  # the engine timed computes torch's numbers too
    want = reference.forward().cpu().numpy()
    checks["onnxruntime_max_abs_error_vs_torch"] = float(np.max(np.abs(calls["onnxruntime"]() - want)))
  order = list(calls)
  times: dict[str, list[float]] = {k: [] for k in order}
  deadline = time.perf_counter() + args.budget
  shuffle = np.random.default_rng(0)
  block = 1 if args.interleave == "call" else min(args.block, args.max_repeats)
  while True:
    # A fresh order every round: a rotation keeps who-follows-whom fixed (benchmarks/NOTES.md, entry 7).
    for kind in shuffle.permutation(order):
      if block > 1:  # untimed: the previous contender's threads go idle, this one's warm up again
        time.sleep(args.gap)
        calls[kind]()
      for _ in range(block):
        if args.settle:
          time.sleep(args.settle)  # untimed; a pause lets threads go to sleep, which costs both sides (NOTES, entry 7)
        start = time.perf_counter()
        calls[kind]()
        times[kind].append(time.perf_counter() - start)
    done = len(times[order[0]])
    if done >= args.max_repeats or (done >= args.repeats and time.perf_counter() > deadline):
      break
  total = flops(shape, mode)
  result: dict[str, Any] = {
    "shape": str(shape),
    "mode": mode,
    "gflop": total / 1e9,
    "matmul_gflop": matmul_flops(shape, mode) / 1e9,
    "results": {},
    **checks,
  }
  for kind in order:
    stats = _stats(times[kind])
    rate = total / (stats["median_ms"] / 1e3) / 1e9
    result["results"][kind] = {
      **stats,
      "repeats": len(times[kind]),
      "compile_s": compile_s.get(kind),
      "first_call_ms": first_ms[kind],
      "gflops_per_s": rate,
      "fraction_of_peak": rate / peak,
    }
  return result


# ----------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
  g = p.add_argument_group("the grid")
  g.add_argument(
    "--shape", action="append", type=parse_shape, help="TxBxIxH[xL<layers>][xbi]; repeatable; replaces the default grid"
  )
  g.add_argument("--add-shape", action="append", type=parse_shape, default=[], help="like --shape, but extends the default grid")
  g.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
  g.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
  t = p.add_argument_group("timing")
  t.add_argument("--repeats", type=_positive, default=5, help="minimum timed repeats per cell (default 5)")
  t.add_argument("--max-repeats", type=_positive, default=30, help="most timed repeats per cell (default 30)")
  t.add_argument(
    "--budget", type=_seconds, default=2.0, help="seconds per cell after which no repeat beyond --repeats starts (default 2)"
  )
  t.add_argument(
    "--settle",
    type=_seconds,
    default=0.0,
    help="untimed pause before every timed call, in s (default 0: threads stay warm as in a loop)",
  )
  t.add_argument("--warmup", type=_positive, default=1, help="untimed calls per contender after compiling (default 1)")
  t.add_argument(
    "--interleave",
    choices=("block", "call"),
    default="block",
    help="block (default): each contender's calls timed back to back, a block at a time; call: one call of each in turn",
  )
  t.add_argument(
    "--block", type=_positive, default=5, help="timed calls per contender per round with --interleave block (default 5)"
  )
  t.add_argument(
    "--gap", type=_seconds, default=0.1, help="untimed pause before each block, in s (default 0.1: torch's threads go idle)"
  )
  t.add_argument("--quick", action="store_true", help="a seconds-long smoke run: the seed's shape only, 2 repeats, grid only")
  s = p.add_argument_group("machine")
  s.add_argument("--torch-threads", type=_positive, help="torch.set_num_threads (default: torch's own choice)")
  s.add_argument("--tf32", choices=("off", "on"), default="off", help="TF32 matmuls on both sides (matters on GPUs only)")
  s.add_argument("--device", choices=("auto", "cpu"), default="auto", help="auto: the GPU when both torch and JAX see one")
  r = p.add_argument_group("parts and output")
  r.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default: all)")
  r.add_argument("--memory", action="store_true", help="run only the long-sequence memory measurement (--parts memory)")
  r.add_argument("--no-seed-task", action="store_true", help="skip the seed task's 200-epoch training, both ways")
  r.add_argument("--no-memory", action="store_true", help="skip the remat peak-memory measurement")
  r.add_argument("--no-rl", action="store_true", help="skip the recurrent-policy rollouts with episode resets")
  r.add_argument(
    "--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results", help="report directory (checked first)"
  )
  r.add_argument(
    "--name",
    type=_report_name,
    help="report file name without suffix, a plain name such as gpu-a100 (default: the device, e.g. cpu, cuda-tf32)",
  )
  return p


def _report_name(text: str) -> str:
  """A file name stem for ``--out``'s reports: letters, digits, ``.``, ``_``, ``-``; no folder, no ``..``."""
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
    raise argparse.ArgumentTypeError(
      f"must be a plain file name (letters, digits, '.', '_', '-', not starting with '.' or '-'), got {text!r}; "
      "put the folder in --out"
    )
  return text


def _check_out(parser: argparse.ArgumentParser, out: pathlib.Path) -> None:
  """Refuses (argparse error) an ``--out`` that cannot be created or written, before anything runs."""
  if out.exists() and not out.is_dir():
    parser.error(f"argument --out: {str(out)!r} is a file, not a folder")
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    parser.error(f"argument --out: cannot create the folder {str(out)!r}: {err.strerror or err}")
  try:  # what os.access cannot tell: read-only mounts, /proc, root's permissions
    with tempfile.TemporaryFile(dir=out):
      pass
  except OSError as err:
    parser.error(f"argument --out: cannot write in the folder {str(out)!r}: {err.strerror or err}")


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
  return value


def _seconds(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}") from None
  if not value >= 0:
    raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
  return value


def _resolve(args: argparse.Namespace) -> tuple[list[Shape], list[str]]:
  """The shapes and parts a parsed command line asks for."""
  shapes = list(args.shape or DEFAULT_SHAPES) + list(args.add_shape)
  parts = ["memory"] if args.memory else [p for p in PARTS if p in args.parts]
  skipped = {"seed": args.no_seed_task, "memory": args.no_memory, "rl": args.no_rl}
  parts = [p for p in parts if not skipped.get(p, False)]
  if args.quick:
    shapes, parts = [DEFAULT_SHAPES[0]], ["grid"]
    args.repeats, args.max_repeats, args.budget = 2, 2, 0.0
  return shapes, parts


def _device(requested: str) -> str:
  if requested == "cpu":
    return "cpu"
  torch_gpu, jax_gpu = torch.cuda.is_available(), jax.default_backend() == "gpu"
  if torch_gpu != jax_gpu:
    print(f"note: torch sees a GPU: {torch_gpu}, JAX sees one: {jax_gpu}; running both on the CPU", flush=True)
  return "cuda" if torch_gpu and jax_gpu else "cpu"


def _seed_task(device: str) -> dict[str, Any]:
  try:
    from benchmarks import seed_task
  except ImportError as err:  # parity.sine.task is the seed task; without it there is nothing to time
    message = f"seed task skipped: {err} (it needs parity.sine.task)"
    print(message, flush=True)
    return {"skipped": message}
  result = seed_task.run(device)
  print(seed_task.describe(result), flush=True)
  return result


def main(argv: list[str] | None = None) -> int:
  cli = parser()
  args = cli.parse_args(argv)
  _check_out(cli, args.out)
  shapes, parts = _resolve(args)
  full = not args.shape and not args.add_shape and set(args.modes) == set(MODES) and set(args.contenders) == set(CONTENDERS)
  for optional, why_not in (("onnxruntime", onnxruntime_missing), ("keras", keras_missing)):
    if optional in args.contenders and (missing := why_not()):
      print(f"note: {missing}", flush=True)
      args.contenders = [k for k in args.contenders if k != optional]
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  device = _device(args.device)
  tf32 = args.tf32 == "on"
  torch.backends.cuda.matmul.allow_tf32 = tf32
  torch.backends.cudnn.allow_tf32 = tf32
  precision = "tensorfloat32" if tf32 else "highest"
  name = args.name or device + ("-tf32" if tf32 else "")
  if not args.name and args.quick:
    name += "-quick"
  elif not args.name and not (full and parts == list(PARTS)):
    name += "-custom"
  jax_device = jax.devices("cpu")[0] if device == "cpu" else jax.devices()[0]
  with jax.default_matmul_precision(precision), jax.default_device(jax_device):
    info = machine.describe(device, precision)
    peak, source = machine.peak_gflops(device)
    print(machine.header(info), f"\npeak matmul: {peak:.0f} GFLOP/s ({source})", flush=True)
    timing = {"interleave": args.interleave, "block": args.block, "gap_s": args.gap, "settle_s": args.settle}
    report: dict[str, Any] = {"machine": info, "peak_gflops": peak, "peak_source": source, "timing": timing, "cells": []}
    for shape in shapes if "grid" in parts else []:
      for mode in args.modes:
        cell = run_cell(shape, mode, tuple(args.contenders), args, device, peak)
        report["cells"].append(cell)
        line = " ".join(f"{k}={v['median_ms']:.2f}ms" for k, v in cell["results"].items())
        ratios = " ".join(
          f"{k}/jaxgru={v:.2f}x" for k in ("torch", "flax", "keras", "onnxruntime") if (v := ratio(cell, k)) is not None
        )
        print(f"{str(shape):>22} {mode:>8}  {line}  {ratios}", flush=True)
    if "seed" in parts:
      report["seed_task"] = _seed_task(device)
  if "memory" in parts:
    from benchmarks import memory

    report["memory"] = memory.run()
    print(memory.describe(report["memory"]), flush=True)
  if "rl" in parts and device == "cpu":  # recurrent-policy rollouts with episode resets (benchmarks/rl.py)
    from benchmarks import rl

    report["rl"] = rl.run()
  info["load_after"] = machine.load_average()
  info["busy"] = machine.busy_warning(info)
  paths = write(report, args.out, name)
  print("\n" + markdown(report))
  print("wrote", ", ".join(str(p) for p in paths))
  return 0
