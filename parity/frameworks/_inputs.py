"""Checks of the inputs other frameworks' GRUs are run on, with :func:`jaxgru.gru`'s messages."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxgru import _validate


def check_sequence_inputs(
  x: Any,
  h0: Any,
  lengths: Any,
  *,
  batch_first: bool,
  states: int | None,
  hidden: int | None,
  input_size: int | None,
  name: str = "h0",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
  """``x`` (T, B, I) or (B, T, I), ``h0`` (L*D, B, H) or None, ``lengths`` (B,) in [1, T] or None,
  as NumPy arrays; a ``ValueError`` / ``TypeError`` naming the argument otherwise (``name``: the
  state's, ``c0`` for an LSTM's cell state). Sizes given as None are not checked."""
  x = np.asarray(x)
  if x.ndim != 3:
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    raise ValueError(f"x must be 3-D {layout}, got shape {x.shape}")
  steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
  if input_size is not None and x.shape[2] != input_size:
    raise ValueError(f"x's last axis must be the input size {input_size}, got shape {x.shape}")
  if h0 is not None:
    h0 = np.asarray(h0)
    want = (states, batch, hidden)
    if h0.ndim != 3 or any(w is not None and w != g for w, g in zip(want, h0.shape, strict=True)):
      raise ValueError(f"{name} must have shape (L*D, B, H) = {want}, got {h0.shape}")
  if lengths is not None:
    lengths = np.asarray(_validate.check_lengths(np.asarray(lengths), batch, steps))
  return x, h0, lengths
