"""t1jax.eval.report (markdown tables, atomic numpy-safe JSON) and t1jax.eval.plot (PNG files)."""

import json
import math
import os

import matplotlib.image
import numpy as np
import pytest

from t1jax.eval import plot
from t1jax.eval.report import markdown_table, write_json

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_markdown_table_exact():
    rows = [{"name": "a", "acc": 0.5, "n": 3}, {"name": "b|c", "acc": np.float32(0.25), "ok": True}]
    assert markdown_table(rows) == ("| name | acc | n |\n| --- | --- | --- |\n| a | 0.500 | 3 |\n| b\\|c | 0.250 | — |")
    assert markdown_table(rows, columns=["ok", "acc"], floatfmt=".1%") == (
        "| ok | acc |\n| --- | --- |\n| — | 50.0% |\n| True | 25.0% |"
    )
    assert markdown_table([], columns=["x"]) == "| x |\n| --- |"
    assert markdown_table([{"x": None, "y": 2.0}], floatfmt=".1f") == "| x | y |\n| --- | --- |\n| — | 2.0 |"
    with pytest.raises(ValueError):
        markdown_table([])


def test_write_json_converts_numpy_and_nonfinite(tmp_path):
    obj = {
        "b": np.float32(0.5),
        "a": np.int64(3),
        "matrix": np.array([[1, 2], [3, 4]], dtype=np.int32),
        "vec": np.array([1.5, np.nan, np.inf]),
        "inf": float("-inf"),
        "flag": np.bool_(True),
        "pair": (1, np.float64(2.25)),
        "nested": {np.int64(7): [np.float16(1.0), None, "s"]},
    }
    path = write_json(tmp_path / "out.json", obj)
    assert path == str(tmp_path / "out.json")
    text = (tmp_path / "out.json").read_text()
    assert text.startswith('{\n  "b": 0.5,\n  "a": 3,')  # indent 2, keys in the given order
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "b": 0.5,
        "a": 3,
        "matrix": [[1, 2], [3, 4]],
        "vec": [1.5, None, None],
        "inf": None,
        "flag": True,
        "pair": [1, 2.25],
        "nested": {"7": [1.0, None, "s"]},
    }


def test_write_json_is_atomic(tmp_path):
    target = tmp_path / "sub" / "r.json"
    write_json(target, {"x": 1})
    write_json(target, [1, 2])  # overwrite
    assert json.loads(target.read_text()) == [1, 2]
    assert os.listdir(target.parent) == ["r.json"]
    # A failure while serializing leaves the old file intact and no temp file behind.
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == [1, 2]
    assert os.listdir(target.parent) == ["r.json"]


def _read_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    height, width = round(plot.FIGSIZE[1] * plot.DPI), round(plot.FIGSIZE[0] * plot.DPI)
    assert img.shape[:2] == (height, width) == (400, 640)
    assert not np.all(img == img[0, 0])  # something was drawn
    return img


def test_plot_curves(tmp_path):
    x = [1, 2, 4, 8, 16]
    curves = {"pass@k": [0.2, 0.35, 0.5, 0.6, 0.7], "maj@k": [0.2, None, 0.4, math.nan, 0.45]}
    path = plot.plot_curves(
        tmp_path / "scaling.png", x, curves, title="Scaling", xlabel="k", ylabel="accuracy", log2_x=True, ylim=(0, 1)
    )
    assert path == str(tmp_path / "scaling.png")
    _read_png(path)
    _read_png(plot.plot_curves(tmp_path / "lin.png", [0.5, 1.0], {"a": [1, 2]}, title="t", xlabel="x", ylabel="y"))


def test_plot_curves_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="'maj@k'"):
        plot.plot_curves(
            tmp_path / "p.png", [1, 2, 4], {"pass@k": [1, 2, 3], "maj@k": [1, 2]}, title="t", xlabel="x", ylabel="y"
        )
    with pytest.raises(ValueError, match="positive"):
        plot.plot_curves(tmp_path / "p.png", [0, 1], {"a": [1, 2]}, title="t", xlabel="x", ylabel="y", log2_x=True)
    assert not (tmp_path / "p.png").exists()


def test_plot_series(tmp_path):
    series = {"run A": ([0, 10, 20, 30], [0.1, 0.3, None, 0.5]), "run B": ([5, 15], [0.2, 0.25]), "lone": ([7], [0.4])}
    _read_png(plot.plot_series(tmp_path / "train.png", series, title="Reward", xlabel="step", ylabel="reward"))
    with pytest.raises(ValueError, match="'run B'"):
        plot.plot_series(tmp_path / "bad.png", {"run B": ([1, 2, 3], [1, 2])}, title="t", xlabel="x", ylabel="y")
