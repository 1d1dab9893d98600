"""Bit-exact moves of arrays between torch tensors, NumPy and JAX.

torch's ``Tensor.numpy()`` refuses bfloat16 and NumPy has no bfloat16 of its own, so bfloat16
travels as its raw 16 bits: torch views the tensor as int16, NumPy reinterprets those bits as
``ml_dtypes.bfloat16`` (the NumPy type of ``jnp.bfloat16``), and back. float16, float32 and
float64 map one to one. No value is ever rounded on the way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import torch

# The dtypes a GRU's parameters may have, torch's and NumPy's spelling of each.
TORCH_TO_NUMPY: dict[torch.dtype, np.dtype] = {
  torch.float16: np.dtype(np.float16),
  torch.bfloat16: np.dtype(ml_dtypes.bfloat16),
  torch.float32: np.dtype(np.float32),
  torch.float64: np.dtype(np.float64),
}
NUMPY_TO_TORCH: dict[np.dtype, torch.dtype] = {v: k for k, v in TORCH_TO_NUMPY.items()}
_NAMES = ", ".join(d.name for d in NUMPY_TO_TORCH)


def numpy_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
  """The NumPy dtype of ``dtype`` (a torch, NumPy or JAX dtype, or its name), one of the four
  floating dtypes a GRU may have; anything else is a TypeError naming ``name``."""
  if isinstance(dtype, torch.dtype):
    found = TORCH_TO_NUMPY.get(dtype)
  else:
    try:
      found = np.dtype(dtype)
    except TypeError:
      found = None
  if found not in NUMPY_TO_TORCH:
    raise TypeError(f"{name} must be one of {_NAMES} (torch, NumPy or JAX spelling), got {dtype!r}")
  return found


def torch_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
  """torch's spelling of one of the four GRU dtypes."""
  return NUMPY_TO_TORCH[numpy_dtype(dtype, name)]


def tensor_to_numpy(tensor: Any, name: str = "tensor") -> np.ndarray:
  """A torch tensor's values as a new NumPy array, bit for bit (bfloat16 as ``ml_dtypes.bfloat16``)."""
  if not isinstance(tensor, torch.Tensor):
    raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
  dtype = numpy_dtype(tensor.dtype, f"{name}.dtype")
  tensor = tensor.detach().cpu()
  if tensor.dtype == torch.bfloat16:
    return tensor.view(torch.int16).numpy().view(dtype).copy()
  return tensor.numpy().copy()


def array_to_numpy(array: Any, name: str = "array") -> np.ndarray:
  """A torch tensor, JAX array or NumPy array as a NumPy array of one of the four GRU dtypes."""
  if isinstance(array, torch.Tensor):
    return tensor_to_numpy(array, name)
  if not hasattr(array, "shape") or not hasattr(array, "dtype"):
    raise TypeError(f"{name} must be an array or tensor, got {type(array).__name__}")
  result = np.asarray(array)
  numpy_dtype(result.dtype, f"{name}.dtype")
  return result


def to_tensor(array: Any, name: str = "array") -> torch.Tensor:
  """A new CPU torch tensor with exactly the bits of ``array`` (JAX, NumPy or torch)."""
  values = array_to_numpy(array, name)
  if values.dtype == TORCH_TO_NUMPY[torch.bfloat16]:
    return torch.from_numpy(values.view(np.int16).copy()).view(torch.bfloat16)
  return torch.from_numpy(np.array(values, copy=True))


def to_jax(array: Any, name: str = "array") -> jax.Array:
  """A JAX array with exactly the bits of ``array``.

  Raises:
    TypeError: the dtype is not a GRU dtype, or it is float64 while JAX runs in 32-bit mode
      (JAX would silently round it to float32).
  """
  values = array_to_numpy(array, name)
  check_jax_can_hold(values.dtype, name)
  return jnp.asarray(values)


def check_jax_can_hold(dtype: Any, name: str = "dtype") -> None:
  """Raises a TypeError if JAX would silently change ``dtype`` (float64 without 64-bit mode)."""
  dtype = numpy_dtype(dtype, name)
  if jax.dtypes.canonicalize_dtype(dtype) != dtype:
    raise TypeError(
      f"{name} is {dtype.name}, but JAX runs in 32-bit mode and would round it to "
      f"{jax.dtypes.canonicalize_dtype(dtype).name}; enable 64-bit JAX first: "
      "jax.config.update('jax_enable_x64', True), or work inside `with jax.enable_x64(True):`"
    )


def same_bits(a: Any, b: Any) -> bool:
  """Whether two arrays or tensors have the same dtype, shape and raw bits (NaNs included)."""
  a, b = array_to_numpy(a), array_to_numpy(b)
  if a.dtype != b.dtype or a.shape != b.shape:
    return False
  unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
  return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


# Every dtype a whole model's state dict may hold. Those NumPy lacks (bfloat16, float8) travel
# as raw bits of an unsigned integer of their width, like bfloat16 above.
_BITS_DTYPES: dict[torch.dtype, tuple[np.dtype, torch.dtype]] = {
  torch.bfloat16: (np.dtype(ml_dtypes.bfloat16), torch.int16),
  torch.float8_e4m3fn: (np.dtype(ml_dtypes.float8_e4m3fn), torch.uint8),
  torch.float8_e5m2: (np.dtype(ml_dtypes.float8_e5m2), torch.uint8),
}
_PLAIN_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32)
_PLAIN_DTYPES += (torch.uint16, torch.uint32, torch.uint64, torch.float64, torch.complex64, torch.complex128)


def any_tensor_to_numpy(tensor: torch.Tensor, name: str = "tensor") -> np.ndarray:
  """Any tensor of a model's state dict (integers, bool, complex, bfloat16, float8 too) as a new
  NumPy array with the same bits; a dtype NumPy cannot hold is a ValueError naming ``name``."""
  check_any_dtype(tensor.dtype, name)
  tensor = tensor.detach().cpu()
  if tensor.dtype in _BITS_DTYPES:
    numpy, bits = _BITS_DTYPES[tensor.dtype]
    return tensor.contiguous().view(bits).numpy().view(numpy).copy()
  return tensor.numpy().copy()


def check_any_dtype(dtype: torch.dtype, name: str) -> None:
  if dtype not in _BITS_DTYPES and dtype not in _PLAIN_DTYPES:
    raise ValueError(f"{name} has dtype {dtype}, which has no NumPy or JAX equivalent")


def any_to_tensor(array: Any, name: str = "array") -> torch.Tensor:
  """A new contiguous CPU tensor with the bits of ``array`` (torch, NumPy or JAX; any dtype above)."""
  if isinstance(array, torch.Tensor):
    check_any_dtype(array.dtype, name)
    return array.detach().cpu().clone(memory_format=torch.contiguous_format)
  if not hasattr(array, "shape") or not hasattr(array, "dtype"):
    raise TypeError(f"{name} must be an array or tensor, got {type(array).__name__}")
  values = np.ascontiguousarray(np.asarray(array))
  for dtype, (numpy, bits) in _BITS_DTYPES.items():
    if values.dtype == numpy:
      return torch.from_numpy(values.view(torch.empty(0, dtype=bits).numpy().dtype).copy()).view(dtype)
  try:
    return torch.from_numpy(values.copy())
  except TypeError:
    raise TypeError(f"{name} has dtype {values.dtype}, which torch cannot hold") from None
