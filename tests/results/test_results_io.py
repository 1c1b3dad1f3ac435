"""Parquet metrics and PNG plots of a results folder."""

import math

import pytest

from rbc_ray.results import MetricsWriter, load, plot_training


def _row(i, training_firm=0.0):
    return {"iteration": i, "episodes": 10 * i, "reward_consumer": 0.1 * i, "reward_firm": -5.0 + i,
            "reward_government": 2.0, "mean_price": 1000.0 + i, "mean_wage": 22.0 - i,
            "mean_hours": 300.0, "training_firm": training_firm, "training_government": 0.0,
            "config": {"nested": "dropped"}}


def test_rows_append_and_reload(tmp_path):
    w = MetricsWriter(tmp_path)
    for i in range(1, 4):
        w.append(_row(i))
    table = load(tmp_path)
    assert table.num_rows == 3
    assert table.column("iteration").to_pylist() == [1, 2, 3]
    assert table.column("mean_wage").to_pylist() == [21.0, 20.0, 19.0]
    assert "config" not in table.column_names  # nested values are not metrics
    df = table.to_pandas() if _has_pandas() else None
    if df is not None:
        assert list(df["reward_firm"]) == [-4.0, -3.0, -2.0]


def test_resumed_writer_continues_and_replaces_repeated_iterations(tmp_path):
    w = MetricsWriter(tmp_path)
    w.append(_row(1))
    w.append(_row(2))
    w2 = MetricsWriter(tmp_path)  # a restored trial re-reports iteration 2
    w2.append(dict(_row(2), mean_price=5.0))
    w2.append(_row(3))
    table = load(tmp_path)
    assert table.column("iteration").to_pylist() == [1, 2, 3]
    assert table.column("mean_price").to_pylist() == [1001.0, 5.0, 1003.0]


def test_a_trial_restored_from_an_earlier_checkpoint_keeps_each_iteration_once_in_order(tmp_path):
    w = MetricsWriter(tmp_path)
    for i in range(1, 6):
        w.append(_row(i))
    w = MetricsWriter(tmp_path)  # restored from its checkpoint at iteration 2: reports 3, 4, 5, 6 again
    for i in range(3, 7):
        w.append(dict(_row(i), mean_price=float(-i)))
    table = load(tmp_path)
    assert table.column("iteration").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert table.column("mean_price").to_pylist() == [1001.0, 1002.0, -3.0, -4.0, -5.0, -6.0]


def test_new_columns_are_filled_with_nan(tmp_path):
    w = MetricsWriter(tmp_path)
    w.append({"iteration": 1, "a": 1.0})
    w.append({"iteration": 2, "a": 2.0, "b": 3.0})
    b = load(tmp_path).column("b").to_pylist()
    assert math.isnan(b[0]) and b[1] == 3.0


def test_load_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics at"):
        load(tmp_path / "nope")


def test_plots_are_pngs_with_phase_marks(tmp_path):
    w = MetricsWriter(tmp_path)
    for i in range(1, 8):
        w.append(_row(i, training_firm=1.0 if i >= 4 else 0.0))
    paths = plot_training(tmp_path)
    names = {p.name for p in paths}
    assert {"training.png", "reward_firm.png", "mean_price.png", "mean_wage.png"} <= names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 2000


def _has_pandas():
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def test_phase_boundaries_come_from_the_training_flags():
    from rbc_ray.results.plots import _phase_starts

    cols = {"episodes": [10, 20, 30, 40, 50], "training_firm": [0, 0, 1, 1, 1],
            "training_government": [0, 0, 0, 0, 1]}
    # the row at episode 30 is the first with firms training: they started within episodes 20..30
    assert _phase_starts(cols) == [(20, "firm trains"), (40, "government trains")]
