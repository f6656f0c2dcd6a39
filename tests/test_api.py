"""The package as a whole: its public signatures, what using a saved fit imports, and labels
that look like formula syntax or are not ASCII, end to end."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import opinionmap as om
from opinionmap.checks import ppc
from opinionmap.fitting import fit
from opinionmap.maps import Area, plot_choropleth
from opinionmap.marginal import effects
from opinionmap.poststratification import poststratify
from opinionmap.report import ReportOptions, build_report
from opinionmap.results import FitResult, load

# what a saved fit is used without (poststratification's compiled kernel needs numba)
HEAVY = ("pymc", "pytensor", "nutpie")
REGIONS = ["Нур-Султан", "a:b", "x [y]", "Almaty city", "Shymkent"]
ETHNICITIES = ["kazakh", "рус:ский", "other [x]"]
SEXES = ["m:1", "f[2]"]
CATEGORIES = ("no", "yes: sure", "maybe [later]")


def test_public_signatures_name_no_any() -> None:
    """Every public function and method says what it takes and returns (no ``Any``)."""
    any_ = re.compile(r"\bAny\b")
    found = []

    def check(obj: object, name: str) -> None:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
        annotations = [str(p.annotation) for p in signature.parameters.values()]
        annotations.append(str(signature.return_annotation))
        found.extend(f"{name}: {a}" for a in annotations if any_.search(a))

    for name in om.__all__:
        obj = getattr(om, name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                member = getattr(member, "__func__", member)
                member = getattr(member, "fget", member)
                if callable(member):
                    check(member, f"{name}.{attr}")
        elif callable(obj):
            check(obj, name)
    assert not found, found


def test_the_package_module_resolves_its_lazy_names_to_functions() -> None:
    import opinionmap.fitting

    assert om.fit is opinionmap.fitting.fit
    assert om.load is load and om.poststratify is poststratify
    assert callable(om.effects) and callable(om.ppc)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = om.nothing  # type: ignore[attr-defined]


def _survey(seed: int = 5, n: int = 700) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, len(REGIONS), n)
    ethnicity = rng.integers(0, len(ETHNICITIES), n)
    sex = rng.integers(0, 2, n)
    eta = np.stack(
        [
            np.zeros(n),
            -0.3 + 0.5 * sex + np.linspace(-0.6, 0.6, len(REGIONS))[region],
            -0.8 + 0.4 * (ethnicity == 1) - 0.3 * sex,
        ],
        axis=1,
    )
    p = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    return pd.DataFrame(
        {
            "y": np.asarray(CATEGORIES)[y],
            "region": np.asarray(REGIONS)[region],
            "ethnicity": np.asarray(ETHNICITIES)[ethnicity],
            "sex": np.asarray(SEXES)[sex],
        }
    )


def _frame() -> pd.DataFrame:
    rows = [
        (r, e, s, 100.0 + 10 * i + 3 * j + k)
        for i, r in enumerate(REGIONS)
        for j, e in enumerate(ETHNICITIES)
        for k, s in enumerate(SEXES)
    ]
    return pd.DataFrame(rows, columns=["region", "ethnicity", "sex", "population"])


def _squares() -> tuple[Area, ...]:
    """One unit square per region, side by side, for maps."""
    return tuple(
        Area(
            r,
            r.upper(),
            (np.array([[i, 0], [i + 1, 0], [i + 1, 1], [i, 1], [i, 0]], float),),
            (i + 0.5, 0.5),
            1.0,
        )
        for i, r in enumerate(REGIONS)
    )


@pytest.fixture(scope="module")
def odd_labels(tmp_path_factory: pytest.TempPathFactory) -> tuple[FitResult, Path]:
    spec = om.ModelSpec(
        formula="y ~ 1 + sex + (1 | region) + (1 | region:ethnicity)",
        family="categorical",
        levels=CATEGORIES,
    )
    result = fit(
        spec, _survey(), draws=100, tune=150, chains=2, random_seed=3, progress=False, warn=False
    )
    return result, result.save(tmp_path_factory.mktemp("odd") / "fit.nc")


@pytest.mark.slow
def test_level_labels_that_look_like_syntax_work_end_to_end(
    odd_labels: tuple[FitResult, Path], tmp_path: Path
) -> None:
    result, path = odd_labels
    loaded = load(path)
    design = loaded.design
    # the dummy of the non-reference level, named but computed from the structure
    assert design.coef_names == ("sex[m:1]",)
    cells = design.cells
    np.testing.assert_array_equal(design.X[:, 0], (cells["sex"] == "m:1").to_numpy(float))
    assert "Нур-Султан:рус:ский" in design.groups[1].levels
    assert len(design.groups[1].levels) == len(REGIONS) * len(ETHNICITIES)
    for name in result.posterior.data_vars:
        np.testing.assert_array_equal(result.posterior[name].values, loaded.posterior[name].values)

    frame = _frame()
    by_both = poststratify(loaded, frame, weight="population", by=["region", "ethnicity"])
    np.testing.assert_allclose(by_both.draws.sum("category"), 1.0)
    table = by_both.summary(prob=0.9)
    assert set(table["region"]) == set(REGIONS)
    assert set(table["ethnicity"]) == set(ETHNICITIES)
    assert set(table["category"]) == set(CATEGORIES)
    # a region the survey never saw, whose name contains the interaction separator
    extra = frame[frame["region"] == "a:b"].assign(region="a:b:c")
    with pytest.raises(om.DesignError, match="'a:b:c'"):
        poststratify(loaded, pd.concat([frame, extra]), weight="population", by=["region"])
    new = poststratify(
        loaded, pd.concat([frame, extra]), weight="population", by=["region"], new_levels="sample"
    )
    assert "a:b:c" in set(new.summary(prob=0.9)["region"])

    shares = effects(loaded, "ethnicity")
    assert list(shares["ethnicity"].values) == sorted(ETHNICITIES)
    checked = ppc(loaded, prob=0.9)
    assert set(checked["level"]) >= set(REGIONS) | set(SEXES)

    fig = plot_choropleth(
        by_both.summary(prob=0.9).query("ethnicity == 'kazakh'"),
        _squares(),
        area="region",
        categories=["yes: sure"],
    )
    assert len(fig.axes) == 4
    report = build_report(
        [loaded],
        om.Frame.from_dataframe(frame),
        tmp_path / "report",
        survey=om.Survey.from_dataframe(
            _survey(),
            om.Codebook.from_roles(
                outcomes={"y": list(CATEGORIES)}, predictors=["sex", "ethnicity"], area="region"
            ),
        ),
        options=ReportOptions(area="region", boundaries=_squares(), prob=0.9),
    )
    html = report.read_text(encoding="utf-8")
    assert "Нур-Султан" in html and "x [y]" in html and "рус:ский" in html
    assert "Shares of everyone: every answer" in html
    assert html.count('alt="map of y by region"') == 1


@pytest.mark.slow
def test_a_saved_fit_is_used_without_importing_pymc(odd_labels: tuple[FitResult, Path]) -> None:
    """Loading a fit and everything after it: no PyMC, PyTensor or nutpie."""
    _, path = odd_labels
    frame = path.with_name("frame.csv")
    _frame().to_csv(frame, index=False)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from typer.testing import CliRunner
        import opinionmap as om
        from opinionmap.cli import app

        result = om.load({str(path)!r})
        frame = om.read_frame({str(frame)!r})
        est = om.poststratify(result, frame, by=["region"])
        est.summary(); est.overall_summary()
        om.effects(result, "sex")
        om.ppc(result)
        result.summary(); result.loo(); result.plan; result.sampling
        out = Path({str(path.parent)!r})
        om.build_report([result], frame, out / "r", options=om.ReportOptions(area="region"))
        runner = CliRunner()
        for args in (
            ["summary", {str(path)!r}],
            ["ppc", {str(path)!r}],
            ["poststratify", {str(path)!r}, "--frame", {str(frame)!r}, "--by", "region",
             "--out", str(out / "est.csv")],
        ):
            done = runner.invoke(app, args)
            assert done.exit_code == 0, done.output
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"
