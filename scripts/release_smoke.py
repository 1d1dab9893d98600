"""The release smoke test: what a user of an installed jaxgru (the wheel or the sdist, not this
checkout) does first, on whatever JAX the venv has. scripts/check_release.sh runs it in fresh
venvs at the oldest and the newest supported stacks.

- ``import jaxgru``; the native kernel loads (``--native yes``) or says why not (``--native no``,
  ``--why``: words the reason must hold);
- a 2-layer bidirectional GRU with lengths, in float64: every implementation that runs on the CPU
  (reference, fused, native, auto) gives the reference's outputs, final states and gradients
  (parameters, input, initial state) to 1e-12;
- the NNX module (forward, ``nnx.grad``) and the Linen module (init, apply);
- the extras: without torch, ``import parity`` works and its first use names the extra, and
  ``jaxgru-sine --help`` works.

Exits non-zero on the first failure, printing what failed.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import subprocess
import sys
import warnings


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--native", choices=("yes", "no"), required=True, help="whether the install has a working native kernel")
  parser.add_argument("--why", default="", help="with --native no: words that native_status() must say")
  parser.add_argument(
    "--impls",
    default="fused,auto,native",
    help="the implementations compared with the reference (default: fused,auto,native; native only where the kernel runs)",
  )
  args = parser.parse_args()

  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a kernel that is there but cannot load would warn: fail instead
    import flax
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxgru

    jax.config.update("jax_enable_x64", True)
    here = pathlib.Path(jaxgru.__file__).resolve()
    assert "site-packages" in here.parts, f"jaxgru imported from {here}, not from an install"
    status = jaxgru.native_status()
  print(
    f"{platform.machine()}, glibc {platform.libc_ver()[1] or '?'}, python {sys.version.split()[0]}, jax {jax.__version__}, jaxlib {jax.lib.__version__}, flax {flax.__version__}"
  )
  print(f"jaxgru {jaxgru.__version__} from {here.parent}; native kernel: {status or 'available'}")
  assert (status is None) == (args.native == "yes"), f"native kernel: expected {args.native}, status {status!r}"
  assert args.why in (status or ""), f"native_status() should say {args.why!r}: {status!r}"

  params = jaxgru.init_gru_params(jax.random.key(0), 3, 6, num_layers=2, bidirectional=True, dtype=jnp.float64)
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape, p.dtype), params)  # biases too
  x = jax.random.normal(jax.random.key(2), (9, 4, 3), jnp.float64)
  h0 = jax.random.normal(jax.random.key(3), (4, 4, 6), jnp.float64)
  lengths = jnp.array([9, 4, 1, 7])

  def run(impl):
    def loss(params, x, h0):
      out, h_n = jaxgru.gru(params, x, h0, lengths=lengths, impl=impl)
      return jnp.sum(jnp.sin(out)) + jnp.sum(h_n**2), (out, h_n)

    (_, outs), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, x, h0)
    return outs, grads

  want = run("reference")
  impls = [impl for impl in args.impls.split(",") if impl != "native" or status is None]
  for impl in impls:
    got = run(impl)
    err = max(
      float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    )
    print(f"  {impl:9s} vs reference, float64, outputs, h_n and every gradient: max abs error {err:.1e}")
    assert err < 1e-12, f"{impl}: {err}"

  from flax import linen as nn
  from flax import nnx

  module = jaxgru.GRU(3, 6, num_layers=2, rngs=nnx.Rngs(0))
  out, h_n = module(x.astype(jnp.float32))
  grads = nnx.grad(lambda m: jnp.sum(m(x.astype(jnp.float32))[0] ** 2))(module)
  assert out.shape == (9, 4, 6) and h_n.shape == (2, 4, 6) and all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
  linen = jaxgru.linen.GRU(input_size=3, hidden_size=6)
  variables = linen.init(jax.random.key(0), x)
  assert linen.apply(variables, x)[0].shape == (9, 4, 6) and isinstance(linen, nn.Module)
  print("  NNX module (forward, nnx.grad) and Linen module (init, apply): ok")

  try:
    import torch  # noqa: F401
  except ModuleNotFoundError:
    import parity

    try:
      parity.compare  # noqa: B018
    except ModuleNotFoundError as error:
      assert "jaxgru[parity]" in str(error), error
    else:
      raise AssertionError("parity.compare imported without torch")
    sine = pathlib.Path(sys.executable).parent / "jaxgru-sine"
    done = subprocess.run([str(sine), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: jaxgru-sine" in done.stdout, done.stderr
    print("  without torch: import parity works, its first use names the extra; jaxgru-sine --help works")
  print("release smoke test: ok")
  return 0


if __name__ == "__main__":
  sys.exit(main())
