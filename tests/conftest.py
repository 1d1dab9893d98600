"""Shared test set-up: torch pinned to exact float32 maths, XLA's machine code unoptimised, and
one precision fixture.

``precision`` runs a test twice: float64 (``jax.enable_x64``) proves the maths, float32 with
``jax.default_matmul_precision("highest")`` and torch's TF32 off proves the kernels.

The suite compiles thousands of small XLA programs, and compiling is most of its time. Two XLA
flags (set here, before JAX starts a backend, and passed on to the suite's subprocesses by
``_helpers.xla_env``) take out the parts that only make machine code faster:
``--xla_backend_optimization_level=0`` leaves out LLVM's optimisation of it (about 40% of the
suite's time), and ``--xla_cpu_use_fusion_emitters=false`` emits each fusion's loops directly
instead of through XLA's MLIR fusion emitters (a third of what compiling then took). What the
tests check does not depend on them: XLA's own passes on the program (fusion, buffer assignment,
the lowering of the kernel's calls), the program's IEEE arithmetic and the native kernel
(compiled C++) are the same; the benchmarks, the examples and users keep XLA's defaults.
"""

import dataclasses
import os

import jax
import numpy as np
import pytest
import torch

from jaxgru import _compat

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

if not hasattr(jax, "enable_x64"):  # jax < 0.8: the suite also runs on the oldest supported JAX
  jax.enable_x64 = _compat.enable_x64

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_num_threads(1)


@dataclasses.dataclass(frozen=True)
class Precision:
  name: str
  np_dtype: type
  torch_dtype: torch.dtype
  tol: float


FLOAT64 = Precision("float64", np.float64, torch.float64, 1e-10)
FLOAT32 = Precision("float32", np.float32, torch.float32, 1e-5)


@pytest.fixture(params=[FLOAT64, FLOAT32], ids=lambda p: p.name)
def precision(request):
  p = request.param
  with jax.enable_x64(p is FLOAT64), jax.default_matmul_precision("highest"):
    yield p


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield
