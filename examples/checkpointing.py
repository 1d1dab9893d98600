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
A checkpoint damaged after the fact (a corrupt or missing file) is skipped by :func:`restore`
for the latest one that can still be read, with a message naming both.

Run ``python examples/sharded_training.py --checkpoint-dir DIR`` to see it in a training loop.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

STATE, CONFIG = "state", "config"


def manager(directory: str | os.PathLike, *, max_to_keep: int | None = 3, async_save: bool = True) -> ocp.CheckpointManager:
  """An orbax ``CheckpointManager`` over ``directory`` (created if missing).

  Args:
    directory: where the step directories live: a local path (made absolute, as orbax requires)
      or a URL such as ``gs://bucket/run``.
    max_to_keep: how many complete checkpoints to keep (oldest deleted first); None keeps all.
    async_save: write in a background thread after the arrays are copied to the host (training
      goes on meanwhile); call ``manager.wait_until_finished()`` or ``manager.close()`` before
      exiting.

  Raises:
    ValueError: ``directory`` is an existing file, or cannot be created.
  """
  path = os.fspath(directory)
  if "://" not in path:
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
      raise ValueError(f"checkpoint directory {path} is a file, not a directory")
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True, enable_async_checkpointing=async_save
  )
  handlers = {STATE: ocp.StandardCheckpointHandler(), CONFIG: ocp.JsonCheckpointHandler()}
  try:
    return ocp.CheckpointManager(path, options=options, item_handlers=handlers)
  except OSError as err:
    raise ValueError(f"cannot use {path} as the checkpoint directory: {err.strerror or err}") from err


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


class Restored(NamedTuple):
  """What :func:`restore` found: the checkpoint it read, and the newer ones it could not read."""

  step: int
  state: Any
  unreadable: dict[int, str]  # step -> why it could not be read


def restore(
  mngr: ocp.CheckpointManager,
  like: Any,
  config: Mapping[str, Any],
  step: int | None = None,
  *,
  log: Callable[[str], None] = print,
) -> Restored | None:
  """Restores checkpoint ``step``, by default the latest one that can be read.

  A checkpoint that cannot be read (a corrupt or missing file, no stored configuration) is
  skipped for the one before it, and ``log`` says so: the run resumes from the latest good state
  rather than stopping, as after a crash mid-save. A checkpoint of another configuration is never
  skipped: that is a mistake in the command, not damage.

  Args:
    mngr: from :func:`manager`.
    like: a pytree with the structure, shapes, dtypes and shardings to restore into (e.g. a
      freshly initialised state); arrays come back with ``like``'s shardings, so a checkpoint
      written on 8 devices restores on 1 and vice versa.
    config: the current run's configuration; it must equal the stored one.
    step: which checkpoint (no fallback then); None for the latest readable one.
    log: where the message about a skipped checkpoint goes.

  Returns:
    A :class:`Restored`, or None when the directory holds no complete checkpoint.

  Raises:
    ValueError: the checkpoint's configuration differs from ``config`` (every differing field
      named), or no checkpoint could be read (each one's step and reason named).
  """
  step = None if step is None else int(step)
  steps = sorted(mngr.all_steps(), reverse=True) if step is None else [step]
  if not steps:
    return None
  unreadable: dict[int, str] = {}
  _drop_closed_loop_noise()  # before any read: the echo of a failure can come while it unwinds
  for s in steps:
    where = f"checkpoint {s} in {mngr.directory}"
    try:
      stored = mngr.restore(s, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()}))[CONFIG]
    except Exception as err:  # orbax and TensorStore raise many kinds
      unreadable[s] = f"no readable '{CONFIG}' item: damaged, or not written by checkpointing.save ({_brief(err)})"
      continue
    check_config(stored, config, where)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), like)
    try:
      state = mngr.restore(s, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract)}))[STATE]
    except Exception as err:
      unreadable[s] = f"its '{STATE}' cannot be read ({_brief(err)})"
      continue
    if unreadable:
      skipped = "; ".join(f"checkpoint {k} is unreadable: {why}" for k, why in unreadable.items())
      log(f"warning: in {mngr.directory}, {skipped}; falling back to checkpoint {s}, the latest readable one")
    return Restored(s, state, unreadable)
  if step is not None:
    raise ValueError(f"checkpoint {step} in {mngr.directory} cannot be read: {unreadable[step]}")
  reasons = "; ".join(f"checkpoint {k}: {why}" for k, why in unreadable.items())
  raise ValueError(f"no checkpoint in {mngr.directory} can be read: {reasons}")


def _drop_closed_loop_noise() -> None:
  """Silences the echo of failed reads, for the rest of the process.

  After one array fails to read, TensorStore still finishes the reads already started and hands
  each result to orbax's asyncio loop, closed by then; Python reports every one as "Exception
  ignored ... RuntimeError: Event loop is closed" through ``sys.unraisablehook``, a screen of
  tracebacks that say nothing. Those alone are dropped; anything else reaches the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "drops_closed_loop_noise", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.drops_closed_loop_noise = True
  sys.unraisablehook = hook


def _brief(err: BaseException, limit: int = 300) -> str:
  """The first part of an error's message: TensorStore's run to kilobytes of JSON spec."""
  text = str(err).split(" [tensorstore_spec", 1)[0].strip() or type(err).__name__
  return text if len(text) <= limit else text[: limit - 3] + "..."
