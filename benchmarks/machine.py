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

  gpu = torch.cuda.get_device_name() if device == "cuda" else None
  env = {
    k: os.environ[k] for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_") if k in os.environ
  }
  return {
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "device": gpu or f"CPU ({jax.devices()[0].platform})",
    "platform": platform.platform(),
    "versions": (
      f"python {platform.python_version()}, jax {jax.__version__}, jaxlib {importlib.metadata.version('jaxlib')}, flax {flax.__version__}, "
      f"optax {optax.__version__}, torch {torch.__version__}"
    ),
    "threads": f"torch.get_num_threads()={torch.get_num_threads()}, XLA default; env {env or 'none set'}",
    "matmul_precision": precision,
    "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
  }


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
