"""Maps and estimate plots write real images and refuse areas they cannot draw."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import opinionmap as om
from opinionmap.direct import direct_estimates
from opinionmap.errors import OpinionmapError
from opinionmap.maps import (
    Area,
    plot_balance,
    plot_choropleth,
    plot_correlations,
    plot_mrp_vs_direct,
)


@pytest.fixture(scope="module")
def truth_table() -> pd.DataFrame:
    truth = pd.read_csv(om.datasets.kazakhstan_truth_path())
    t = truth[truth["question"] == "presence_russia"].rename(
        columns={"response": "category", "share": "mean"}
    )
    return t.assign(lower=t["mean"] - 0.05, upper=t["mean"] + 0.05, n_respondents=50)


def test_bundled_boundaries_have_the_17_frame_regions() -> None:
    areas = om.datasets.kazakhstan_regions()
    frame = om.read_frame(om.datasets.kazakhstan_frame_path())
    assert sorted(a.key for a in areas) == sorted(frame.levels("region"))
    names = {a.key: a.name for a in areas}
    assert names["KZ-SEV"] == "North Kazakhstan"


def test_districts_can_be_read() -> None:
    districts = om.datasets.kazakhstan_districts()
    assert len(districts) == 216
    frame = om.read_frame(om.datasets.kazakhstan_district_frame_path())
    assert sorted(a.key for a in districts) == sorted(frame.levels("district"))
    assert om.datasets.kazakhstan_district_names()["KZ111000"] == "Kokshetau"


def test_district_map_has_region_outlines_and_no_labels(tmp_path: Path) -> None:
    truth = pd.read_csv(om.datasets.data_dir() / "kazakhstan" / "truth_district_2020.csv")
    t = truth[truth["question"] == "presence_muslim"].rename(
        columns={"response": "category", "share": "mean"}
    )
    t = t.assign(lower=t["mean"] * 0.8, upper=t["mean"] * 1.2)[
        ["district", "category", "mean", "lower", "upper"]
    ]
    path = tmp_path / "districts.png"
    fig = plot_choropleth(
        t,
        om.datasets.kazakhstan_districts(),
        area="district",
        categories=["more"],
        outlines=om.datasets.kazakhstan_regions(),
        path=path,
    )
    assert path.stat().st_size > 20_000
    estimate, width = fig.axes[0], fig.axes[1]
    # 216 districts filled, then the 17 regions' outlines drawn over them
    assert len(estimate.collections) == 2 and len(width.collections) == 2
    assert len(estimate.collections[1].get_segments()) >= 17
    # 216 names would be unreadable: none by default (the 17 regions are named)
    assert len(estimate.texts) == 0
    widths = width.collections[0].get_array()
    assert np.nanmax(widths) == pytest.approx(0.4 * t.query("category == 'more'")["mean"].max())
    regions = plot_choropleth(
        pd.DataFrame({"region": ["KZ-SEV"], "category": ["more"], "mean": [0.3]}),
        om.datasets.kazakhstan_regions(),
        area="region",
    )
    assert len(regions.axes[0].texts) == 17


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_choropleth_writes_png_and_svg(
    truth_table: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"map.{suffix}"
    fig = plot_choropleth(
        truth_table,
        om.datasets.kazakhstan_regions(),
        area="region",
        categories=["more", "less"],
        path=path,
    )
    assert path.stat().st_size > 20_000
    # two rows (estimate, interval width) x two categories, plus two colour bars
    assert len(fig.axes) == 6
    # one colour scale per row: both estimate panels share limits
    first, second = fig.axes[0].collections[0], fig.axes[1].collections[0]
    assert first.get_clim() == second.get_clim()
    assert first.get_clim()[1] == pytest.approx(
        truth_table.query("category in ['more', 'less']")["mean"].max()
    )


def test_choropleth_rejects_unknown_areas(truth_table: pd.DataFrame) -> None:
    bad = truth_table.assign(region=truth_table["region"].replace({"KZ-SEV": "KZ-XXX"}))
    with pytest.raises(OpinionmapError, match=r"areas 'KZ-XXX' have no boundary"):
        plot_choropleth(bad, om.datasets.kazakhstan_regions(), area="region")


def test_balance_maps_share_one_symmetric_scale(tmp_path: Path) -> None:
    truth = pd.read_csv(om.datasets.kazakhstan_truth_path())
    balances = {}
    for q in ("presence_russia", "presence_usa", "presence_china", "presence_eu"):
        wide = truth[truth["question"] == q].pivot(
            index="region", columns="response", values="share"
        )
        balances[q] = wide["more"] - wide["less"]
    path = tmp_path / "balance.png"
    fig = plot_balance(balances, om.datasets.kazakhstan_regions(), path=path)
    assert path.stat().st_size > 50_000
    # four panels in rows of three (the fifth and sixth slots removed) and a colour bar
    assert [ax.get_title() for ax in fig.axes[:4]] == list(balances)
    assert len(fig.axes) == 5
    limit = max(float(b.abs().max()) for b in balances.values())
    for ax in fig.axes[:4]:
        assert ax.collections[0].get_clim() == pytest.approx((-limit, limit))
    # each area is coloured by its own balance: North Kazakhstan wants Russia, not the USA
    russia = fig.axes[0].collections[0].get_array()
    usa = fig.axes[1].collections[0].get_array()
    sev = [i for i, a in enumerate(_rings(om.datasets.kazakhstan_regions())) if a == "KZ-SEV"]
    assert russia[sev[0]] == pytest.approx(balances["presence_russia"]["KZ-SEV"])
    assert usa[sev[0]] == pytest.approx(balances["presence_usa"]["KZ-SEV"])
    assert russia[sev[0]] > 0 > usa[sev[0]]
    # labelled in signed percentage points
    points = 100 * balances["presence_russia"]["KZ-SEV"]
    assert f"North Kazakhstan\n{points:+.0f}" in [t.get_text() for t in fig.axes[0].texts]


def _rings(areas: list[Area]) -> list[str]:
    """The area key of each polygon, in drawing order."""
    return [a.key for a in areas for _ in a.rings]


def test_balance_maps_refuse_unknown_areas() -> None:
    bad = pd.Series([0.1, -0.2], index=["KZ-SEV", "KZ-XXX"])
    with pytest.raises(OpinionmapError, match=r"balance map 'x': areas 'KZ-XXX' have no boundary"):
        plot_balance({"x": bad}, om.datasets.kazakhstan_regions())
    with pytest.raises(OpinionmapError, match="no questions to map"):
        plot_balance({}, om.datasets.kazakhstan_regions())
    percent = pd.Series([53.0, -0.2], index=["KZ-SEV", "KZ-AKM"])
    with pytest.raises(
        OpinionmapError, match=r"between -1 and 1; got 'KZ-SEV: 53' \(percentages\? divide"
    ):
        plot_balance({"x": percent}, om.datasets.kazakhstan_regions())


def test_correlation_heat_maps_share_one_scale_and_write_each_value(tmp_path: Path) -> None:
    truth = pd.read_csv(om.datasets.kazakhstan_truth_path().parent / "truth_correlations_2020.csv")
    matrices = {
        name: truth[truth["matrix"] == name].pivot(index="row", columns="column", values="value")
        for name in ("region_effect", "district_effect")
    }
    path = tmp_path / "correlations.png"
    fig = plot_correlations(matrices, path=path)
    assert path.stat().st_size > 20_000
    panels = fig.axes[:2]
    assert [ax.get_title() for ax in panels] == list(matrices)
    assert all(ax.images[0].get_clim() == (-1.0, 1.0) for ax in panels)
    # every cell written with its value; the row labels on the first panel only
    region = matrices["region_effect"]
    written = [t.get_text() for t in panels[0].texts]
    assert len(written) == region.size and f"{region.iloc[0, 1]:.2f}" in written
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list(region.index)
    assert not any(t.get_text() for t in panels[1].get_yticklabels())
    with pytest.raises(OpinionmapError, match=r"heat map 'x': the matrix must be square"):
        plot_correlations({"x": region.iloc[:, :3]})
    with pytest.raises(OpinionmapError, match=r"heat map 'x': correlations lie between -1 and 1"):
        plot_correlations({"x": region * 2})


def test_mrp_vs_direct_plot_is_sorted(truth_table: pd.DataFrame, tmp_path: Path) -> None:
    survey = om.read_survey(om.datasets.kazakhstan_survey_path())
    direct = direct_estimates(survey, "presence_russia")
    fig = plot_mrp_vs_direct(
        truth_table, direct, category="more", area="region", path=tmp_path / "dots.png"
    )
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ordered = truth_table[truth_table["category"] == "more"].sort_values("mean")["region"].tolist()
    assert [lab.split(" ")[0] for lab in labels] == ordered
    assert all("(n=50)" in lab for lab in labels)
    assert (tmp_path / "dots.png").stat().st_size > 10_000
    with pytest.raises(OpinionmapError, match="no MRP estimates for category 'maybe'"):
        plot_mrp_vs_direct(truth_table, direct, category="maybe", area="region")
    assert np.isfinite(direct["weighted"]).all()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_report_figures_are_drawn_without_importing_jax() -> None:
    # in a fresh process: ArviZ leaves a lazy jax in sys.modules, which matplotlib loads
    code = """
import sys
import arviz
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from opinionmap._io import without_lazy_jax

def draw():
    fig, ax = plt.subplots()
    ax.plot([0.0, 1.0], [0.0, 1.0])
    ax.set_xlim(0.0, 1.0)
    fig.canvas.draw()
    plt.close(fig)

with without_lazy_jax():
    draw()
print(type(sys.modules["jax"]).__name__)
draw()
print(type(sys.modules["jax"]).__name__)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # untouched inside; the same figure drawn outside loads JAX (what the helper avoids)
    assert run.stdout.split() == ["_LazyModule", "module"]
