"""The benchmark suite runs and writes its reports (no timing is asserted: timings belong in benchmarks)."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from benchmarks import memory, suite


def test_parse_shape():
  assert suite.parse_shape("100x64x128x128") == suite.Shape(100, 64, 128, 128)
  assert suite.parse_shape("100x64x256x256xL2xbi") == suite.Shape(100, 64, 256, 256, 2, True)
  assert str(suite.Shape(100, 64, 256, 256, 2, True)) == "100x64x256x256xL2xbi"


@pytest.mark.parametrize("bad", ["100x64x128", "0x1x1x1", "10x1x1x1xL0", "axbxcxd", "10x1x1x1xbixL2"])
def test_bad_shapes_are_argparse_errors(bad, capsys):
  with pytest.raises(SystemExit) as exit_:
    suite.parser().parse_args(["--shape", bad])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert "--shape" in err and ("shape must look like TxBxIxH" in err or "every size in a shape must be >= 1" in err)


def test_flops_by_hand():
  # one layer: 2 * T * B * 3H * (I + H) = 2 * 10 * 4 * 24 * (3 + 8)
  assert suite.flops(suite.Shape(10, 4, 3, 8), "forward") == 2 * 10 * 4 * 24 * 11
  # two bidirectional layers: the second reads 2H inputs; backward adds twice the forward
  forward = 2 * (2 * 5 * 2 * 12 * (3 + 4)) + 2 * (2 * 5 * 2 * 12 * (8 + 4))
  assert suite.flops(suite.Shape(5, 2, 3, 4, 2, True), "forward") == forward
  assert suite.flops(suite.Shape(5, 2, 3, 4, 2, True), "fwd+bwd") == 3 * forward


def test_suite_writes_json_markdown_and_chart(tmp_path, capsys):
  argv = ["--shape", "6x3x2x4xL2xbi", "--repeats", "1", "--max-repeats", "1", "--budget", "0", "--no-seed-task", "--no-memory"]
  assert suite.main(argv + ["--out", str(tmp_path)]) == 0
  report = json.loads((tmp_path / "cpu.json").read_text())
  assert [c["mode"] for c in report["cells"]] == list(suite.MODES)
  for cell in report["cells"]:
    assert set(cell["results"]) == set(suite.CONTENDERS)
    assert all(r["median_ms"] > 0 for r in cell["results"].values())
  assert report["cells"][0]["max_abs_error_vs_torch"] < 1e-5  # the timed jaxgru computes torch's numbers
  table = (tmp_path / "cpu.md").read_text()
  assert "| 6x3x2x4xL2xbi | fwd+bwd |" in table and "torch/jaxgru" in table and "jax " in table
  assert matplotlib.image.imread(tmp_path / "cpu.png").ndim == 3
  assert "wrote" in capsys.readouterr().out


def test_memory_measurement_runs_in_a_subprocess():
  result = memory.run(shape=(40, 2, 3, 4), cases=(("fused", True),))
  (case,) = result["cases"]
  assert "error" not in case, case
  assert case["temp_bytes"] > 0 and case["peak_rss_bytes"] > 0
  assert "impl=fused" in memory.describe(result)
