"""Checkpoints of a training run with orbax: save, restore, and refuse a different configuration.

A checkpoint is one orbax step directory holding two items: ``state`` (any pytree of arrays: model
parameters, optax state, step, RNG key data) and ``config`` (a small JSON dict describing what wrote
it). :func:`restore` reads ``config`` first and raises a ``ValueError`` listing every field that
differs from the current run before it reads a single array.

Crash safety is orbax's: on a local or POSIX filesystem ``CheckpointManager`` writes step ``N``
into ``N.orbax-checkpoint-tmp...``, writes ``commit_success.txt`` there once every file is
written, then renames the directory to ``N`` (``AtomicRenameTemporaryPath``; ``rename(2)`` is
atomic). On GCS it writes into ``N`` and the ``commit_success.txt`` marks it complete
(``CommitFileTemporaryPath``). Either way a process killed mid-save leaves an unfinished
directory that ``latest_step()`` does not list and that ``cleanup_tmp_directories=True`` (set
here) deletes when the next manager opens, so the last complete checkpoint stays the latest.
Orbax does not fsync: a power loss, as opposed to a process crash, is up to the filesystem.

Run ``python examples/sharded_training.py --checkpoint-dir DIR`` to see it in a training loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE, CONFIG = "state", "config"


def manager(directory: str | os.PathLike, *, max_to_keep: int | None = 3, async_save: bool = True) -> ocp.CheckpointManager:
  """An orbax ``CheckpointManager`` over ``directory`` (created if missing).

  Args:
    directory: where the step directories live; made absolute, as orbax requires.
    max_to_keep: how many complete checkpoints to keep (oldest deleted first); None keeps all.
    async_save: write in a background thread after the arrays are copied to the host (training
      goes on meanwhile); call ``manager.wait_until_finished()`` or ``manager.close()`` before
      exiting.
  """
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True, enable_async_checkpointing=async_save
  )
  handlers = {STATE: ocp.StandardCheckpointHandler(), CONFIG: ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options, item_handlers=handlers)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, config: Mapping[str, Any]) -> None:
  """Saves ``state`` (a pytree of arrays) and ``config`` (JSON-able) as checkpoint ``step``."""
  mngr.save(
    int(step),
    args=ocp.args.Composite(**{STATE: ocp.args.StandardSave(state), CONFIG: ocp.args.JsonSave(dict(config))}),
    force=True,
  )


def check_config(stored: Mapping[str, Any], config: Mapping[str, Any], where: str = "checkpoint") -> None:
  """Raises ValueError naming every field where ``stored`` and ``config`` differ."""
  current = json.loads(json.dumps(dict(config)))  # tuples become lists, as in the stored JSON
  diffs = [
    f"{k}: checkpoint has {stored.get(k, '<missing>')!r}, this run has {current.get(k, '<missing>')!r}"
    for k in sorted(set(stored) | set(current))
    if stored.get(k, "<missing>") != current.get(k, "<missing>")
  ]
  if diffs:
    raise ValueError(f"{where} was written for a different configuration; " + "; ".join(diffs))


def restore(mngr: ocp.CheckpointManager, like: Any, config: Mapping[str, Any], step: int | None = None) -> tuple[int, Any] | None:
  """Restores checkpoint ``step`` (default: the latest complete one) as ``(step, state)``.

  Args:
    mngr: from :func:`manager`.
    like: a pytree with the structure, shapes, dtypes and shardings to restore into (e.g. a
      freshly initialised state); arrays come back with ``like``'s shardings, so a checkpoint
      written on 8 devices restores on 1 and vice versa.
    config: the current run's configuration; it must equal the stored one.
    step: which checkpoint; None for the latest.

  Returns:
    None when the directory has no complete checkpoint.

  Raises:
    ValueError: the checkpoint's configuration differs from ``config`` (every differing field
      named), or it has no stored configuration.
  """
  step = mngr.latest_step() if step is None else int(step)
  if step is None:
    return None
  where = f"checkpoint {step} in {mngr.directory}"
  try:
    stored = mngr.restore(step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()}))[CONFIG]
  except (FileNotFoundError, KeyError, ValueError) as err:
    raise ValueError(f"{where} has no readable '{CONFIG}' item ({err}); it was not written by checkpointing.save") from err
  check_config(stored, config, where)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), like)
  return step, mngr.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract)}))[STATE]
