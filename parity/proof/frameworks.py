"""The other frameworks in ``python -m parity``'s sweep: Keras 3 and ONNX Runtime against torch.

Each configuration of the sweep that a framework carries (the GRUs, the RNNs and the LSTMs
without a projection, which neither Keras's LSTM nor ONNX's has) goes from torch to ``jaxgru``
(:func:`parity.from_torch`), on to Keras layers (:func:`parity.frameworks.keras.to_keras`) and
to an ONNX model (:func:`parity.frameworks.onnx.model_proto`), and runs in each
framework (Keras on the JAX backend, ONNX Runtime's CPU kernels) against torch's own forward
pass: ``output``, ``h_n`` and an LSTM's ``c_n``, float32 (the dtype both run), with and without
``lengths`` (a Keras mask, ONNX's ``sequence_lens``). A framework whose package is missing is
skipped with a note.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import torch

import parity
from parity.proof.report import TOLERANCES, Report, _row

FRAMEWORKS = {"Keras": "parity.frameworks.keras", "ONNX Runtime": "parity.frameworks.onnx"}


def _keras(module: Any, jax_module: Any, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None):
  from parity.frameworks import keras as pk

  xb = x if module.batch_first else np.swapaxes(x, 0, 1)  # Keras is batch-first
  out, state = pk.run_keras(pk.to_keras(jax_module), xb, h0, lengths)
  return (out if module.batch_first else np.swapaxes(out, 0, 1)), state


def _onnx(module: Any, jax_module: Any, x: np.ndarray, h0: np.ndarray | None, lengths: np.ndarray | None):
  from parity.frameworks import onnx as po

  model = po.model_proto(jax_module, h0=h0 is not None, lengths=lengths is not None)
  return po.run_onnx(model, x, h0, lengths)


RUNNERS: dict[str, Callable] = {"Keras": _keras, "ONNX Runtime": _onnx}
# which of the sweep's layer configurations each framework carries (no lone cells: neither runs one)
_UNPROJECTED = lambda config: config.mode in ("GRU", "RNN") or (config.mode == "LSTM" and not config.proj_size)
CARRIES: dict[str, Callable[[Any], bool]] = {"Keras": _UNPROJECTED, "ONNX Runtime": _UNPROJECTED}


def available() -> tuple[list[str], list[str]]:
  """The frameworks whose packages import, and a note for each that does not."""
  found, notes = [], []
  for name, module in FRAMEWORKS.items():
    try:
      importlib.import_module(module)
    except ImportError as err:
      notes.append(f"note: {name} skipped ({err}); install the {module.rpartition('.')[2]} extra")
    else:
      found.append(name)
  return found, notes


def run(configs: Sequence[Any], inputs: Callable, lengths: np.ndarray, seed: int = 0) -> tuple[list[dict], list[str]]:
  """One row per framework, GRU configuration and lengths setting, as ``python -m parity``'s.

  ``configs`` are the sweep's; each framework runs those it carries (:data:`CARRIES`; never a
  lone cell). ``inputs(config, dtype, seed, with_h0)`` draws ``x`` and ``h0`` as the sweep does.
  """
  found, notes = available()
  rows = []
  for name in found:
    for index, config in enumerate(configs):
      if config.cell or not CARRIES[name](config):
        continue
      for with_lengths in (False, True):
        with_h0 = (index + with_lengths) % 2 == 1
        module = config.torch_module(torch.float32, seed + index).eval()
        jax_module = parity.from_torch(module)
        x, h0 = inputs(config, np.float32, seed + index, with_h0)
        used = lengths if with_lengths else None
        want = parity.run_torch(module, x, h0, lengths=used)
        with jax.default_matmul_precision("highest"):
          got = RUNNERS[name](module, jax_module, x, h0, used)
        got = (got[0], *got[1]) if config.mode == "LSTM" else got
        report = Report(
          tuple(_row(q, g, want[q]) for q, g in zip(("output", "h_n", "c_n"), got, strict=False)),
          TOLERANCES["float32"],
          "torch float32 cpu",
          f"{name} float32 cpu",
        )
        worst = report.worst()
        rows.append(
          dict(
            device="cpu",
            config=f"{name}: {config}",
            dtype="float32",
            lengths="yes" if with_lengths else "-",
            h0="yes" if with_h0 else "-",
            quantities=len(report.rows),
            worst=worst.name,
            max_abs=worst.max_abs,
            scale=max(1.0, worst.reference),
            tol=report.tol,
            ok=report.ok,
            report=report,
          )
        )
  return rows, notes
