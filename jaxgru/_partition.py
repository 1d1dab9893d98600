r"""A custom call that XLA's partitioner splits along the batch: one call per device on its rows.

XLA cannot look inside a custom call, so under automatic sharding (``jax.jit`` with
``in_shardings`` over a mesh of Auto axes) it would gather a sharded batch onto every device
and run the whole batch there. :func:`per_batch_shard` wraps a kernel in
``jax.experimental.custom_partitioning``: the operands keep the batch sharding they come with,
every other axis is replicated (XLA reshards what comes otherwise), each device runs the kernel
on its own rows, and results that are sums over the batch (weight gradients) are ``psum``-ed
over the batch's mesh axes:

.. math::

   \partial W = \sum_{d \in \text{devices}} \partial W^{(d)}, \qquad
   \partial x = \operatorname{concat}_d\, \partial x^{(d)} \text{ along } B.

A batch that the batch's mesh axes do not divide is replicated (padding rows would enter the
sums). Propagation has a rule for both partitioners: Shardy (JAX's default) through
``sharding_rule``, GSPMD (``jax_use_shardy_partitioner=False``) through
``infer_sharding_from_operands``. On one device the wrapper lowers to the bare kernel. Under
``vmap`` the kernel runs once per member (``jax.custom_batching.sequential_vmap``), each member
still split by batch. It has no derivative: callers wrap it in their own ``custom_vjp``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgru import _compat


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where the batch axis of each operand and result is (None: it has none), and which results
  are sums over the batch (they carry no batch axis and are ``psum``-ed across its shards). A
  result with neither must not depend on the batch: each device's copy is taken as the value."""

  operands: tuple[int | None, ...]
  results: tuple[int | None, ...]
  summed: tuple[bool, ...] = ()

  def is_summed(self, k: int) -> bool:
    return k < len(self.summed) and self.summed[k]


def per_batch_shard(kernel: Callable[..., Sequence[jax.Array]], layout: Layout) -> Callable[..., tuple[jax.Array, ...]]:
  """``kernel(*operands) -> results``, run per shard of the batch under automatic sharding.

  Args:
    kernel: computes its results' shapes from its operands' (it is traced with each device's
      rows); returns a sequence of arrays.
    layout: the batch axes of the operands and results, and which results are batch sums.

  Returns:
    A function of the operands returning the results as a tuple.
  """
  return jax.custom_batching.sequential_vmap(lambda *operands: tuple(_partitioned(kernel, layout, *operands)))


def _run(kernel, layout, *operands):
  del layout
  return tuple(kernel(*operands))


def _spec(ndim: int, batch_dim: int | None, axes: tuple[str, ...]) -> P:
  """A PartitionSpec sharding ``batch_dim`` over ``axes`` (if any), replicating every other axis."""
  spec = [None] * ndim
  if batch_dim is not None and axes:
    spec[batch_dim] = axes
  return P(*spec)


def _batch_axes(mesh, layout: Layout, arg_shapes) -> tuple[str, ...]:
  """The mesh axes that the batch of the first operand with one (x) is sharded over, if they
  divide it; else none (the batch is then replicated)."""
  for shape, dim in zip(arg_shapes, layout.operands, strict=True):
    sharding = shape.sharding
    if dim is None or not isinstance(sharding, NamedSharding):
      continue
    entry = (tuple(sharding.spec) + (None,) * len(shape.shape))[dim]
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    if shape.shape[dim] % math.prod(mesh.shape[a] for a in axes) == 0:
      return axes
    return ()
  return ()


def _shardings(mesh, layout: Layout, axes, arg_shapes, result_shapes):
  args = tuple(NamedSharding(mesh, _spec(len(s.shape), d, axes)) for s, d in zip(arg_shapes, layout.operands, strict=True))
  results = tuple(NamedSharding(mesh, _spec(len(s.shape), d, axes)) for s, d in zip(result_shapes, layout.results, strict=True))
  return args, results


def _partition(kernel, layout: Layout, mesh, arg_shapes, result_shape):
  axes = _batch_axes(mesh, layout, arg_shapes)
  arg_shardings, result_shardings = _shardings(mesh, layout, axes, arg_shapes, result_shape)

  def lower(*operands):
    results = tuple(kernel(*operands))
    if not axes:
      return results
    return tuple(jax.lax.psum(r, axes) if layout.is_summed(k) else r for k, r in enumerate(results))

  return mesh, lower, result_shardings, arg_shardings


def _infer(kernel, layout: Layout, mesh, arg_shapes, result_shape):
  """GSPMD's propagation: the results sharded like the operands' batch, replicated elsewhere."""
  del kernel
  axes = _batch_axes(mesh, layout, arg_shapes)
  return _shardings(mesh, layout, axes, arg_shapes, result_shape)[1]


def _rule(kernel, layout: Layout, mesh, operand_types, result_types):
  """Shardy's rule: one factor ``b`` for every batch axis, each other axis its own factor that
  must stay replicated (``o2d0``: operand 2's axis 0)."""
  del kernel, mesh
  others: list[str] = []

  def mapping(prefix, k, ndim, batch_dim):
    names = []
    for j in range(ndim):
      if j == batch_dim:
        names.append("b")
      else:
        names.append(f"{prefix}{k}d{j}")
        others.append(names[-1])
    return " ".join(names)

  operands = [mapping("o", k, len(t.shape), d) for k, (t, d) in enumerate(zip(operand_types, layout.operands, strict=True))]
  results = [mapping("r", k, len(t.shape), d) for k, (t, d) in enumerate(zip(result_types, layout.results, strict=True))]
  rule = f"{', '.join(operands)} -> {', '.join(results)}"
  if not _compat.SHARDING_RULE_REPLICATION:  # jax < 0.8: Shardy may shard those axes; _partition's
    return rule  # shardings still replicate them (a reshard), so the results are the same
  return rule, {"need_replication_factors": tuple(others)}


_partitioned = custom_partitioning(_run, static_argnums=(0, 1))
_partitioned.def_partition(partition=_partition, infer_sharding_from_operands=_infer, sharding_rule=_rule)
