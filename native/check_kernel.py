"""Checks a freshly built native kernel before it is installed: ``python native/check_kernel.py DIR``.

``setup.py`` runs this in a subprocess after it has built and stripped ``_gru_kernel.so``, with
DIR a copy of jaxgru's Python sources holding that library. The kernel runs beside the reference
implementation (plain JAX) on small random GRUs, every parameter randomised: float32 and float64,
one and two directions, with and without ``lengths``, with episode ``resets``, forward (outputs, final states) and
backward (the gradients of the parameters, the input and the initial state), on every float32
engine this CPU runs (``avx512``, ``avx2``, ``blas``). A kernel that crashes here (a toolchain
that mislinks it: a signal ends this process, not the install) or disagrees is not installed.

Only jax is imported, not flax: the build environment has jax, jaxlib and OpenBLAS, nothing else.
Prints one line per case and exits 0 when the kernel agrees; otherwise its last line says why.
"""

from __future__ import annotations

import sys
import types

# float64 proves the maths, float32 the products (each against the reference at "highest" precision)
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def main(package: str) -> int:
  import jax

  jax.config.update("jax_enable_x64", True)
  jax.config.update("jax_default_matmul_precision", "highest")
  import jax.numpy as jnp
  import numpy as np

  stub = types.ModuleType("jaxgru")  # the package without its __init__, which imports flax
  stub.__path__ = [package]
  sys.modules["jaxgru"] = stub
  from jaxgru import _core, _native, _params

  if (reason := _native.native_status()) is not None:
    print(f"the kernel does not load: {reason}")
    return 1
  kernel = _native._load.libraries[1]
  engines = [isa for isa in _native.ISAS if kernel.jaxgru_select_isa(isa.encode())]

  def loss(params, x, h0, reset_state, lengths, resets, impl):
    reset_state = None if resets is None else reset_state
    out, h_n = _core.gru(params, x, h0, lengths=lengths, resets=resets, reset_state=reset_state, impl=impl)
    return jnp.sum(jnp.sin(out)) + jnp.sum(jnp.cos(h_n)), (out, h_n)

  # compiled once per impl and shape: the engines, picked at run time, share a program
  programs = {
    impl: jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True), static_argnums=6)
    for impl in ("reference", "native")
  }

  def run(params, x, h0, reset_state, lengths, resets, impl):
    (_, outs), grads = programs[impl](params, x, h0, reset_state, lengths, resets, impl)
    return jax.tree.leaves((outs, grads))

  keys = iter(jax.random.split(jax.random.key(0), 128))
  T, B, I, H = 7, 5, 6, 19
  for dtype in ("float32", "float64"):
    for bidirectional in (False, True):
      D = 2 if bidirectional else 1
      params = _params.init_gru_params(next(keys), I, H, num_layers=2, bidirectional=bidirectional, dtype=dtype)
      params = {k: v + 0.1 * jax.random.normal(next(keys), v.shape, v.dtype) for k, v in params.items()}  # biases too
      x = jax.random.normal(next(keys), (T, B, I), dtype)
      h0 = jax.random.normal(next(keys), (2 * D, B, H), dtype)
      reset_state = jax.random.normal(next(keys), (2 * D, B, H), dtype)
      some_lengths = jnp.array([7, 3, 1, 7, 5])
      some_resets = jax.random.bernoulli(next(keys), 0.3, (T, B))
      for lengths, resets in ((None, None), (some_lengths, None), (some_lengths, some_resets)):
        want = run(params, x, h0, reset_state, lengths, resets, "reference")
        for engine in engines if dtype == "float32" else ["blas"]:
          kernel.jaxgru_select_isa(engine.encode())
          got = run(params, x, h0, reset_state, lengths, resets, "native")
          err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, want, strict=True))
          case = f"{dtype}, {D} direction(s), lengths {'yes' if lengths is not None else 'no'}, "
          case += f"resets {'yes' if resets is not None else 'no'}, {engine}"
          print(f"{case}: max abs error {err:.1e} (outputs, final states, gradients)", flush=True)
          if not err <= TOLERANCE[dtype]:
            print(f"the kernel disagrees with the reference ({case}): max abs error {err:.1e} > {TOLERANCE[dtype]:.0e}")
            return 1
  return 0


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__.split("\n\n")[0])
  sys.exit(main(sys.argv[1]))
