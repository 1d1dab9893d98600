"""What differs between the JAX releases jaxgru supports (0.7.0 to the newest), in one place.

Each name is what the newer JAX offers, or the nearest that the older one does; the guide
'Supported versions' (docs/guides/versions.md) lists what an older JAX lacks.
"""

from __future__ import annotations

import inspect

import jax
import jax.experimental
from jax.experimental.custom_partitioning import SdyShardingRule

# jax.enable_x64 (a context manager) is jax.experimental.enable_x64 before jax 0.8
enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64

# jax.random.bernoulli(..., out_sharding=) from jax 0.8: under an explicit-sharding mesh the mask
# is sharded like x
BERNOULLI_OUT_SHARDING = "out_sharding" in inspect.signature(jax.random.bernoulli).parameters

# A custom_partitioning sharding rule with need_replication_factors (axes Shardy must keep
# replicated) from jax 0.8; before it, the rule's string alone
SHARDING_RULE_REPLICATION = "need_replication_factors" in inspect.signature(SdyShardingRule.__init__).parameters


try:  # JAX has no public test for a known value; its tracers have answered this since before 0.7
  from jax._src.core import to_concrete_value as _to_concrete_value
except ImportError:  # a JAX without it: only plain arrays count as known
  _to_concrete_value = lambda x: None if isinstance(x, jax.core.Tracer) else x


def known_now(*trees) -> bool:
  """Whether every array in ``trees`` has its value already: a concrete array, or the tracer of
  a transformation applied eagerly to one (``jax.grad`` outside ``jit``); False inside ``jit``
  or any other staging."""
  return all(_to_concrete_value(leaf) is not None for leaf in jax.tree.leaves(trees))


try:  # the trace of forward-mode autodiff; jax.grad runs a LinearizeTrace (direct linearize) instead
  from jax._src.interpreters.ad import JVPTrace as _JVPTrace
except ImportError:  # a JAX without it: no array is taken for one under forward mode
  _JVPTrace = ()
try:
  from jax._src.interpreters.ad import LinearizeTrace as _LinearizeTrace
except ImportError:
  _LinearizeTrace = ()


def forward_mode(*trees) -> bool:
  """Whether forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) would meet a ``jax.custom_vjp``
  applied to ``trees``: their innermost autodiff trace, beneath ``vmap`` or ``jit``, is a JVP
  trace, in or out of ``jit`` (JAX refuses it when it lowers the program). Reverse mode inside
  forward mode (``jax.hessian``) meets the ``custom_vjp``'s own forward and backward passes, plain
  JAX, and answers False. A JAX whose ``jax.grad`` still runs forward mode
  (``jax_use_direct_linearize`` off) answers True under ``grad`` too."""
  for leaf in jax.tree.leaves(trees):
    trace = getattr(leaf, "_trace", None)
    while trace is not None:
      if isinstance(trace, _LinearizeTrace):
        break
      if isinstance(trace, _JVPTrace):
        return True
      trace = getattr(trace, "parent_trace", None)
  return False
