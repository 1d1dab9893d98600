"""The sine example (``examples/sine.py``, ``jaxgru-sine``): short runs in-process, its flags and its PNG."""

from __future__ import annotations

import io
import os
import pathlib
import runpy
import stat
import sys
import tomllib

import jax
import numpy as np
import pytest
from PIL import Image

from parity.sine import cli as sine_cli
from parity.sine import task as sine_task

ROOT = pathlib.Path(__file__).parent.parent
QUIET = ["--no-progress", "--chunk", "10"]


def _run(*argv):
  out = io.StringIO()
  result = sine_cli.run([*map(str, argv), *QUIET], out=out)
  return result, out.getvalue()


def test_short_run_beside_torch(tmp_path):
  """25 epochs in chunks of 10 (a full chunk compiled, then the remainder of 5), beside torch,
  written into a folder that does not exist yet; then the same seed again, and another seed."""
  path = tmp_path / "new" / "folder" / "sine.png"
  result, printed = _run("--epochs", 25, "--compare-torch", "--output", path)

  # the loss falls, and a test loss is reported
  assert result.losses.shape == (1, 25)
  assert result.losses[0, -1] < 0.9 * result.losses[0, 0]
  assert np.all(np.diff(result.losses[0]) < 0)  # Adam at lr 1e-3 descends steadily in its first epochs
  assert result.test_losses.shape == (1,) and np.isfinite(result.test_losses).all()

  # JAX and torch from the same initial weights agree (float32 Adam: see test_training_parity)
  assert result.torch_losses.shape == (1, 25)
  np.testing.assert_allclose(result.losses, result.torch_losses, rtol=3e-4)
  np.testing.assert_allclose(result.predictions, result.torch_predictions, atol=1e-4)
  for text in ("final training loss", "test loss (held-out tail)", "largest |JAX - torch| over the loss curves", "compile"):
    assert text in printed
  assert "Epoch [20/25], Loss:" in printed and "Epoch [25/25], Loss:" in printed

  # a whole PNG in the new folder, no temporary file left beside it
  assert result.output == path and f"wrote {path}" in printed
  assert sorted(p.name for p in path.parent.iterdir()) == ["sine.png"]
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    assert image.format == "PNG" and image.size == (1100, 700)
    assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn

  # deterministic for a seed; the file is replaced whole
  again, _ = _run("--epochs", 25, "--output", path)
  assert np.array_equal(again.losses, result.losses) and np.array_equal(again.predictions, result.predictions)
  other, _ = _run("--epochs", 25, "--seed", 1, "--output", path)
  assert not np.allclose(other.losses, result.losses)
  assert sorted(p.name for p in path.parent.iterdir()) == ["sine.png"]


def test_ensemble_members_are_the_models_trained_alone(tmp_path):
  result, printed = _run("--ensemble", 3, "--epochs", 10, "--compare-torch", "--output", tmp_path / "e.png")
  assert result.losses.shape == (3, 10) and result.predictions.shape[0] == 3 and result.test_losses.shape == (3,)
  assert "mean ± std of 3" in printed
  assert len({float(loss) for loss in result.losses[:, 0]}) == 3  # independently seeded
  train, opt = sine_cli._train_fn(1e-3, "torch", False)  # shares its compile with the other runs
  for member in range(3):
    params = sine_task.init_params(sine_task.member_key(0, member), 16)
    _, _, alone = train(params, opt.init(params), result.data.x_train, result.data.y_train, epochs=10)
    np.testing.assert_allclose(result.losses[member], alone, rtol=1e-5)
  np.testing.assert_allclose(result.losses, result.torch_losses, rtol=3e-4)
  with Image.open(result.output) as image:
    assert image.format == "PNG"
  # the plot says it is an ensemble and shows the members' band around their mean
  top = sine_cli.figure(result).axes[0]
  assert "ensemble of 3 (vmap)" in top.get_title()
  labels = [t.get_text() for t in top.get_legend().get_texts()]
  assert "JAX (jaxgru), mean of 3" in labels and "JAX, min-max of the 3 members" in labels


def test_png_gets_the_users_umask(tmp_path):
  """Like parity.save and any new file: 0666 minus the umask (it was 0600, a temporary file's)."""
  previous = os.umask(0o027)
  try:
    result, _ = _run("--epochs", 2, "--output", tmp_path / "u.png")
  finally:
    os.umask(previous)
  assert stat.S_IMODE(result.output.stat().st_mode) == 0o640


def test_progress_shows_compiling_and_stays(tmp_path, monkeypatch):
  """On a terminal the bars appear before compiling starts and stay on screen when done."""

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  err = Terminal()
  monkeypatch.setattr(sys, "stderr", err)
  sine_cli.run(["--epochs", "10", "--chunk", "10", "--compare-torch", "--output", str(tmp_path / "p.png")], out=io.StringIO())
  lines = err.getvalue().split("\n")
  assert lines[0].startswith("\rJAX: compiling") or lines[0].startswith("JAX: compiling"), lines[0][:80]
  assert "JAX: compiled in" in lines[0] and "trained in" in lines[0].rsplit("\r", 1)[-1] and "10/10" in lines[0]
  assert "torch: trained in" in lines[1].rsplit("\r", 1)[-1] and "10/10" in lines[1]


def test_classic_variant_against_its_torch_twin(tmp_path):
  result, _ = _run("--variant", "classic", "--epochs", 10, "--compare-torch", "--output", tmp_path / "c.png")
  np.testing.assert_allclose(result.losses, result.torch_losses, rtol=3e-4)
  params = sine_task.init_params(sine_task.member_key(0), 16)
  x, y = result.data.x_train, result.data.y_train
  assert result.losses[0, 0] == pytest.approx(float(sine_task.loss(params, x, y, variant="classic")), rel=1e-6)
  assert abs(result.losses[0, 0] - float(sine_task.loss(params, x, y, variant="torch"))) > 1e-3


def test_float64_run_matches_torch_to_1e9(tmp_path):
  result, _ = _run("--dtype", "float64", "--epochs", 10, "--compare-torch", "--test-fraction", 0, "--output", tmp_path / "d.png")
  assert result.data.x_test.shape[0] == 0 and np.isnan(result.test_losses).all()
  assert jax.tree.leaves(result.params)[0].dtype == np.float64
  np.testing.assert_allclose(result.losses, result.torch_losses, rtol=1e-9)


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--epochs", "ten"], "--epochs: expected an integer"),
    (["--ensemble", "0"], "--ensemble: must be >= 1"),
    (["--seed", "-1"], "--seed: must be in [0, 2**32), got -1"),
    (["--seed", "1.5"], "--seed: expected an integer, got '1.5'"),
    (["--hidden-size", "-3"], "--hidden-size: must be >= 1"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--lr", "nan"], "--lr: must be > 0"),
    (["--noise", "-0.1"], "--noise: must be >= 0"),
    (["--test-fraction", "1"], "--test-fraction: must be in [0, 1)"),
    (["--variant", "gru"], "--variant: invalid choice"),
    (["--dtype", "float16"], "--dtype: invalid choice"),
    (["--output", "plot.jpg"], "--output: must name a .png file"),
    (["--points", "12", "--seq-len", "10"], "no training window"),
    (["--bogus"], "unrecognized arguments"),
  ],
)
def test_bad_flags_are_argparse_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as exc:
    sine_cli.run(argv)
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("usage: jaxgru-sine") and message in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_output_that_cannot_be_written_is_refused_before_training(capsys, monkeypatch):
  monkeypatch.setattr(sine_cli, "_train_jax", lambda *a: pytest.fail("trained before checking --output"))
  with pytest.raises(SystemExit) as exc:
    sine_cli.run(["--output", "/proc/x.png"])
  assert exc.value.code == 2 and "argument --output: cannot write in the folder '/proc'" in capsys.readouterr().err


def test_output_refused_when_its_folder_cannot_be(tmp_path, capsys):
  (tmp_path / "file").write_text("not a folder")
  (tmp_path / "dir.png").mkdir()
  for target, message in [(tmp_path / "file" / "s.png", "cannot create the folder"), (tmp_path / "dir.png", "is a directory")]:
    with pytest.raises(SystemExit) as exc:
      sine_cli.run(["--output", str(target)])
    assert exc.value.code == 2 and message in capsys.readouterr().err
  assert (tmp_path / "file").read_text() == "not a folder"


def test_console_command_and_example_script_resolve(monkeypatch, capsys):
  scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
  module, _, name = scripts["jaxgru-sine"].partition(":")
  assert module == "parity.sine.cli" and getattr(sys.modules[module], name) is sine_cli.main
  monkeypatch.setattr(sys, "argv", ["examples/sine.py", "--help"])
  with pytest.raises(SystemExit) as exc:
    runpy.run_path(str(ROOT / "examples" / "sine.py"), run_name="__main__")
  assert exc.value.code == 0 and "--compare-torch" in capsys.readouterr().out


def test_the_command_keeps_its_programs_in_the_compilation_cache(tmp_path):
  """``jaxgru-sine`` keeps its compiled programs in JAX's persistent cache
  (``$JAXGRU_COMPILE_CACHE_DIR``); a repeat run loads them and trains the same; with
  ``--no-compile-cache`` nothing is written."""
  import subprocess

  def command(cache, *flags):
    env = dict(os.environ, JAXGRU_COMPILE_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    argv = [sys.executable, str(ROOT / "examples" / "sine.py"), "--epochs", "20", *QUIET, "--output", str(tmp_path / "s.png")]
    done = subprocess.run([*argv, *flags], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "final training loss" in line or "compilation cache" in line]

  first = command(tmp_path / "cache")
  assert any(str(tmp_path / "cache") in line for line in first)
  kept = sorted((tmp_path / "cache").iterdir())
  assert any(p.name.startswith("jit_") for p in kept), kept
  assert command(tmp_path / "cache") == first and sorted((tmp_path / "cache").iterdir()) == kept  # loaded, not added
  assert not any("compilation cache" in line for line in command(tmp_path / "off", "--no-compile-cache"))
  assert not (tmp_path / "off").exists()
