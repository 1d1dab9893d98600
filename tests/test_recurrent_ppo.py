"""examples/recurrent_ppo.py: the recurrent PPO of the guide "Recurrent policies" learns, and its command runs."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
import recurrent_ppo  # noqa: E402


def test_it_learns_from_memory():
  """A quarter of the guide's run (seed 0): the mean episode return over the last tenth of the
  updates is at least twice a random policy's (about 21), which only memory allows (the agent
  sees no velocity)."""
  config = dataclasses.replace(recurrent_ppo.Config(), total_steps=262_144)
  _, returns = jax.jit(recurrent_ppo.make_train(config))(jax.random.key(config.seed))
  returns = np.asarray(returns)
  assert returns.shape == (config.num_updates,)
  assert np.nanmean(returns[:5]) < 30
  assert np.nanmean(returns[-config.num_updates // 10 :]) > 45


def test_the_command_writes_its_curve(tmp_path, capsys):
  png = tmp_path / "curve.png"
  assert recurrent_ppo.main(["--total-steps", "4096", "--png", str(png)]) == 0
  assert png.stat().st_size > 10_000
  assert "mean episode return" in capsys.readouterr().out


def test_bad_options_are_refused(capsys):
  with pytest.raises(SystemExit):
    recurrent_ppo.main(["--num-envs", "6"])
  assert "--num-envs must be a positive multiple of 4" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    recurrent_ppo.main(["--total-steps", "10"])
  assert "--total-steps must be at least one rollout" in capsys.readouterr().err
