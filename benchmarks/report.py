"""The suite's reports: a markdown table, a PNG chart and the JSON they are made from."""

from __future__ import annotations

import json
import os
import pathlib
import textwrap
from typing import Any

import numpy as np

from benchmarks.contenders import CONTENDERS


def ratio(cell: dict[str, Any], numerator: str, denominator: str = "jaxgru") -> float | None:
  """How many times longer ``numerator`` took than ``denominator`` (medians); None if either is missing."""
  r = cell["results"]
  if numerator in r and denominator in r:
    return r[numerator]["median_ms"] / r[denominator]["median_ms"]
  return None


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
  return "-" if value is None else f"{value:{spec}}{suffix}"


def _error(cell: dict[str, Any]) -> str:
  if "max_abs_error_vs_torch" in cell:
    return f"{cell['max_abs_error_vs_torch']:.1e}"
  if "max_rel_grad_error_vs_torch" in cell:
    return f"{cell['max_rel_grad_error_vs_torch']:.1e} rel."
  return "-"


def _timing(timing: dict[str, Any] | None) -> str:
  """How the suite interleaved the contenders (reports written before ``timing`` existed: one call each in turn)."""
  if not timing or timing["interleave"] == "call":
    return "interleaved repeats (one call of each contender in turn) after warm-up"
  return (
    f"repeats timed in blocks of {timing['block']} back-to-back calls per contender after warm-up, blocks in a fresh "
    f"random order every round, each after an untimed {timing['gap_s']:g} s pause and call"
  )


def header(report: dict[str, Any]) -> list[str]:
  m = report["machine"]
  lines = [
    f"Machine: {m['cpu']} ({m['cores']} cores), {m['device']}; {m['versions']}",
    f"Threads: {m['threads']}. Load average before / after: {m.get('load_before', '-')} / {m.get('load_after', '-')}.",
    *([f"Native kernel: {m['native']}."] if "native" in m else []),
    f"{m.get('dtype', 'float32')}, matmul precision {m['matmul_precision']}, TF32 {'on' if m.get('tf32') else 'off'}; "
    f"peak matmul {report['peak_gflops']:.0f} GFLOP/s ({report['peak_source']}).",
    "Times: median ± interquartile range of "
    + _timing(report.get("timing"))
    + ", in ms, compile excluded (compile times below).",
  ]
  if m.get("busy"):
    lines.append(f"**Warning: {m['busy']}**")
  return lines


def markdown(report: dict[str, Any]) -> str:
  lines = [f"- {line}" for line in header(report)] + [""]  # a list: one line each, on GitHub and the site
  if report["cells"]:
    names = [k for k in CONTENDERS if any(k in c["results"] for c in report["cells"])]
    rivals = ["torch", "flax"] + (["keras"] if "keras" in names else [])
    # the ratios first: what a reader came for, in view on a narrow page before the times
    lines += [
      "| shape (TxBxIxH) | mode | " + "".join(f"{k}/jaxgru | " for k in rivals) + " | ".join(f"{k} ms" for k in names) + " |",
      "|---|---|" + "---:|" * (len(rivals) + len(names)),
    ]
    for cell in report["cells"]:
      r = cell["results"]
      times = [f"{r[k]['median_ms']:.2f} ± {r[k]['iqr_ms']:.2f}" if k in r else "-" for k in names]
      lines.append(
        f"| {cell['shape']} | {cell['mode']} | "
        + "".join(f"{_fmt(ratio(cell, k), '.2f', 'x')} | " for k in rivals)
        + " | ".join(times)
        + " |"
      )
    lines += [
      "",
      "Fraction of the measured peak each contender reaches (GFLOP counted: matrix products plus elementwise, "
      "`benchmarks/shapes.py`), JAX compile times in seconds (onnxruntime: making the session, which prepacks "
      "the weights), and how far the timed jaxgru is from torch "
      "(forward: largest absolute difference of the output; fwd+bwd: largest difference of any gradient, "
      "relative to that gradient's largest entry):",
      "",
      "| shape (TxBxIxH) | mode | GFLOP | "
      + " | ".join(f"{k} % peak" for k in names)
      + " | "
      + " | ".join(f"{k} compile s" for k in names if k != "torch")
      + " | repeats | jaxgru vs torch |",
      "|---|---|" + "---:|" * (2 * len(names) + 1 - ("torch" in names)) + "---:|---:|",
    ]
    for cell in report["cells"]:
      r = cell["results"]
      peak = [_fmt(r[k].get("fraction_of_peak") and 100 * r[k]["fraction_of_peak"], ".1f", "%") if k in r else "-" for k in names]
      compile_s = [_fmt(r[k].get("compile_s"), ".2f") if k in r else "-" for k in names if k != "torch"]
      repeats = min(v["repeats"] for v in r.values())
      lines.append(
        f"| {cell['shape']} | {cell['mode']} | {cell['gflop']:.3f} | "
        + " | ".join(peak + compile_s)
        + f" | {repeats} | {_error(cell)} |"
      )
  if "skipped" in report.get("seed_task", {}):
    lines += ["", report["seed_task"]["skipped"]]
  elif "seed_task" in report:
    from benchmarks import seed_task

    lines += ["", seed_task.describe(report["seed_task"])]
  if "memory" in report:
    from benchmarks import memory

    lines += ["", "```text", memory.describe(report["memory"]), "```"]
  if "rl" in report:
    from benchmarks import rl

    lines += ["", "Recurrent-policy rollouts with episode resets (`python -m benchmarks.rl`):", "", rl.markdown(report["rl"])]
  return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: pathlib.Path) -> None:
  """Writes :func:`chart_figure` as a PNG, atomically."""
  fig = chart_figure(report)
  tmp = path.with_name(path.stem + ".tmp.png")
  try:
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def chart_figure(report: dict[str, Any]) -> Any:
  """Bars of torch/jaxgru, flax/jaxgru and keras/jaxgru per cell (higher: jaxgru faster), with the 1.5x and 2x
  targets, and the busy-machine warning of the text reports across the plot when there is one.
  A ``matplotlib.figure.Figure`` (no pyplot state)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  cells = report["cells"]
  labels = [f"{c['shape']}\n{c['mode']}" for c in cells]
  pos = np.arange(len(cells))
  fig = Figure(figsize=(10, 6.5), dpi=150)  # about the docs' column width: labels stay readable
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  values = {}
  rivals = ["torch", "flax"] + (["keras"] if any("keras" in c["results"] for c in cells) else [])
  width = 0.8 / len(rivals)
  for k, name in enumerate(rivals):
    values[name] = [ratio(c, name) or 0.0 for c in cells]
    ax.bar(pos + (k - (len(rivals) - 1) / 2) * width, values[name], width=width, label=f"{name} time / jaxgru time")
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.axhline(1.5, color="tab:blue", linestyle="--", linewidth=0.8, label="1.5x (target vs torch)")
  ax.axhline(2.0, color="tab:orange", linestyle=":", linewidth=0.8, label="2x (target vs flax)")
  if max([v for vs in values.values() for v in vs] + [1.0]) > 20:
    ax.set_yscale("log")
  ax.set_xticks(pos, labels, rotation=90, fontsize=9)
  ax.set_ylabel("speed-up of jaxgru (higher is better)")
  ax.set_title(
    f"jaxgru vs torch.nn.GRU, nnx.RNN(GRUCell) and Keras 3\n{report['machine']['device']}, {report['machine']['matmul_precision']}",
    fontsize=11,
  )
  ax.legend(fontsize=9)
  if busy := report["machine"].get("busy"):
    ax.text(
      0.5,
      0.5,
      "\n".join(textwrap.wrap(f"Warning: {busy}", 60)),
      transform=ax.transAxes,
      ha="center",
      va="center",
      fontsize=11,
      color="tab:red",
      bbox={"facecolor": "white", "edgecolor": "tab:red", "alpha": 0.9},
    )
  fig.tight_layout()
  return fig


def write(report: dict[str, Any], out: pathlib.Path, name: str) -> list[pathlib.Path]:
  """Writes ``name``.json, .md and .png under ``out``, each atomically (a crash leaves the old file)."""
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / f"{name}.json", out / f"{name}.md"]
  for path, text in ((paths[0], json.dumps(report, indent=2)), (paths[1], markdown(report))):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
  if report["cells"]:
    paths.append(out / f"{name}.png")
    chart(report, paths[-1])
  return paths
