"""``python -m benchmarks.gpu --out DIR``: jaxgru on a GPU against torch's cuDNN GRU, in one command.

For a CUDA machine where jax (with its CUDA plugin), flax, optax and torch are installed and
nothing can be downloaded: the repository on ``PYTHONPATH``, no ``pip install``, no Keras, no
native kernel needed. Within a time budget (``--budget``, default 6 minutes of timing after the
parity runs) it writes ``gpu.md``, ``gpu.json`` and ``gpu.png`` to DIR:

1. **Parity first**: every implementation that runs on the GPU (``reference``, ``fused``,
   ``pallas``) against ``torch.nn.GRU`` (cuDNN) through :func:`parity.compare`: outputs, ``h_n``
   and the gradients of every parameter, the input and ``h0``, every parameter randomised; one
   and two bidirectional layers, with and without lengths (packed sequences on torch's side);
   float32 with TF32 off on both sides (tolerance 1e-5, relative above magnitude 1) and bfloat16
   (tolerance 1e-1: bfloat16 keeps 8 bits of mantissa, and the two sides round at different
   places). torch has only torch's variant of the equations, so ``variant="classic"`` has
   nothing to compare against here.
2. **Then times**: forward, forward+backward and a training step (Adam) for torch (cuDNN), the
   fused XLA path and the Pallas kernels, at H in {64, 128, 256, 512, 1024}, batch 16 and 256, T
   100 and 1000, and a 2-layer bidirectional row, through the CPU suite's :func:`run_cell`
   (compile times apart, contenders in shuffled blocks). Cells run smallest first; those the
   budget leaves out are listed in the report.
3. **Recurrent-policy rollouts** (``benchmarks/rl.py``): T = 128 steps of 16 to 256 environments
   with episode resets on 1% of the steps, forward and training step: ``jaxgru.gru(...,
   resets=...)`` against the hand-written Flax ``nn.scan`` with ``jnp.where`` resets, and
   torchrl's recurrent ``GRUModule`` on the GPU where torchrl is installed.

``--dry-run`` runs the same code on the CPU at tiny sizes (Pallas in interpret mode, torch's CPU
GRU) in well under 3 minutes; ``tests/test_benchmarks.py`` runs it, so this script cannot rot
before it meets a GPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
import torch

import parity
from benchmarks import machine, rl
from benchmarks.contenders import LEARNING_RATE
from benchmarks.shapes import MODES, Shape
from benchmarks.suite import run_cell

CONTENDERS = ("torch", "jaxgru_fused", "jaxgru_pallas")
PARITY_IMPLS = ("reference", "fused", "pallas")
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-1}


def grid(dry_run: bool) -> list[Shape]:
  """The timed shapes, cheapest first: a 2-layer bidirectional row, then H x batch x T."""
  if dry_run:  # the fuller code path only: two layers, both directions
    return [Shape(5, 2, 8, 8, 2, True)]
  cells = [Shape(t, b, h, h) for h in (64, 128, 256, 512, 1024) for b in (16, 256) for t in (100, 1000)]
  others = [Shape(100, 64, 256, 256, 2, True, cell) for cell in ("lstm", "rnn")]  # the LSTM on cuDNN against Pallas
  return [Shape(100, 64, 256, 256, 2, True), *others, *sorted(cells, key=lambda s: s.steps * s.batch * s.hidden_size**2)]


# The layers whose parity is checked: torch's GRU, an LSTM projected to half its width, a ReLU RNN
PARITY_CELLS = {
  "gru": lambda i, h, **kw: torch.nn.GRU(i, h, **kw),
  "lstm": lambda i, h, **kw: torch.nn.LSTM(i, h, proj_size=h // 2, **kw),
  "rnn": lambda i, h, **kw: torch.nn.RNN(i, h, nonlinearity="relu", **kw),
}


def _random_layer(
  cell: str, layers: int, bidirectional: bool, dtype: torch.dtype, device: str, size: tuple[int, int]
) -> torch.nn.Module:
  inputs, hidden = size
  module = PARITY_CELLS[cell](inputs, hidden, num_layers=layers, bidirectional=bidirectional, dtype=dtype)
  gen = torch.Generator().manual_seed(layers + 2 * bidirectional)
  with torch.no_grad():
    for p in module.parameters():  # every parameter, biases too, wider than torch's init
      p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float32).to(dtype) * 1.2 - 0.6)
  return module.to(device)


def run_parity(device: str, jax_device: jax.Device, dry_run: bool) -> list[dict[str, Any]]:
  """One :func:`parity.compare` per cell, implementation, configuration, dtype and lengths setting
  (the dry run: the GRU, and the projected LSTM in float32)."""
  steps, batch, inputs, hidden = (6, 3, 4, 16) if dry_run else (24, 8, 32, 64)
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, steps + 1, batch)
  lengths[0] = steps
  rows = []
  configs = ((2, True),) if dry_run else ((1, False), (2, True))
  dtypes = (("float32", torch.float32), ("bfloat16", torch.bfloat16))
  lengths_or_not = (True,) if dry_run else (False, True)  # the dry run: the fuller code path only
  cells = ("gru", "lstm") if dry_run else tuple(PARITY_CELLS)
  for cell, (layers, bi), (dtype_name, dtype), with_lengths, impl in itertools.product(
    cells, configs, dtypes, lengths_or_not, PARITY_IMPLS
  ):
    if dry_run and cell != "gru" and dtype_name != "float32":
      continue
    module = _random_layer(cell, layers, bi, dtype, device, (inputs, hidden))
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    h0 = rng.standard_normal((layers * (1 + bi), batch, hidden)).astype(np.float32)
    if cell == "lstm":  # h of the projection's width, c of the hidden width
      h0 = (h0[..., : hidden // 2], rng.standard_normal(h0.shape).astype(np.float32))
    row = {
      "cell": cell,
      "impl": impl,
      "config": f"L={layers} {'bi' if bi else 'uni'}",
      "dtype": dtype_name,
      "lengths": with_lengths,
    }
    try:
      jax_module = parity.from_torch(module)
      jax_module.impl = impl
      report = parity.compare(
        module, jax_module, x, h0, lengths=lengths if with_lengths else None, tol=TOLERANCE[dtype_name], jax_device=jax_device
      )
    except (RuntimeError, ValueError, TypeError) as error:  # a dtype a side does not run here
      rows.append({**row, "ok": None, "note": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"})
      continue
    worst = report.worst()
    rows.append(
      {**row, "ok": report.ok, "worst": worst.name, "max_abs": worst.max_abs, "tol": report.tol, "quantities": len(report.rows)}
    )
  return rows


def run_times(device: str, dry_run: bool, budget_s: float, peak: float) -> tuple[list[dict[str, Any]], list[str]]:
  """:func:`run_cell` over :func:`grid` and :data:`MODES` until ``budget_s`` is spent; the cells left out."""
  args = argparse.Namespace(
    warmup=1, repeats=3, max_repeats=10, budget=0.3, interleave="block", block=3, gap=0.02 if dry_run else 0.05, settle=0.0
  )
  cells, left_out = [], []
  deadline = time.perf_counter() + budget_s
  for shape, mode in itertools.product(grid(dry_run), MODES):
    if time.perf_counter() > deadline:
      left_out.append(f"{shape} {mode}")
      continue
    cell = run_cell(shape, mode, CONTENDERS, args, device, peak, device_only_on_cpu=dry_run)
    cells.append(cell)
    line = " ".join(f"{k}={v['median_ms']:.2f}ms (compile {v['compile_s'] or 0:.1f}s)" for k, v in cell["results"].items())
    print(f"{str(shape):>22} {mode:>8}  {line}", flush=True)
  return cells, left_out


def run_rl(device: str, dry_run: bool) -> dict[str, Any]:
  """The recurrent-policy rollouts of :mod:`benchmarks.rl` on this device (JAX's default, torch's
  ``device``); torchrl only where it is installed."""
  contenders = tuple(k for k in rl.CONTENDERS if k != "torchrl" or rl.torchrl_missing() is None)
  shapes = ((8, 3, 2, 4),) if dry_run else rl.SHAPES
  report = {"torchrl": __import__("torchrl").__version__ if "torchrl" in contenders else "not installed", "cases": []}
  report.update(reset_rate=0.2 if dry_run else 0.01, repeats=1 if dry_run else 10)
  for shape in shapes:
    for mode in ("train",) if dry_run else rl.MODES:  # the dry run: the fuller code path only
      case = rl.run_case(shape, mode, contenders, report["reset_rate"], report["repeats"], 1 if dry_run else 5, 0.02, device)
      report["cases"].append(case)
      print(
        f"rollout {'x'.join(map(str, shape))} {mode}: "
        + " ".join(f"{k}={v['median_ms']:.2f}ms" for k, v in case["results"].items())
      )
  return report


def _speedup(cell: dict[str, Any], contender: str) -> float | None:
  r = cell["results"]
  return r["torch"]["median_ms"] / r[contender]["median_ms"] if contender in r and "torch" in r else None


def markdown(report: dict[str, Any]) -> str:
  m = report["machine"]
  lines = [
    f"# jaxgru on {m['device']}" + (" (dry run on the CPU: tiny sizes, Pallas interpreted)" if report["dry_run"] else ""),
    "",
    f"{m['versions']}; CPU {m['cpu']}. Matmul precision highest, TF32 off on both sides; peak matmul "
    f"{report['peak_gflops']:.0f} GFLOP/s ({report['peak_source']}). Adam lr {LEARNING_RATE:g} in the training step.",
    "",
    "## Parity against torch.nn.GRU, LSTM (proj_size H/2) and RNN (ReLU)" + (" (cuDNN)" if not report["dry_run"] else ""),
    "",
    "Outputs, the final state (h_n, an LSTM's c_n) and every gradient (parameters, input, initial state); pass: "
    "max abs error <= tol x max(1, max |torch|).",
    "",
    "| cell | impl | config | dtype | lengths | worst quantity | max abs error | tol | ok |",
    "|---|---|---|---|---|---|---:|---:|---|",
  ]
  for r in report["parity"]:
    if r["ok"] is None:
      lines.append(
        f"| {r.get('cell', 'gru')} | {r['impl']} | {r['config']} | {r['dtype']} | {'yes' if r['lengths'] else '-'} | {r['note']} "
        "| - | - | skipped |"
      )
    else:
      ok = "yes" if r["ok"] else "**NO**"
      lines.append(
        f"| {r.get('cell', 'gru')} | {r['impl']} | {r['config']} | {r['dtype']} | {'yes' if r['lengths'] else '-'} | {r['worst']} "
        f"| {r['max_abs']:.1e} | {r['tol']:g} | {ok} |"
      )
  lines += [
    "",
    "## Times (ms, median ± IQR) and compile times (s)",
    "",
    "| shape (TxBxIxH) | mode | torch | fused | pallas | torch/fused | torch/pallas | compile fused / pallas |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for c in report["cells"]:
    r = c["results"]
    ms = lambda k, r=r: f"{r[k]['median_ms']:.2f} ± {r[k]['iqr_ms']:.2f}" if k in r else "-"
    x = lambda v: "-" if v is None else f"{v:.2f}x"
    comp = " / ".join(f"{r[k]['compile_s']:.1f}" if k in r and r[k]["compile_s"] is not None else "-" for k in CONTENDERS[1:])
    lines.append(
      f"| {c['shape']} | {c['mode']} | {ms('torch')} | {ms('jaxgru_fused')} | {ms('jaxgru_pallas')} | "
      f"{x(_speedup(c, 'jaxgru_fused'))} | {x(_speedup(c, 'jaxgru_pallas'))} | {comp} |"
    )
  if report["left_out"]:
    lines += ["", f"Left out by the {report['budget_s']:g} s budget: {', '.join(report['left_out'])}."]
  if report.get("rl"):
    lines += ["", "## Recurrent-policy rollouts with episode resets", "", rl.markdown({**report["rl"], "machine": m})]
  lines += ["", f"Total {report['total_s']:.0f} s."]
  return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: pathlib.Path) -> None:
  """Bars of torch time / jaxgru time per cell, fused and Pallas (higher: jaxgru faster)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  cells = report["cells"]
  pos = np.arange(len(cells))
  fig = Figure(figsize=(max(8, 0.5 * len(cells)), 5.5))
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  for offset, name, label in ((-0.2, "jaxgru_fused", "fused"), (0.2, "jaxgru_pallas", "Pallas")):
    ax.bar(pos + offset, [_speedup(c, name) or 0.0 for c in cells], width=0.4, label=f"torch time / jaxgru {label} time")
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.set_yscale("log")
  ax.set_xticks(pos, [f"{c['shape']}\n{c['mode']}" for c in cells], rotation=90, fontsize=6)
  ax.set_ylabel("speed-up of jaxgru over torch (higher is better)")
  ax.set_title(f"jaxgru vs torch.nn.GRU: {report['machine']['device']}, TF32 off")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
  cli = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
  cli.add_argument("--out", type=pathlib.Path, required=True, help="folder for gpu.md, gpu.json and gpu.png")
  cli.add_argument("--dry-run", action="store_true", help="the same code on the CPU at tiny sizes (writes gpu-dry-run.*)")
  cli.add_argument("--budget", type=float, default=360.0, help="seconds of timing after parity (default 360)")
  args = cli.parse_args(argv)
  start = time.perf_counter()
  if not args.dry_run and not (torch.cuda.is_available() and jax.default_backend() == "gpu"):
    cli.exit(
      2,
      f"{cli.prog}: needs a CUDA GPU that torch and JAX both see (torch: {torch.cuda.is_available()}, JAX: "
      f"{jax.default_backend()}); --dry-run runs the same code on the CPU\n",
    )
  device = "cpu" if args.dry_run else "cuda"
  jax_device = jax.devices("cpu")[0] if args.dry_run else jax.devices()[0]
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
  with jax.default_matmul_precision("highest"), jax.default_device(jax_device):
    info = machine.describe(device, "highest")
    peak, source = machine.peak_gflops(device)
    print(f"{info['device']}; {info['versions']}; peak {peak:.0f} GFLOP/s", flush=True)
    rows = run_parity(device, jax_device, args.dry_run)
    bad = [r for r in rows if r["ok"] is False]
    print(f"parity: {sum(bool(r['ok']) for r in rows)} of {len(rows)} runs within tolerance, {len(bad)} past it", flush=True)
    cells, left_out = run_times(device, args.dry_run, args.budget, peak)
    rl_report = run_rl(device, args.dry_run)
  report = {
    "machine": info,
    "dry_run": args.dry_run,
    "peak_gflops": peak,
    "peak_source": source,
    "parity": rows,
    "cells": cells,
    "left_out": left_out,
    "rl": rl_report,
    "budget_s": args.budget,
    "total_s": time.perf_counter() - start,
  }
  args.out.mkdir(parents=True, exist_ok=True)
  name = "gpu-dry-run" if args.dry_run else "gpu"
  for path, text in ((args.out / f"{name}.json", json.dumps(report, indent=2)), (args.out / f"{name}.md", markdown(report))):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
  if cells:
    chart(report, args.out / f"{name}.png")
  print(markdown(report))
  return 1 if bad else 0


if __name__ == "__main__":
  raise SystemExit(main())
