"""Learning-curve plots from a metrics.jsonl (real matplotlib, real PNG files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxrl.plots import curves_figure, plot_curves, read_curves


def _write_jsonl(path, records, torn_tail: str = ""):
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write(torn_tail)
    return path


def _three_seeds():
    records = []
    for seed in range(3):
        # Seed 2 logs on a coarser grid and stops early: the plot must cope.
        every = 2_000 if seed == 2 else 1_000
        last = 16_000 if seed == 2 else 20_000
        for step in range(every, last + 1, every):
            ret = 100 * (1 - np.exp(-step / 6_000)) + 5 * seed
            records.append({"step": step, "seed": seed, "eval/return_mean": ret, "train/episode_return": ret - 10})
    return records


def test_plot_curves_writes_a_png_with_content(tmp_path):
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", _three_seeds())
    out = plot_curves(metrics, tmp_path / "plots" / "curves.png")

    assert out == tmp_path / "plots" / "curves.png" and out.exists()
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (800, 500)
        pixels = np.asarray(image.convert("RGB"))
    # Not blank: a white background with lines, text and a shaded band has many
    # colours and plenty of non-white pixels.
    non_white = (pixels < 245).any(axis=-1).mean()
    assert 0.02 < non_white < 0.9
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    # The bold mean line is drawn in matplotlib's tab:blue (31, 119, 180).
    blue = (np.abs(pixels.astype(int) - [31, 119, 180]).sum(axis=-1) < 30).sum()
    assert blue > 500


def test_read_curves_groups_by_member_and_falls_back(tmp_path):
    records = [
        {"step": s, "seed": 0, "member": m, "train/episode_return": float(m * 10 + s)}
        for m in range(2)
        for s in (10, 20, 30)
    ]
    records.append({"step": 20, "seed": 0, "member": 1, "train/episode_return": 99.0})  # re-logged after resume
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", records, torn_tail='{"step": 40, "se')

    metric, group_key, curves = read_curves(metrics)  # eval/return_mean is absent

    assert metric == "train/episode_return" and group_key == "member"
    assert sorted(curves) == [0, 1]
    np.testing.assert_array_equal(curves[1][0], [10, 20, 30])
    np.testing.assert_array_equal(curves[1][1], [20, 99, 40])
    assert plot_curves(metrics, tmp_path / "member.png").exists()


def test_plot_curves_without_the_metric_says_what_is_there(tmp_path):
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", [{"step": 1, "seed": 0, "loss/actor": 0.5}])
    with pytest.raises(ValueError, match="loss/actor"):
        plot_curves(metrics, tmp_path / "x.png")


def test_a_metric_logged_only_as_nan_is_called_diverged_not_absent(tmp_path):
    # metrics.jsonl writes a non-finite value as null; the run's training returns are still finite
    rows = [{"step": s, "seed": 0, "eval/return_mean": None, "train/episode_return": -1.0} for s in (1, 2)]
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", rows)
    with pytest.raises(ValueError, match=r"every value of 'eval/return_mean' is NaN or infinite \(the run diverged\)"):
        plot_curves(metrics, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_a_named_metric_that_is_absent_is_refused_not_replaced(tmp_path):
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", [{"step": 1, "seed": 0, "train/episode_return": 5.0}])
    with pytest.raises(ValueError, match=r"no values of 'eval/retrun_mean'; numeric keys: \['train/episode_return'\]"):
        plot_curves(metrics, tmp_path / "x.png", metric="eval/retrun_mean")


def test_plot_curves_draws_a_single_evaluation(tmp_path):
    # A short run evaluates once, at its end: each member has one point, which
    # a line alone leaves invisible, so the plot came out empty.
    records = [{"step": 16_384, "seed": m, "member": m, "eval/return_mean": [-6.6, 92.7][m]} for m in range(2)]
    out = plot_curves(_write_jsonl(tmp_path / "metrics.jsonl", records), tmp_path / "curves.png")

    with Image.open(out) as image:
        axes = np.asarray(image.convert("RGB"))[:, :550].astype(int)  # left of the legend
    # The mean's dot, in tab:blue (31, 119, 180), and one dot per member.
    assert (np.abs(axes - [31, 119, 180]).sum(axis=-1) < 30).sum() > 50
    assert len({tuple(c) for c in axes.reshape(-1, 3) if c.max() - c.min() > 100}) > 3


def test_a_sweeps_settings_each_get_their_own_mean_not_one_pooled(tmp_path):
    # members 0, 1: one setting, 2, 3: another, far apart
    records = [
        {"step": step, "seed": m % 2, "member": m, "eval/return_mean": float(step / 100 + (90 if m >= 2 else 0) + m)}
        for m in range(4)
        for step in (100, 200, 300)
    ]
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", records)
    groups = {0: "lr=0.001", 1: "lr=0.001", 2: "lr=0.0003", 3: "lr=0.0003"}
    ax = curves_figure(metrics, groups=groups).axes[0]
    means = {line.get_label(): line.get_ydata() for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert list(means) == ["lr=0.001 (2 members)", "lr=0.0003 (2 members)"]
    np.testing.assert_allclose(means["lr=0.001 (2 members)"], [1.5, 2.5, 3.5])
    np.testing.assert_allclose(means["lr=0.0003 (2 members)"], [93.5, 94.5, 95.5])
    # without the settings: one mean over all four
    pooled = [line.get_label() for line in curves_figure(metrics).axes[0].get_lines()]
    assert "mean over 4 members" in pooled and not any("lr=" in label for label in pooled)
    # a setting with one member (a grid with seeds=1) is counted in the singular
    one = curves_figure(metrics, groups={0: "lr=0.1", 1: "lr=0.2", 2: "lr=0.2", 3: "lr=0.2"}).axes[0]
    assert [line.get_label() for line in one.get_lines() if not line.get_label().startswith("_")] == [
        "lr=0.1 (1 member)", "lr=0.2 (3 members)"]
    assert plot_curves(metrics, tmp_path / "curves.png", groups=groups).stat().st_size > 0
