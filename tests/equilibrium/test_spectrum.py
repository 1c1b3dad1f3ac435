"""The spectrum of equilibria: grouping with known answers (hand-made signatures), signatures of a real
tiny profile on common random numbers, resolutions, cross-tables, rows, Parquet and the map."""

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from rbc_ray.economy import open_economy
from rbc_ray.equilibrium import payoffs
from rbc_ray.equilibrium.spectrum import (NOT_ANALYSED, SIGNATURE_COLUMNS, cross_table, epsilon_from_verdicts,
                                          first_appearance, group_profiles, group_summary, plot_spectrum,
                                          profile_networks, scales, signature, spectrum_report, spectrum_rows,
                                          swept_keys, swept_values, write_spectrum)

from equilibrium_helpers import make_profile

RES = {"price": 250.0, "wage": 5.5}


def sig(price, wage, **rest):
    return {"price": float(price), "wage": float(wage), **rest}


# ------------------------------------------------------------------ grouping: known answers
def test_two_well_separated_clusters_make_two_groups_numbered_by_first_appearance():
    sigs = [sig(1000, 11), sig(2000, 33), sig(1010, 11.5), sig(1990, 33), sig(1005, 10.9)]
    labels, sil = group_profiles(sigs, RES)
    assert labels == [1, 2, 1, 2, 1]
    assert sil > 0.9   # tight groups far apart


def test_profiles_closer_than_the_resolution_share_a_group_and_farther_ones_do_not():
    assert group_profiles([sig(1000, 11), sig(1000 + 249, 11 + 5.4)], RES)[0] == [1, 1]
    assert group_profiles([sig(1000, 11), sig(1000 + 251, 11)], RES)[0] == [1, 2]
    assert group_profiles([sig(1000, 11), sig(1000, 11 + 5.6)], RES)[0] == [1, 2]  # any one column separates


def test_complete_linkage_keeps_every_pair_of_a_group_within_the_resolution():
    # a chain 0, 0.8, 1.6 (in resolution units): neighbours agree but the ends do not, so single
    # linkage would make one group; complete linkage may not
    sigs = [sig(1000 + 250 * u, 11) for u in (0.0, 0.8, 1.6, 2.4, 3.2)]
    labels, _ = group_profiles(sigs, RES)
    assert len(set(labels)) >= 3
    for g in set(labels):
        prices = [s["price"] for s, label in zip(sigs, labels) if label == g]
        assert max(prices) - min(prices) <= 250.0


def test_grouping_is_deterministic_and_labels_follow_first_appearance():
    rng = np.random.default_rng(0)
    centres = [(500, 5), (1500, 20), (2500, 40)]
    sigs = [sig(centres[i % 3][0] + rng.uniform(-40, 40), centres[i % 3][1] + rng.uniform(-1, 1)) for i in range(12)]
    first = group_profiles(sigs, RES)
    assert all(group_profiles(sigs, RES) == first for _ in range(3))
    assert first[0] == [1, 2, 3] * 4
    reordered = group_profiles(sigs[::-1], RES)[0]     # the same partition, renumbered
    assert reordered == first_appearance(first[0][::-1])


def test_one_group_has_no_silhouette_and_edge_cases_work():
    labels, sil = group_profiles([sig(1000, 11), sig(1001, 11)], RES)
    assert labels == [1, 1] and math.isnan(sil)
    assert group_profiles([sig(1000, 11)], RES) == ([1], pytest.approx(math.nan, nan_ok=True))
    assert group_profiles([], RES)[0] == []
    with pytest.raises(ValueError, match="price"):
        group_profiles([sig(math.nan, 11), sig(1000, 11)], RES)


def test_only_columns_with_a_resolution_group():
    sigs = [sig(1000, 11, stock=0.0), sig(1000, 11, stock=1e6)]
    assert group_profiles(sigs, RES)[0] == [1, 1]
    assert group_profiles(sigs, {**RES, "stock": 10.0})[0] == [1, 2]


# ------------------------------------------------------------------ resolutions
def test_scales_are_half_an_action_grid_step_and_relative_where_there_is_no_grid():
    cfg = open_economy()
    base = scales(cfg)
    assert base == {"price": 250.0, "wage": 5.5, "hours": 130.0, "consumption": 0.5, "export_share": 0.05,
                    "income_tax": 0.1, "corporate_tax": 0.1, "price_spread": 250.0}
    sigs = [{c: 0.0 for c in SIGNATURE_COLUMNS} | {"stock": v, "payoff_consumer": -v, "payoff_firm": 0.0}
            for v in (10.0, 20.0, 40.0)]
    full = scales(cfg, sigs, relative=0.1)
    assert full["stock"] == pytest.approx(2.0) and full["payoff_consumer"] == pytest.approx(2.0)
    assert full["payoff_firm"] == 1.0                      # all zero: the fallback
    assert "payoff_government" not in full                 # its definition varies with economy.welfare
    assert scales(open_economy(price_grid=[0, 100, 300]))["price"] == 50.0


# ------------------------------------------------------------------ signatures of real profiles
@pytest.fixture(scope="module")
def fresh_profile():
    return make_profile(["train.seed=5"])


def test_signature_of_a_tiny_profile_is_finite_and_reproducible(trained_profile, fresh_profile):
    a = signature(trained_profile, seed=7, n_envs=8, episodes=2)
    assert list(a) == list(SIGNATURE_COLUMNS)
    assert all(math.isfinite(v) for v in a.values())
    assert 0.0 <= a["export_share"] <= 1.0 and a["price_spread"] >= 0.0 and a["hours"] >= 0.0
    assert signature(trained_profile, seed=7, n_envs=8, episodes=2) == a          # same draws, same numbers
    assert signature(trained_profile, seed=8, n_envs=8, episodes=2) != a          # other draws
    assert signature(fresh_profile, seed=7, n_envs=8, episodes=2) != a            # another profile
    # the payoff columns are the analyser's payoffs on the same seed (common random numbers)
    u = payoffs(trained_profile.config.economy_config, profile_networks(trained_profile), 7, 8, 2)
    for kind, values in u.items():
        assert a[f"payoff_{kind}"] == pytest.approx(float(values.mean()), rel=1e-12)


# ------------------------------------------------------------------ rows, cross-table, outputs
def hand_rows():
    """Eight profiles of a 2 x 2 sweep with 2 seeds each; the group follows p_export except one."""
    rows = []
    for i, (p_export, welfare, seed) in enumerate(
            [(p, w, s) for p in (500, 1000) for w in ("consumer", "total") for s in (0, 1)]):
        group = 1 if p_export == 500 else 2
        if (p_export, welfare, seed) == (1000, "total", 1):
            group = 3
        swept = {"economy.p_export": p_export, "economy.welfare": welfare, "train.seed": seed}
        rows.append({"profile": f"t{i}@100", "swept": json.dumps(swept, sort_keys=True), **swept,
                     **{c: float(i) for c in SIGNATURE_COLUMNS}, "group": group, "silhouette": 0.5,
                     "epsilon_lcb": 0.1 * i, "verdict": "no significant gain" if i % 3 else
                     "not an equilibrium: firm gain", "flagged": i % 3 == 0})
    return rows


def test_cross_table_counts_groups_per_swept_value():
    rows = hand_rows()
    assert swept_keys(rows) == ["economy.p_export", "economy.welfare"]
    assert swept_keys(rows, seeds=True) == ["economy.p_export", "economy.welfare", "train.seed"]
    assert swept_keys([{**r, "episode": 100 * (1 + i % 2)} for i, r in enumerate(rows)])[-1] == "episode"
    table = cross_table(rows, ["economy.p_export"])
    assert [(r["economy.p_export"], r["profiles"], r["group_1"], r["group_2"], r["group_3"], r["groups"])
            for r in table] == [(500, 4, 4, 0, 0, 1), (1000, 4, 0, 3, 1, 2)]
    assert [r["flagged"] for r in table] == [2, 1]          # profiles 0, 3 and 6
    full = cross_table(rows, ["economy.p_export", "economy.welfare"])
    assert len(full) == 4 and all(r["profiles"] == 2 for r in full)
    assert full[-1] == {"economy.p_export": 1000, "economy.welfare": "total", "profiles": 2, "flagged": 1,
                        "groups": 2, "group_1": 0, "group_2": 1, "group_3": 1}
    assert sum(r["profiles"] for r in cross_table(rows, [])) == 8
    summary = group_summary(rows)
    assert [(s["group"], s["profiles"], s["flagged"]) for s in summary] == [(1, 4, 2), (2, 3, 1), (3, 1, 0)]
    assert summary[2]["epsilon_lcb_max"] == pytest.approx(0.7)


def test_rows_keep_flagged_profiles_and_mark_unanalysed_ones(trained_profile, fresh_profile):
    profiles = [trained_profile, fresh_profile, make_profile(["economy.p_export=1000"])]
    assert swept_values(profiles) == [{"economy.p_export": 500.0, "train.seed": 0},
                                      {"economy.p_export": 500.0, "train.seed": 5},
                                      {"economy.p_export": 1000.0, "train.seed": 0}]
    sigs = [{c: float(i) for c in SIGNATURE_COLUMNS} for i in range(3)]
    eps = epsilon_from_verdicts([{"profile": profiles[0].name, "epsilon_lcb": 5.0,
                                  "verdict": "not an equilibrium: firm gain"},
                                 {"profile": "elsewhere@1", "epsilon_lcb": 0.0, "verdict": "no significant gain"}])
    rows = spectrum_rows(profiles, sigs, [1, 1, 2], eps, silhouette=0.25)
    assert len(rows) == 3                                    # flagged, not dropped
    assert rows[0]["flagged"] and rows[0]["epsilon_lcb"] == 5.0
    assert rows[1]["verdict"] == NOT_ANALYSED and math.isnan(rows[1]["epsilon_lcb"]) and not rows[1]["flagged"]
    assert rows[2]["economy.p_export"] == 1000.0 and json.loads(rows[2]["swept"])["train.seed"] == 0
    assert [r["group"] for r in rows] == [1, 1, 2] and rows[0]["silhouette"] == 0.25


def test_spectrum_report_writes_parquet_tables_and_the_map(tmp_path, trained_profile, fresh_profile):
    profiles = [trained_profile, fresh_profile, make_profile(["economy.p_export=1000"])]
    eps = {trained_profile.name: (3.0, "not an equilibrium: consumer gain")}
    rows = spectrum_report(profiles, tmp_path, seed=11, n_envs=8, episodes=1, epsilon_by_profile=eps)
    table = pq.read_table(tmp_path / "spectrum.parquet").to_pylist()
    assert [r["profile"] for r in table] == [p.name for p in profiles]
    for column in ("profile", "swept", "economy.p_export", "group", "epsilon_lcb", "verdict", "flagged",
                   *SIGNATURE_COLUMNS):
        assert column in table[0], column
    assert [r["group"] for r in table] == [r["group"] for r in rows] and table[0]["group"] == 1
    cross = pq.read_table(tmp_path / "spectrum_cross.parquet").to_pylist()
    assert sum(r["profiles"] for r in cross) == 3 and {r["economy.p_export"] for r in cross} == {500.0, 1000.0}
    assert len(pq.read_table(tmp_path / "spectrum_groups.parquet").to_pylist()) == len({r["group"] for r in rows})
    png = tmp_path / "spectrum.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_map_is_drawn_without_resolutions_and_for_one_profile(tmp_path):
    rows = hand_rows()
    assert plot_spectrum(rows, tmp_path / "a.png").stat().st_size > 0
    assert plot_spectrum(rows[:1], tmp_path / "b.png", {"price": 250.0}).stat().st_size > 0
    paths = write_spectrum(rows, tmp_path / "out")
    assert set(paths) == {"spectrum", "cross", "groups"} and all(p.exists() for p in paths.values())
