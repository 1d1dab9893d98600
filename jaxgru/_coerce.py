"""User values to what the core computes with: bool flags and arrays, with errors naming the argument.

Tensors of other libraries are read without importing them, through DLPack: a torch tensor
(``bfloat16`` included; one that requires grad through its ``detach()``) becomes a JAX array.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_flag(value: Any, name: str, allow_none: bool = False) -> bool | None:
  """``value`` must be a ``bool`` (or a NumPy bool), as torch requires of its flags: ``"False"`` is not false."""
  if value is None and allow_none:
    return None
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")
  return bool(value)


def to_array(value: Any, name: str) -> jax.Array:
  """``value`` as a JAX array; a TypeError naming ``name`` (and the fix) when it cannot be read.

  Anything but a NumPy or JAX array is copied: the JAX array never aliases a tensor's memory,
  which its owner (an optimiser's in-place step) may change.
  """
  if isinstance(value, jax.Array):
    return value
  foreign = hasattr(value, "__dlpack__") and hasattr(value, "dtype") and not isinstance(value, np.ndarray)
  try:
    if not foreign:
      return jnp.asarray(value)
    source = value.detach() if callable(getattr(value, "detach", None)) else value
    try:
      imported = jax.dlpack.from_dlpack(source)
    except Exception:  # noqa: BLE001 - e.g. a strided view, which NumPy reads and JAX does not
      imported = np.from_dlpack(source)
    return jnp.array(imported, copy=True)
  except Exception as err:  # noqa: BLE001 - whatever the exporter raises becomes one clear error
    hint = f"; pass a NumPy or JAX array, e.g. {name}.detach().cpu().numpy() for a torch tensor" if foreign else ""
    raise TypeError(f"{name} must be an array, got {type(value).__name__}: {err}{hint}") from err
