"""Direct estimates under stratified and clustered designs: R's values, and an independent loop.

Reference values are R ``survey`` output as printed by its authors:

- the package's worked examples on r-survey.r-forge.r-project.org/survey/:
  ``example-summary.html`` (``svymean(~stype, dclus1)``), ``example-table.html``
  (``svymean(~interaction(stype, comp.imp), dclus1)``) and ``example-domain.html``
  (``svyby(~api99 + api00, ~stype + sch.wide, dclus1, svymean)``), where
  ``dclus1 <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc)``;
- the package's regression tests (github.com/cran/survey, version 4.5):
  ``tests/lonely.psu.Rout.save``, ``tests/check.Rout.save`` and ``tests/domain.Rout.save``;
- ``svyciprop()`` intervals computed with R survey 4.5 (and 4.4-2) and printed in the
  tests of the Python package svy (github.com/samplics-org/svy,
  ``packages/svy/tests/svy/estimation/test_prop_ci_domain.py`` and ``test_proportions.py``).

Each is asserted to the precision printed. Where R prints nothing (proportions by area
with strata, clusters, an fpc and a lonely stratum), an explicit per-PSU loop written from
R's ``onestrat()`` is the independent computation.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import opinionmap as om
from opinionmap.codebook import Codebook
from opinionmap.direct import (
    LonelyPSUWarning,
    _design,
    _domain_means,
    _intervals,
    direct_estimates,
)
from opinionmap.errors import SurveyError

# -- R's api data: apiclus1 (a one-stage cluster sample of 15 school districts) ----------
# from R's survey package, data(api) (github.com/cran/survey, inst/api.db): the columns
# needed here, in the data's row order; pw = 33.847 and fpc = 757 for every row
_DNUM_RUNS = [
    (637, 11),
    (437, 4),
    (778, 2),
    (197, 13),
    (406, 2),
    (815, 4),
    (178, 4),
    (255, 16),
    (568, 9),
    (135, 34),
    (510, 21),
    (716, 37),
    (61, 13),
    (413, 1),
    (448, 12),
]
_STYPE = (
    "HEEEEEEEEMMHEMEMEEMEMMEEEEEEEEEEHMEEHEEMEEEEMEMEEEEEEEEMHHHHEEEMEEEEEEEEEEEEEEEEEEEEEEEE"
    "EEEEEEEEEEEHHEMEEMEEEEEEEEEEEEMEHHHEEEEEEEEEEEEEEEEEEEEEEEEEMMMMEEEEEEEEMEEMEMEEEEEHEEEE"
    "EEMEMEE"
)
_SCH_WIDE = (
    "YYYYYYYYYYYYYYYNYYNYYNYYYYYYNYYYNNYYYYYNYYYYYYYYYYYYYYNYYYNYYNYYYYYYYYYNYYYYYYYNYYYYYYNY"
    "YYYYYYYYYYYNYYNYYYYYYNYYYYYYYYYYYYYYYYYYYNYYYYYYNNNYYYYYYYYNYYYYYYYYYYYYNYYYYNYYYYYYYYYY"
    "YYYYYYY"
)
_COMP_IMP = (
    "YYYNYYYNYYYYYYYNYYNYNNYYYYYYNYYYNNNNYYYNYYYNYYYYYYYNYYNYYNNYYNNNYYNYYYYNYYYNYNYNYYYYYNNY"
    "YYYYYYYYNYYNNYNYYYNYNNYYYYYYYNYYNYNYYYYNYNYNYYNYNNNYYYYYYNYNYYYYYYYYYYYNNYYYYNYYYYYYYYYY"
    "YYNYYYY"
)
_API00 = (
    "608 684 612 710 729 714 759 585 625 664 669 443 467 482 496 411 494 493 592 550 689 598 "
    "628 652 628 832 777 709 709 736 561 555 696 631 564 602 529 491 510 547 814 806 715 785 "
    "720 905 617 630 629 696 476 757 825 595 552 847 714 724 687 723 662 699 807 679 691 622 "
    "754 655 764 795 505 638 733 523 511 710 657 602 490 664 651 603 698 511 814 669 711 538 "
    "705 595 551 762 521 709 780 780 722 828 737 595 661 502 614 585 582 642 536 746 667 629 "
    "745 674 637 696 632 639 745 789 656 789 517 478 582 592 587 553 516 535 566 481 472 559 "
    "610 599 551 554 561 505 492 504 487 627 465 529 625 436 542 515 461 528 512 508 670 760 "
    "652 546 717 701 748 735 699 685 827 711 677 759 697 742 691 700 551 703 676 714 842 824 "
    "717 836 733 719 817 749 781"
)
_API99 = (
    "562 554 528 669 660 673 693 567 576 598 619 414 420 404 365 408 404 469 601 464 679 594 "
    "560 608 565 779 739 645 716 710 508 496 706 641 545 587 469 423 454 575 762 785 682 779 "
    "700 890 591 599 615 648 454 750 802 534 553 827 696 715 687 693 601 730 805 662 664 609 "
    "748 632 664 758 452 632 688 441 480 692 579 586 431 669 621 520 680 493 801 658 745 502 "
    "655 555 484 744 473 701 747 769 684 806 698 593 648 413 607 465 512 618 515 669 648 631 "
    "637 657 566 662 553 593 710 759 615 712 495 443 551 556 518 490 433 509 541 469 386 512 "
    "520 549 531 513 550 505 494 451 443 582 440 482 578 415 525 526 427 499 479 479 650 736 "
    "613 452 659 691 718 695 701 668 812 669 639 764 668 725 660 635 502 668 644 617 790 801 "
    "687 785 703 619 755 676 733"
)
_YES_NO = {"Y": "Yes", "N": "No"}


@pytest.fixture(scope="module")
def apiclus1() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "dnum": [d for d, n in _DNUM_RUNS for _ in range(n)],
            "stype": list(_STYPE),
            "sch_wide": [_YES_NO[c] for c in _SCH_WIDE],
            "comp_imp": [_YES_NO[c] for c in _COMP_IMP],
            "api00": [float(v) for v in _API00.split()],
            "api99": [float(v) for v in _API99.split()],
        }
    )
    assert len(df) == 183
    return df.assign(pw=33.847, fpc=757.0, all="all")


def _printed(value: str) -> object:
    """A number as R printed it: equal within half a unit of its last digit."""
    return pytest.approx(float(value), abs=0.5 * 10.0 ** -len(value.split(".")[1]))


def _means(
    df: pd.DataFrame,
    columns: list[str],
    domain: np.ndarray | None = None,
    *,
    weight: str | None = None,
    strata: str | None = None,
    cluster: str | None = None,
    fpc: str | None = None,
    lonely_psu: str = "adjust",
) -> tuple[np.ndarray, np.ndarray]:
    """Domain means and SEs of numeric columns: the estimator behind direct_estimates."""
    design = _design(df, weight, strata, cluster, fpc, "<test>")
    domain = np.zeros(len(df), dtype=np.intp) if domain is None else domain
    stats_ = _domain_means(df[columns].to_numpy(float), domain, design, lonely_psu)
    return stats_.mean, np.sqrt(stats_.var)


# -- shares and means against R's printed output --------------------------------------------
def test_school_type_shares_in_a_cluster_sample_match_r(apiclus1: pd.DataFrame) -> None:
    # svymean(~stype, dclus1): E 0.786885 (SE 0.0463), H 0.076503 (0.0268), M 0.136612 (0.0296)
    t = direct_estimates(apiclus1, "stype", by="all", weight="pw", cluster="dnum", fpc="fpc")
    t = t.set_index("category")
    expected = {"E": (0.786885, 0.0463), "H": (0.076503, 0.0268), "M": (0.136612, 0.0296)}
    for category, (share, se) in expected.items():
        assert t.loc[category, "weighted"] == pytest.approx(share, abs=5e-7)
        assert t.loc[category, "weighted_se"] == pytest.approx(se, abs=5e-5)
    assert (t["df"] == 14).all()  # 15 districts, one stratum


def test_table_cell_shares_match_r_to_eight_digits(apiclus1: pd.DataFrame) -> None:
    # ftable(svymean(~interaction(stype, comp.imp), dclus1)): mean and SE per cell
    expected = {
        "E.No": (0.17486339, 0.02599552),
        "H.No": (0.03825137, 0.01607602),
        "M.No": (0.06010929, 0.02457177),
        "E.Yes": (0.61202186, 0.04167572),
        "H.Yes": (0.03825137, 0.01605469),
        "M.Yes": (0.07650273, 0.02167084),
    }
    df = apiclus1.assign(cell=apiclus1["stype"] + "." + apiclus1["comp_imp"])
    t = direct_estimates(
        df, "cell", by="all", weight="pw", cluster="dnum", fpc="fpc", categories=list(expected)
    ).set_index("category")
    for cell, (share, se) in expected.items():
        assert t.loc[cell, "weighted"] == pytest.approx(share, abs=5e-9)
        assert t.loc[cell, "weighted_se"] == pytest.approx(se, abs=5e-9)


def test_domain_means_match_svyby(apiclus1: pd.DataFrame) -> None:
    # svyby(~api99 + api00, ~stype + sch.wide, dclus1, svymean, keep.var = TRUE)
    expected = {
        ("E", "No"): (601.6667, 596.3333, 47.27582, 43.49010),
        ("E", "Yes"): (608.3485, 653.6439, 21.52493, 20.31720),
        ("H", "No"): (662.0000, 659.3333, 29.23003, 27.00275),
        ("H", "Yes"): (577.6364, 607.4545, 46.50125, 43.70468),
        ("M", "No"): (611.3750, 606.3750, 41.11886, 41.11686),
        ("M", "Yes"): (607.2941, 643.2353, 42.53046, 42.12850),
    }
    keys = list(zip(apiclus1["stype"], apiclus1["sch_wide"], strict=True))
    domain = np.array([list(expected).index(k) for k in keys])
    mean, se = _means(apiclus1, ["api99", "api00"], domain, weight="pw", cluster="dnum", fpc="fpc")
    for d, (m99, m00, se99, se00) in enumerate(expected.values()):
        assert mean[d] == pytest.approx([m99, m00], abs=5e-5)
        assert se[d] == pytest.approx([se99, se00], abs=5e-6)


@pytest.mark.parametrize(
    ("rule", "se"),
    [("remove", 5.8058), ("certainty", 5.8058), ("adjust", 5.8281), ("average", 6.0096)],
)
def test_lonely_psu_rules_match_r(apiclus1: pd.DataFrame, rule: str, se: float) -> None:
    # options(survey.lonely.psu = rule); svymean(~api00, svydesign(id = ~1, weights = ~pw,
    # strata = ~dnum, data = apiclus1)): district 413 is a stratum with one school
    mean, got = _means(apiclus1, ["api00"], weight="pw", strata="dnum", lonely_psu=rule)
    assert mean[0, 0] == pytest.approx(644.17, abs=5e-3)
    assert got[0, 0] == pytest.approx(se, abs=5e-5)


@pytest.mark.parametrize("rule", ["remove", "adjust", "average"])
def test_a_census_stratum_is_not_lonely(apiclus1: pd.DataFrame, rule: str) -> None:
    # fpc = 1 for district 413 (its one school is all there is), 1000 elsewhere: SE 5.7344
    df = apiclus1.assign(f=np.where(apiclus1["dnum"] == 413, 1.0, 1000.0))
    _, se = _means(df, ["api00"], weight="pw", strata="dnum", fpc="f", lonely_psu=rule)
    assert se[0, 0] == pytest.approx(5.7344, abs=5e-5)
    t = direct_estimates(df, "sch_wide", by="all", weight="pw", strata="dnum", fpc="f")
    assert t.attrs["lonely_strata"] == []  # no warning either (warnings are errors here)


@pytest.fixture(scope="module")
def fpc_data() -> pd.DataFrame:
    """R's data(fpc): two strata, eight PSUs (Levy and Lemeshow)."""
    return pd.DataFrame(
        {
            "stratid": [1, 1, 1, 1, 1, 2, 2, 2],
            "psuid": [1, 2, 3, 4, 5, 1, 2, 3],
            "weight": [3.0, 3, 3, 3, 3, 4, 4, 4],
            "Nh": [15.0, 15, 15, 15, 15, 12, 12, 12],
            "x": [2.8, 4.1, 6.8, 6.8, 9.2, 3.7, 6.6, 4.2],
        }
    ).assign(f27=27.0)


@pytest.mark.parametrize(
    ("design", "mean", "se"),
    [
        (dict(weight="weight", strata="stratid", cluster="psuid"), "5.4481", "0.7413"),
        (dict(weight="weight", strata="stratid"), "5.4481", "0.7413"),
        (dict(strata="stratid"), "5.525", "0.7796"),
        (dict(cluster="psuid"), "5.525", "0.838"),
        (dict(weight="weight", cluster="psuid"), "5.4481", "0.7938"),
        (dict(weight="weight", cluster="psuid", fpc="f27"), "5.4481", "0.7165"),
        (dict(weight="weight", strata="stratid", cluster="psuid", fpc="Nh"), "5.4481", "0.616"),
        # no weights: R's svydesign takes them from the fpc (15/5 and 12/3, the same)
        (dict(strata="stratid", cluster="psuid", fpc="Nh"), "5.4481", "0.616"),
    ],
    ids=[
        "strata-clusters",
        "strata",
        "strata-unweighted",
        "clusters-unweighted",
        "clusters",
        "clusters-fpc",
        "strata-clusters-fpc",
        "weights-from-fpc",
    ],
)
def test_fpc_data_means_match_r(
    fpc_data: pd.DataFrame, design: dict[str, str], mean: str, se: str
) -> None:
    # tests/check.Rout.save: svymean(~x, svydesign(...)) for each design, to the digits printed
    got_mean, got_se = _means(fpc_data, ["x"], **design)
    assert got_mean[0, 0] == _printed(mean)
    assert got_se[0, 0] == _printed(se)


def test_fpc_as_sampling_fraction_equals_fpc_as_population_count(fpc_data: pd.DataFrame) -> None:
    design = dict(weight="weight", strata="stratid", cluster="psuid")
    counts = _means(fpc_data, ["x"], **design, fpc="Nh")
    fractions = _means(fpc_data.assign(fraction=[1 / 3] * 5 + [1 / 4] * 3), ["x"], **design,
                       fpc="fraction")  # fmt: skip
    np.testing.assert_allclose(fractions, counts, rtol=1e-12)


def test_domain_means_in_a_stratified_cluster_sample_match_svyby(fpc_data: pd.DataFrame) -> None:
    # tests/domain.Rout.save: svyby(~x, ~I(x > 4), dfpc, svymean): 3.314286 (SE 0.3117042),
    # 6.195 (SE 0.7555129), dfpc <- svydesign(id=~psuid, strat=~stratid, weight=~weight, nest=TRUE)
    domain = (fpc_data["x"] > 4).to_numpy().astype(np.intp)
    mean, se = _means(fpc_data, ["x"], domain, weight="weight", strata="stratid", cluster="psuid")
    assert mean[:, 0] == pytest.approx([3.314286, 6.195], abs=5e-7)
    assert se[:, 0] == pytest.approx([0.3117042, 0.7555129], abs=5e-8)


# -- intervals against svyciprop ---------------------------------------------------------------
def _svy_frame() -> pd.DataFrame:
    """2 strata x 4 PSUs x 10 persons; persons 1-5 of each PSU are the domain female == 1."""
    mid = {1: [1, 2, 0, 3], 2: [2, 1, 4, 1]}
    flat = {1: [2, 2, 2, 3], 2: [2, 3, 2, 2]}
    rows = [
        {
            "stratum": h,
            "psu": f"{h}-{k + 1}",
            "female": int(j < 5),
            "wgt": 10.0 if h == 1 else 20.0,
            "y_mid": int(j < mid[h][k]) if j < 5 else int(j < 7),
            "y_zero": 0 if j < 5 else int(j < 8),
            "y_flat": int(j < flat[h][k]) if j < 5 else int(j < 6),
        }
        for h in (1, 2)
        for k in range(4)
        for j in range(10)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("outcome", "by", "domain", "expected"),
    [
        ("y_mid", ["female"], ("1",), (0.366666666666667, 0.10363754503432, 0.138846801273085,
                                       0.649366612413814, 6)),
        ("y_flat", ["female"], ("1",), (0.45, 0.037267799624996, 0.359739743149435,
                                        0.54274945800675, 6)),
        ("y_mid", ["female", "stratum"], ("1", "1"), (0.3, 0.129099444873581, 0.026912858673537,
                                                      0.772658049163753, 3)),
        ("y_mid", ["female", "stratum"], ("1", "2"), (0.4, 0.14142135623731, 0.056027190573667,
                                                      0.847107899229998, 3)),
        ("y_flat", ["female", "stratum"], ("1", "2"), (0.45, 0.05, 0.297777350798571,
                                                       0.609395087641518, 3)),
    ],
)  # fmt: skip
def test_korn_graubard_domain_intervals_match_svyciprop(
    outcome: str, by: list[str], domain: tuple[str, ...], expected: tuple[float, ...]
) -> None:
    # R survey 4.5: svyciprop(~I(y == 1), subset(des, female == 1 [& stratum == h]),
    # method = "beta"), des <- svydesign(ids = ~psu, strata = ~stratum, weights = ~wgt, nest = TRUE)
    t = direct_estimates(
        _svy_frame(), outcome, by=by, weight="wgt", strata="stratum", cluster="psu", prob=0.95
    )
    row = t.set_index([*by, "category"]).loc[(*domain, "1")]
    share, se, lower, upper, df = expected
    assert row["weighted"] == pytest.approx(share, abs=1e-9)
    assert row["weighted_se"] == pytest.approx(se, abs=1e-9)
    assert row["lower"] == pytest.approx(lower, abs=1e-9)
    assert row["upper"] == pytest.approx(upper, abs=1e-9)
    assert row["df"] == df


@pytest.mark.parametrize(
    ("p", "se", "n", "df", "beta", "logit"),
    [
        (0.507348258357226, 0.0167712595840644, 922, 56, (0.473233376535445, 0.541412207644769),
         (0.473768764613996, 0.54086158229386)),
        (0.471999767708621, 0.0348828290040279, 276, 56, (0.400786658613709, 0.544064683764286),
         (0.403112644241021, 0.541969987343409)),
        (0.501335861736522, 0.0438888962101757, 167, 52, (0.410824184861583, 0.5917831333426),
         (0.41412536084128, 0.588465156732825)),
        (0.507348258357226, 0.0192309892530454, 922, 921, (0.468954757876348, 0.545677337133621),
         (0.469636396975924, 0.544976682060238)),
    ],
)  # fmt: skip
def test_interval_formulas_match_svyciprop(
    p: float,
    se: float,
    n: int,
    df: int,
    beta: tuple[float, float],
    logit: tuple[float, float],
) -> None:
    # R survey 4.4-2: svyciprop(..., method = "beta") and (..., method = "logit") on designs
    # whose share, SE, respondents and degrees of freedom are these
    args = (np.array([p]), np.array([se**2]), np.array([n]), np.array([df]), 0.95)
    for method, expected in (("beta", beta), ("logit", logit)):
        lower, upper = _intervals(*args, method)
        assert (lower[0], upper[0]) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("interval", ["beta", "logit"])
def test_shares_of_zero_and_one_get_intervals_of_positive_width(interval: str) -> None:
    # y_zero is 0 for every woman: p = 0 and SE 0 in the domain female == 1 (40 respondents,
    # df 6); the interval is Clopper-Pearson at n* = 40 (t_39 / t_6)^2 (Korn and Graubard)
    t = direct_estimates(
        _svy_frame(),
        "y_zero",
        by="female",
        weight="wgt",
        strata="stratum",
        cluster="psu",
        interval=interval,
        prob=0.95,
    ).set_index(["female", "category"])
    n_star = 40 * (stats.t.ppf(0.025, 39) / stats.t.ppf(0.025, 6)) ** 2
    bound = 1 - 0.025 ** (1 / n_star)
    zero, one = t.loc[("1", "1")], t.loc[("1", "0")]
    assert (zero["weighted"], zero["weighted_se"], zero["lower"]) == (0.0, 0.0, 0.0)
    assert zero["upper"] == pytest.approx(bound, rel=1e-12)
    assert (one["weighted"], one["upper"]) == (1.0, 1.0)
    assert one["lower"] == pytest.approx(1 - bound, rel=1e-12)
    assert 0.1 < bound < 0.2


def test_a_one_respondent_area_still_gets_an_interval() -> None:
    df = pd.DataFrame({"area": ["a", "a", "a", "b"], "y": ["x", "z", "x", "x"]})
    t = direct_estimates(df, "y", by="area", prob=0.9).set_index(["area", "category"])
    b = t.loc[("b", "x")]
    assert (b["weighted"], b["df"], b["upper"]) == (1.0, 0, 1.0)
    assert b["lower"] == pytest.approx(0.05)  # Clopper-Pearson with n = 1: (alpha / 2)^(1 / 1)


# -- an independent computation: R's onestrat() written as loops -------------------------------
def _loop_shares(df: pd.DataFrame, category: str, rule: str) -> dict[str, tuple[float, float, int]]:
    """Share, SE and df of ``category`` by area, as svyby(~I(y == category), ~area, svymean)."""
    psus: dict[str, set[str]] = defaultdict(set)
    fpc: dict[str, float] = {}
    for row in df.itertuples():
        psus[row.stratum].add(row.cluster)
        fpc[row.stratum] = row.fpc
    out = {}
    for area in sorted(set(df["area"])):
        rows = [r for r in df.itertuples() if r.area == area and r.y != "dk"]
        total = sum(r.w for r in rows)
        share = sum(r.w for r in rows if r.y == category) / total
        by_stratum: dict[str, dict[str, float]] = {h: dict.fromkeys(psus[h], 0.0) for h in psus}
        for r in rows:
            by_stratum[r.stratum][r.cluster] += r.w * ((r.y == category) - share) / total
        variance, present, usable = 0.0, 0, 0
        for h, totals in by_stratum.items():
            n_h, f = len(totals), 1 - len(psus[h]) / fpc[h]
            present += any(r.stratum == h for r in rows)
            if n_h > 1:
                centre = sum(totals.values()) / n_h
                variance += f * n_h / (n_h - 1) * sum((t - centre) ** 2 for t in totals.values())
                usable += any(r.stratum == h for r in rows)
            elif rule == "adjust":  # centred at the grand mean, zero for a ratio's z
                variance += f * sum(t**2 for t in totals.values())
        if rule == "average":
            variance *= present / usable
        positive = [r for r in rows if r.w > 0]
        df_ = len({(r.stratum, r.cluster) for r in positive}) - len({r.stratum for r in positive})
        out[area] = (share, math.sqrt(variance), df_)
    return out


def _random_design(seed: int) -> pd.DataFrame:
    """Six strata (one with a single PSU), cluster labels reused across strata, areas that cut
    across strata, a missing code, some zero weights."""
    rng = np.random.default_rng(seed)
    rows = []
    for h, n_psu in enumerate([3, 1, 4, 2, 5, 3]):
        for c in range(n_psu):
            for _ in range(rng.integers(2, 9)):
                rows.append(
                    {
                        "stratum": f"s{h}",
                        "cluster": f"c{c}",
                        "area": f"a{rng.integers(0, 4)}",
                        "y": rng.choice(["yes", "no", "maybe", "dk"], p=[0.4, 0.3, 0.2, 0.1]),
                        "w": float(rng.choice([0.0, 1.0, 2.5, 7.0], p=[0.05, 0.35, 0.4, 0.2])),
                        "fpc": float(n_psu + h * 3),
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("rule", ["adjust", "average", "remove"])
def test_shares_by_area_match_an_explicit_per_psu_loop(seed: int, rule: str) -> None:
    df = _random_design(seed)
    with pytest.warns(LonelyPSUWarning, match=r"stratum\(s\) 's1' of strata column 'stratum'"):
        t = direct_estimates(
            df,
            "y",
            by="area",
            weight="w",
            strata="stratum",
            cluster="cluster",
            fpc="fpc",
            missing=["dk"],
            lonely_psu=rule,
        )
    assert t.attrs["lonely_strata"] == ["s1"]
    t = t.set_index(["area", "category"])
    for category in ("yes", "no", "maybe"):
        for area, (share, se, df_) in _loop_shares(df, category, rule).items():
            row = t.loc[(area, category)]
            assert row["weighted"] == pytest.approx(share, rel=1e-12)
            assert row["weighted_se"] == pytest.approx(se, rel=1e-10, abs=1e-15)
            assert row["df"] == df_


# -- behaviour -----------------------------------------------------------------------------------
def test_lonely_strata_are_reported_or_refused(apiclus1: pd.DataFrame) -> None:
    kwargs = dict(by="all", weight="pw", strata="dnum")
    with pytest.warns(LonelyPSUWarning, match=r"'413' of strata column 'dnum' hold a single PSU"):
        t = direct_estimates(apiclus1, "sch_wide", **kwargs)
    assert (t.attrs["lonely_strata"], t.attrs["lonely_psu"]) == (["413"], "adjust")
    with pytest.raises(SurveyError, match=r"'413' of strata column 'dnum' .* merge each"):
        direct_estimates(apiclus1, "sch_wide", lonely_psu="fail", **kwargs)


def test_equal_weights_without_a_design_give_design_effect_one() -> None:
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"area": ["a"] * 150, "y": rng.choice(["p", "q", "r"], 150)})
    t = direct_estimates(df, "y", by="area")
    assert t["design_effect"].to_numpy() == pytest.approx(1.0)
    assert (t["df"] == 149).all()
    assert t.attrs == {"lonely_strata": [], "lonely_psu": "adjust", "interval": "beta"}


def test_clustering_widens_the_interval() -> None:
    # two villages answer alike inside, differently between: a design effect well above 1
    df = pd.DataFrame({"area": ["a"] * 40, "y": ["x"] * 18 + ["z"] * 2 + ["x"] * 4 + ["z"] * 16})
    df["village"] = [f"v{i // 10}" for i in range(40)]
    plain = direct_estimates(df, "y", by="area").set_index("category").loc["x"]
    clustered = direct_estimates(df, "y", by="area", cluster="village").set_index("category")
    assert clustered.loc["x", "weighted"] == plain["weighted"]
    assert clustered.loc["x", "design_effect"] > 3
    width = clustered.loc["x", "upper"] - clustered.loc["x", "lower"]
    assert width > 2 * (plain["upper"] - plain["lower"])
    assert clustered.loc["x", "df"] == 3


def test_survey_codebook_supplies_the_design() -> None:
    df = _random_design(5)
    codebook = Codebook.from_roles(
        outcomes={"y": ["yes", "no", "maybe"]},
        area="area",
        weight="w",
        strata="stratum",
        cluster="cluster",
        fpc="fpc",
        missing=["dk"],
    )
    survey = om.Survey.from_dataframe(df, codebook)
    assert (survey.strata, survey.cluster, survey.fpc) == ("stratum", "cluster", "fpc")
    with pytest.warns(LonelyPSUWarning):
        from_survey = direct_estimates(survey, "y", lonely_psu="average")
    with pytest.warns(LonelyPSUWarning):
        from_frame = direct_estimates(
            df,
            "y",
            by="area",
            categories=["yes", "no", "maybe"],
            missing=["dk"],
            weight="w",
            strata="stratum",
            cluster="cluster",
            fpc="fpc",
            lonely_psu="average",
        )
    pd.testing.assert_frame_equal(from_survey, from_frame)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(lonely_psu="drop"), r"unknown lonely_psu 'drop'; allowed: 'adjust', 'average'"),
        (dict(interval="wald"), r"unknown interval 'wald'; allowed: 'beta', 'logit'"),
        (dict(strata="district"), r"column\(s\) 'district' not in the survey"),
        (dict(cluster="c", fpc="f"), r"fpc column 'f' has values <= 0 \(0.0\) at rows 1"),
        (dict(strata="s", fpc="n"), r"fpc column 'n' varies within 1 stratum\(s\) \('a': 9.0, 10"),
        (dict(strata="s", cluster="c", fpc="few"), r"'b': fpc 1 < 2 sampled PSUs"),
        (dict(strata="gap"), r"strata column 'gap' has 1 blank cell\(s\) at rows 2 \(0-based\)"),
    ],
)
def test_design_errors_name_the_column_values_and_fix(kwargs: dict[str, str], pattern: str) -> None:
    df = pd.DataFrame(
        {
            "area": ["x", "x", "x", "x"],
            "y": ["p", "q", "p", "q"],
            "s": ["a", "a", "b", "b"],
            "c": [1, 2, 3, 4],
            "f": [5.0, 0.0, 5.0, 5.0],
            "n": [10.0, 9.0, 4.0, 4.0],
            "few": [3.0, 3.0, 1.0, 1.0],
            "gap": ["a", "a", None, "b"],
        }
    )
    with pytest.raises(SurveyError, match=pattern):
        direct_estimates(df, "y", by="area", **kwargs)
