"""What a benchmark ran on: CPU/GPU model, library versions, threads, precision; and the peak."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

ENV_KEYS = (
  "XLA_FLAGS",
  "OMP_NUM_THREADS",
  "MKL_NUM_THREADS",
  "OPENBLAS_NUM_THREADS",
  "TF_NUM_INTRAOP_THREADS",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_TRIM_THRESHOLD_",
  "OPENBLAS_CORETYPE",  # these four: an instruction set restricted (benchmarks/avx2_proxy.sh)
  "ATEN_CPU_CAPABILITY",
  "MKL_ENABLE_INSTRUCTIONS",
  "ONEDNN_MAX_CPU_ISA",
  "JAXGRU_NATIVE_ISA",
)


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def describe(device: str, precision: str) -> dict[str, Any]:
  import flax
  import optax

  from jaxgru import _native_library

  gpu = torch.cuda.get_device_name() if device == "cuda" else None
  env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
  usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return {
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "device": gpu or f"CPU ({jax.devices()[0].platform})",
    "platform": platform.platform(),
    "versions": (
      f"python {platform.python_version()}, jax {jax.__version__}, jaxlib {importlib.metadata.version('jaxlib')}, flax {flax.__version__}, "
      f"optax {optax.__version__}, torch {torch.__version__}"
    ),
    "threads": (
      f"torch.get_num_threads()={torch.get_num_threads()}, torch.get_num_interop_threads()={torch.get_num_interop_threads()}, "
      f"XLA's own pool (one thread per usable core: {usable}); env {env or 'none set'}"
    ),
    "native": (
      f"the kernel's float32 products on its {_native_library.isa()} engine, float64 and weight gradients on OpenBLAS"
      if _native_library.native_available()
      else f"not available: {_native_library.native_status()}"
    ),
    "dtype": "float32",
    "matmul_precision": precision,
    "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    "load_before": load_average(),
  }


def load_average() -> str | None:
  """The 1-, 5- and 15-minute load averages: a shared machine shows here."""
  try:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
  except OSError:
    return None


def busy_warning(info: dict[str, Any]) -> str | None:
  """A sentence when other work shared the machine.

  Before the run the 1-minute load should be near 0 (above 1: something else was running); after
  it, the benchmark's own threads (one per core) are in the average, so only a load above the core
  count plus one points to other work.
  """
  cores = info["cores"] or 1
  before, after = (float(info[k].split()[0]) if info.get(k) else 0.0 for k in ("load_before", "load_after"))
  if before > 1.0 or after > cores + 1:
    return f"load average {before:.2f} before, {after:.2f} after, on {cores} cores: other processes shared the machine, timings are unreliable"
  return None


def header(info: dict[str, Any]) -> str:
  return "\n".join(f"{k}: {v}" for k, v in info.items())


def peak_gflops(device: str, size: int = 2048, repeats: int = 10) -> tuple[float, str]:
  """The best float32 matrix-product throughput of JAX and torch on ``size`` x ``size`` operands."""
  flop = 2 * size**3
  a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
  ja = jnp.asarray(a)
  jmm = jax.jit(lambda a: a @ a)
  jax.block_until_ready(jmm(ja))
  ta = torch.from_numpy(a).to(device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  best = {"jax": np.inf, "torch": np.inf}
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(jmm(ja))
    best["jax"] = min(best["jax"], time.perf_counter() - start)
    start = time.perf_counter()
    ta @ ta
    sync()
    best["torch"] = min(best["torch"], time.perf_counter() - start)
  winner = min(best, key=best.get)
  return flop / best[winner] / 1e9, f"{winner} {size}x{size} float32 matmul, best of {repeats}"
