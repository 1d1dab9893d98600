r"""The native CPU kernel as a library: loading it, its FFI targets, what it serves and when
``impl="auto"`` takes it (:mod:`jaxgru._native` runs it as a layer).

The kernel is an XLA FFI custom call (CPU only, float32 and float64), a shared library that
``ctypes`` loads (``jaxgru/_gru_kernel.so``, one for every Python). It is built by ``pip install``
when a C++ compiler is there (``setup.py``; the build is optional), against the FFI API of the
oldest supported jaxlib (0.1, jaxlib 0.7.0), which every newer one accepts; it does its
matrix products with OpenBLAS from the ``scipy-openblas32`` wheel, one thread per call of BLAS;
the batch is split across XLA's own intra-op thread pool, so the kernel uses the threads XLA
was given and no others. :func:`native_available` says whether it can run, and
:func:`native_status` why not. Loading never raises: a kernel that cannot load warns once, and
the XLA paths serve.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pathlib
import sys
import warnings

import jax
import jax.numpy as jnp

from jaxgru import _cell

SUFFIX = {jnp.dtype(jnp.float32): "f32", jnp.dtype(jnp.float64): "f64"}
TARGETS = ("forward", "forward_save", "backward")
# The cells the kernel has, and the residuals its forward pass keeps for the backward one, (·, H)
# each: the fused path's (jaxgru._cell), in the same order.
CELLS = (_cell.GRU(), _cell.LSTM(), _cell.RNN("tanh"), _cell.RNN("relu"))
SAVED = {"GRU": 4, "LSTM": 5, "RNN": 1}


def serves(cell: _cell.Cell) -> bool:
  """Whether the kernel has ``cell`` (every cell but the classic GRU variant)."""
  return cell in CELLS


def prefix(cell: _cell.Cell) -> str:
  """The name before ``_forward``, ``_forward_save`` and ``_backward`` of ``cell``'s targets."""
  if isinstance(cell, _cell.RNN):
    return f"jaxgru_rnn_{cell.nonlinearity}"
  return "jaxgru" if isinstance(cell, _cell.GRU) else "jaxgru_lstm"


# Every FFI target the kernel registers. jax.export refuses custom calls it cannot vouch for: an
# export for the CPU that keeps the kernel passes
# disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(t) for t in TARGET_NAMES], and only a
# process that imported jaxgru (which registers them) runs it.
TARGET_NAMES = tuple(f"{prefix(cell)}_{target}_{suffix}" for cell in CELLS for target in TARGETS for suffix in SUFFIX.values())


@functools.cache
def load() -> str | None:
  """Loads the kernel and its BLAS and registers the FFI targets; returns why not, or None.

  Never raises: a kernel that was built but cannot load or register here (a JAX whose XLA FFI
  is older than the kernel's, a missing BLAS, JAXGRU_NATIVE_ISA naming an engine this CPU lacks)
  warns once with the reason, and the XLA paths serve. A kernel that was not built at all (no
  C++ compiler at install time) is not warned about: :func:`native_status` says so.
  """
  library = pathlib.Path(__file__).parent / "_gru_kernel.so"  # setup.py's name for every Python
  if not library.exists():
    why = library.with_suffix(".txt")  # written by setup.py where it installed no kernel
    reason = why.read_text().strip() if why.is_file() else "pip install needs a C++17 compiler"
    return f"the extension jaxgru/_gru_kernel is not installed: {reason} (see the guide 'Supported versions')"
  try:
    reason = _register(library)
  except Exception as error:  # whatever a broken install or an incompatible XLA raises
    reason = f"registering its XLA FFI targets failed: {type(error).__name__}: {error}"
  if reason is not None:
    warnings.warn(
      f"jaxgru's native CPU kernel is off ({reason}); impl='auto' runs the XLA paths, which give the same "
      "numbers. jaxgru.native_status() repeats this reason; see the guide 'Supported versions'.",
      RuntimeWarning,
      stacklevel=_caller_level(),
    )
  return reason


def _caller_level() -> int:
  """The ``stacklevel`` that points a warning at the first frame outside jaxgru, jax and flax
  (the user's call, however deep inside them the kernel was first needed)."""
  frame, level = sys._getframe(2), 2  # the frame that calls warnings.warn is level 1
  while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in ("jaxgru", "jax", "flax"):
    frame, level = frame.f_back, level + 1
  return level


def _register(library: pathlib.Path) -> str | None:
  """Loads ``library`` and OpenBLAS, points the kernel at OpenBLAS and registers the targets."""
  try:
    import scipy_openblas32
  except ImportError:
    return "scipy-openblas32 (the BLAS the kernel calls) is not installed: pip install scipy-openblas32"
  blas_path = pathlib.Path(scipy_openblas32.get_lib_dir()) / f"lib{scipy_openblas32.get_library()}.so"
  try:
    blas = ctypes.CDLL(str(blas_path))
    kernel = ctypes.CDLL(str(library))
  except OSError as error:
    return f"could not load the kernel or its BLAS: {error}"
  prefix = scipy_openblas32.get_library().removeprefix("lib").split("_openblas")[0]  # "scipy"
  blas[f"{prefix}_openblas_set_num_threads"](1)  # the threads are XLA's (the batch split), not BLAS's
  kernel.jaxgru_set_blas(
    ctypes.cast(blas[f"{prefix}_cblas_sgemm"], ctypes.c_void_p), ctypes.cast(blas[f"{prefix}_cblas_dgemm"], ctypes.c_void_p)
  )
  isa = os.environ.get("JAXGRU_NATIVE_ISA")
  if isa and not kernel.jaxgru_select_isa(isa.encode()):
    return (
      f"JAXGRU_NATIVE_ISA={isa!r} is not an instruction set this CPU and build run (one of {', '.join(ISAS)}, where supported)"
    )
  kernel.jaxgru_isa.restype = ctypes.c_char_p
  load.isa = kernel.jaxgru_isa().decode()
  for name in TARGET_NAMES:
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(kernel[name]), platform="cpu")
  load.libraries = (blas, kernel)  # keep both loaded
  return None


# The float32 engines, best first (native/gru_gemm.h); JAXGRU_NATIVE_ISA picks one below the best
# that the CPU runs (the tests run each on one machine; benchmarks compare them).
ISAS = ("avx512", "avx2", "blas")


def isa() -> str | None:
  """The engine of the kernel's float32 products: ``"avx512"`` or ``"avx2"`` (its own, on weights
  packed once per call), ``"blas"`` (OpenBLAS, where neither runs), or ``None`` when the kernel
  cannot run."""
  return load.isa if load() is None else None


def native_status() -> str | None:
  """Why the native kernel cannot run here, or ``None`` when it can (it then serves CPU only).

  Returns:
    The reason in one sentence (the kernel not built, as with no compiler at install or the pure
    wheel, or refused by the install-time check; its BLAS missing; an XLA too old), or None. Never
    raises; the XLA paths serve wherever the kernel cannot.

  Example:
    >>> reason = jaxgru.native_status()
    >>> reason is None or isinstance(reason, str)
    True
  """
  return load()


def native_available() -> bool:
  """Whether ``impl="native"`` can run: the kernel was built and its BLAS loads.

  Returns:
    True when the kernel is loaded and registered; :func:`native_status` says why not otherwise.

  Example:
    >>> jaxgru.native_available() == (jaxgru.native_status() is None)
    True
  """
  return load() is None


def export_checks() -> list[jax.export.DisabledSafetyCheck]:
  """The ``disabled_checks`` that let :func:`jax.export.export` keep the native kernel in a CPU export.

  ``jax.export`` refuses custom calls it cannot vouch for, and the kernel's are such calls. An
  exported program that holds them runs only in a process that has imported jaxgru (which
  registers the kernel), with a jaxgru whose kernel has the same targets. Exports for other
  platforms never hold the kernel and need none of this; nor does ``impl="fused"``.

  Returns:
    One ``jax.export.DisabledSafetyCheck.custom_call`` per target of the kernel.

  Example:
    >>> params = jaxgru.init_gru_params(jax.random.key(0), 3, 4)
    >>> f = jax.jit(lambda p, x: jaxgru.gru(p, x)[0])
    >>> exported = jax.export.export(f, platforms=["cpu"], disabled_checks=jaxgru.export_checks())(params, jnp.ones((5, 2, 3)))
    >>> exported.out_avals[0].shape
    (5, 2, 4)
  """
  return [jax.export.DisabledSafetyCheck.custom_call(name) for name in TARGET_NAMES]


# impl="auto" takes the kernel up to these hidden sizes: where it measured faster than the fused
# path. float32 on the AVX-512 engine: up to 1024 (Intel Xeon, benchmarks/NOTES.md, entry 11d; at
# 2048 its forward lost). Everywhere else, up to 512: float64 and OpenBLAS alone (AMD EPYC, entry
# 10f), and the AVX2 engine, as fast as OpenBLAS or faster at the step's products (entry 11f) but
# measured against the fused path only by a proxy whose XLA still ran AVX-512 products.
AUTO_MAX_HIDDEN = 1024
AUTO_MAX_HIDDEN_BLAS = 512


def auto_max_hidden(dtype) -> int:
  """The largest hidden size at which ``impl="auto"`` takes the kernel for ``dtype``."""
  return AUTO_MAX_HIDDEN if jnp.dtype(dtype) == jnp.float32 and isa() == "avx512" else AUTO_MAX_HIDDEN_BLAS


def auto_picks(x: jax.Array, hidden_size: int, cell: _cell.Cell = CELLS[0]) -> bool:
  """Whether ``impl="auto"`` takes the kernel for ``x`` (T, B, I) where XLA lowers for the CPU: it
  is built, serves the dtype, and the hidden size is one where it measured faster
  (:func:`auto_max_hidden`). The platform is not asked here: the kernel's calls lower to the
  custom call on the CPU and to the fused path on any other platform, so one program takes the
  kernel on the CPU and the fused path on a GPU or TPU (``jax.export`` for those included).
  Sharded or not: each device runs it on its own rows of the batch (see :func:`jaxgru._native.layer`)."""
  if not native_available() or jnp.dtype(x.dtype) not in SUFFIX:
    return False
  return hidden_size <= auto_max_hidden(x.dtype)


def require(x: jax.Array) -> None:
  """Raises a ValueError saying why ``impl="native"`` cannot run on ``x``, if it cannot."""
  if (reason := native_status()) is not None:
    raise ValueError(f"impl='native' is not available here: {reason}; use impl='auto' or 'fused'")
  if jnp.dtype(x.dtype) not in SUFFIX:
    raise ValueError(f"impl='native' computes in float32 or float64, got x of dtype {x.dtype}; use impl='auto' or 'fused'")
  if jax.default_backend() != "cpu":
    raise ValueError(f"impl='native' runs on the CPU only, the default backend is {jax.default_backend()!r}; use impl='auto'")
