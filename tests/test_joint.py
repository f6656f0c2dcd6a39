"""One model of several questions: spec, design, errors, and recovery of a known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from opinionmap.design import DesignError
from opinionmap.errors import OpinionmapError
from opinionmap.joint import (
    _start,
    anchor_order,
    build_joint_design,
    fit_joint,
    parse_pattern,
    poststratify_joint,
    quadrature,
    read_joint_spec,
)
from opinionmap.spec import Sampling, SpecError

QUESTIONS = ("q1", "q2", "q3")
LEVELS = ("less", "same", "more")
SPEC = """
outcomes = ["q1", "q2", "q3"]
formula = "~ 1 + sex + (1 | region)"
family = "ordinal"
[outcome]
levels = ["less", "same", "more"]
missing = ["dont_know"]
"""


def _spec(tmp_path: Path, text: str = SPEC, extra: str = "") -> Path:
    path = tmp_path / "joint.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


# the truth of the simulation: region effects correlated across the questions, a trait
CORRELATION = np.array([[1.0, -0.6, 0.3], [-0.6, 1.0, 0.0], [0.3, 0.0, 1.0]])
SIGMA = np.array([0.6, 0.5, 0.4])
LOADING = np.array([1.2, -0.9, 0.6])
SEX = np.array([0.4, -0.3, 0.0])  # female's shift on each question
CUTPOINTS = np.array([[-0.8, 0.7], [-0.5, 0.9], [-1.0, 0.4]])
REGIONS = [f"R{i:02d}" for i in range(14)]


def _region_effects(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cov = np.diag(SIGMA) @ CORRELATION @ np.diag(SIGMA)
    u = rng.multivariate_normal(np.zeros(3), cov, size=len(REGIONS))
    return u - u.mean(axis=0)


REGION_EFFECT = _region_effects()


def _simulate(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, len(REGIONS), n)
    female = rng.integers(0, 2, n)
    theta = rng.normal(size=n)
    out = {"region": np.array(REGIONS)[region], "sex": np.where(female, "female", "male")}
    for k, q in enumerate(QUESTIONS):
        eta = REGION_EFFECT[region, k] + SEX[k] * female + LOADING[k] * theta
        latent = eta + rng.logistic(size=n)
        answer = np.array(LEVELS)[(latent[:, None] > CUTPOINTS[k]).sum(axis=1)].astype(object)
        answer[rng.random(n) < 0.08] = "dont_know"  # item non-response, at random
        out[q] = answer
    return pd.DataFrame(out)


def _answer_probabilities(k: int, region: int, female: int, theta: np.ndarray) -> np.ndarray:
    """P(each answer to question k | region, sex, trait), (nodes, answers)."""
    eta = (
        CUTPOINTS[k][None, :]
        - (REGION_EFFECT[region, k] + SEX[k] * female + LOADING[k] * theta)[:, None]
    )
    cdf = np.column_stack([np.zeros(len(theta)), expit(eta), np.ones(len(theta))])
    return np.diff(cdf, axis=1)


def _true_shares() -> pd.DataFrame:
    """Each region's population share of every answer (equal numbers of men and women)."""
    points, logw = quadrature(1, 60)
    rows = []
    for r, region in enumerate(REGIONS):
        for k, q in enumerate(QUESTIONS):
            p = sum(
                0.5 * np.exp(logw) @ _answer_probabilities(k, r, female, points[:, 0])
                for female in (0, 1)
            )
            rows += [(q, region, a, p[j]) for j, a in enumerate(LEVELS)]
    return pd.DataFrame(rows, columns=["outcome", "region", "category", "truth"])


def _true_pattern(pattern: dict[str, str]) -> pd.Series:
    """Each region's population share giving every answer of ``pattern``."""
    points, logw = quadrature(1, 60)
    out = {}
    for r, region in enumerate(REGIONS):
        out[region] = 0.0
        for female in (0, 1):
            both = np.ones(len(logw))
            for q, a in pattern.items():
                k = QUESTIONS.index(q)
                both *= _answer_probabilities(k, r, female, points[:, 0])[:, LEVELS.index(a)]
            out[region] += 0.5 * np.exp(logw) @ both
    return pd.Series(out)


def _frame() -> pd.DataFrame:
    index = pd.MultiIndex.from_product([REGIONS, ["male", "female"]], names=["region", "sex"])
    return index.to_frame(index=False).assign(population=1000.0)


def test_a_joint_spec_reads_the_shared_model(tmp_path: Path) -> None:
    spec = read_joint_spec(_spec(tmp_path, extra="[joint]\ntrait = 2\n"))
    assert spec.outcomes == QUESTIONS and spec.trait == 2 and spec.nodes == 12
    assert spec.rhs == "1 + sex + (1 | region)"
    assert spec.base.family == "ordinal" and spec.base.levels == LEVELS
    assert spec.base.missing == ("dont_know",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SPEC.replace('"q3"]', '"q1"]'), r"two or more different questions"),
        (SPEC.replace('"~ 1', '"q1 ~ 1'), r"formula is the right-hand side its questions share"),
        (SPEC.replace('"ordinal"', '"categorical"'), r"joins ordinal or bernoulli questions"),
        (SPEC.replace("(1 | region)", "(1 + sex | region)"), r"takes varying intercepts"),
        (SPEC + "[joint]\ntrait = 3\n", r"trait = 3: give 0 \(none\), 1 or 2"),
        (SPEC + "[joint]\ntraits = 1\n", r"unknown key\(s\) 'traits' in \[joint\]"),
        (SPEC.replace('formula = "~ 1 + sex', 'formula = "~ 1 + q2 + sex'), r"both a question"),
    ],
)
def test_bad_joint_specs_say_what_and_how_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        read_joint_spec(_spec(tmp_path, text))


def test_the_design_keeps_each_cell_and_pattern_once_with_its_respondents(
    tmp_path: Path,
) -> None:
    spec = read_joint_spec(_spec(tmp_path))
    data = _simulate(600)
    data.loc[:4, list(QUESTIONS)] = "dont_know"  # five answered nothing
    jd = build_joint_design(spec, data)
    none = int((data[list(QUESTIONS)] == "dont_know").all(axis=1).sum())
    assert none >= 5 and jd.dropped == none and jd.n_respondents == 600 - none
    answered = jd.answered()
    for q in QUESTIONS:
        assert answered[q] == int((data[q] != "dont_know").sum())
    # every row is a distinct (cell, pattern); the answers decode the pattern
    keys = {(c, tuple(a)) for c, a in zip(jd.row_cell, jd.answers, strict=True)}
    assert len(keys) == len(jd.row_cell) and (jd.answers >= -1).all()
    first = data.iloc[5]
    cell = jd.design.cells.index[
        (jd.design.cells["region"] == first["region"]) & (jd.design.cells["sex"] == first["sex"])
    ][0]
    code = [LEVELS.index(first[q]) if first[q] in LEVELS else -1 for q in QUESTIONS]
    assert any(c == cell and list(a) == code for c, a in zip(jd.row_cell, jd.answers, strict=True))


def test_joint_data_errors_name_the_question_and_the_fix(tmp_path: Path) -> None:
    spec = read_joint_spec(_spec(tmp_path))
    data = _simulate(200)
    with pytest.raises(DesignError, match=r"question\(s\) 'q3' are not columns of the survey"):
        build_joint_design(spec, data.drop(columns="q3"))
    odd = data.assign(q2=data["q2"].replace({"same": "neither"}))
    with pytest.raises(DesignError, match=r"'q2' has answers 'neither' that are neither levels"):
        build_joint_design(spec, odd)
    alone = data.copy()
    alone.loc[:, ["q2", "q3"]] = "dont_know"
    alone.loc[::2, "q1"], alone.loc[1::2, "q1"] = "dont_know", "more"
    alone.loc[1::2, "q2"] = "dont_know"
    alone.loc[::2, "q2"] = "less"
    with pytest.raises(DesignError, match=r"no respondent answered more than one"):
        build_joint_design(spec, alone)
    never = data.assign(q3=data["q3"].replace({"more": "same"}))
    with pytest.raises(DesignError, match=r"nobody answered 'q3' with 'more'"):
        build_joint_design(spec, never)


def test_a_joint_pattern_is_checked(tmp_path: Path) -> None:
    spec = read_joint_spec(_spec(tmp_path))
    assert parse_pattern("q2=less, q1=more", spec) == {"q2": "less", "q1": "more"}
    cases = {
        "q4=less": r"unknown question 'q4'; the model's questions: 'q1', 'q2', 'q3'",
        "q1=maybe": r"'maybe' is not an answer to 'q1'; its answers: 'less', 'same', 'more'",
        "q1=less,q1=more": r"question 'q1' is named twice",
        "q1": r"'q1' is not question=answer",
        "": r"empty joint pattern",
    }
    for text, message in cases.items():
        with pytest.raises(OpinionmapError, match=message):
            parse_pattern(text, spec)


def _answer_log_probabilities(draws, spec, eta: np.ndarray, points: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Reference: each answer's log-probability by cell and trait node, (S, n, K, C, Q),
    from eta (S, n, K), in NumPy and SciPy's log F (the middle answers as
    log F(a) + log(1 - F(b) / F(a)), the last as log F(-x))."""
    from scipy.special import log_expit, log_ndtr

    shift = np.einsum("skd,qd->skq", draws.loading, points)
    s = eta[..., None] + shift[:, None, :, :]  # (S, n, K, Q)
    log_f = log_ndtr if spec.base.link == "probit" else log_expit
    if spec.base.family == "bernoulli":
        return np.stack([log_f(-s), log_f(s)], axis=3)
    upper = draws.cutpoints[:, None, :, :, None] - s[:, :, :, None, :]  # (S, n, K, C-1, Q)
    log_cdf = log_f(upper)
    gap = log_cdf[:, :, :, :-1] - log_cdf[:, :, :, 1:]  # <= 0: log(F(b) / F(a)) for b < a
    with np.errstate(divide="ignore", invalid="ignore"):
        middle = log_cdf[:, :, :, 1:] + np.where(
            gap > -0.693, np.log(-np.expm1(gap)), np.log1p(-np.exp(gap))
        )
    return np.concatenate([log_cdf[:, :, :, :1], middle, log_f(-upper[:, :, :, -1:])], axis=3)


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
@pytest.mark.parametrize(
    ("family", "link"), [("ordinal", "logit"), ("ordinal", "probit"), ("bernoulli", "logit")]
)
def test_the_models_likelihood_is_the_stored_pointwise_one(
    tmp_path: Path, family: str, link: str
) -> None:
    """At a random point the sampled likelihood equals the stored per-row log-likelihood
    (the trait integrated out with the same 8 nodes) summed over respondents, and both
    equal a NumPy form of it (each answer's log-probability per cell and node, gathered
    into the rows, log-sum-exp over the nodes)."""
    import xarray as xr
    from scipy.special import logsumexp

    from opinionmap.joint import (
        JointResult,
        _Draws,
        _linear_predictor,
        build_joint_model,
        joint_log_likelihood,
    )

    text = SPEC.replace('family = "ordinal"\n', f'family = "ordinal"\nlink = "{link}"\n')
    data, text = _simulate(400, seed=5), text + "[joint]\nquadrature = 8\n"
    if family == "bernoulli":
        for q in QUESTIONS:
            data[q] = data[q].replace({"less": "no", "same": "no", "more": "yes"})
        text = text.replace('"ordinal"', '"bernoulli"').replace(
            '["less", "same", "more"]', '["no", "yes"]'
        )
    spec = read_joint_spec(_spec(tmp_path, text))
    assert spec.base.link == link
    jd = build_joint_design(spec, data)
    model = build_joint_model(jd)
    names = ["beta", "cutpoints" if family == "ordinal" else "Intercept", "u_region", "loading"]
    outs = model.replace_rvs_by_values([model["loglik"], *(model[n] for n in names)])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode="NUMBA")
    rng = np.random.default_rng(0)
    point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    total, *values = fn(point)
    posterior = xr.Dataset(
        {
            n: (("chain", "draw", *model.named_vars_to_dims[n]), np.asarray(v)[None, None])
            for n, v in zip(names, values, strict=True)
        }
    )
    stored = joint_log_likelihood(spec, jd, posterior)
    assert stored.shape == (1, len(jd.row_cell)) and (stored < 0).all()
    assert float(total) == pytest.approx(float(jd.row_count @ stored[0]), rel=1e-10)
    draws = _Draws.of(posterior, jd)
    points, logw = quadrature(1, spec.nodes)
    logp = _answer_log_probabilities(
        draws, spec, _linear_predictor(draws, jd.design, jd.design.cells), points
    )
    k = len(spec.outcomes)
    chosen = logp[0][jd.row_cell[:, None], np.arange(k)[None, :], np.maximum(jd.answers, 0)]
    by_node = np.where((jd.answers >= 0)[:, :, None], chosen, 0.0).sum(axis=1)  # (R, Q)
    np.testing.assert_allclose(stored[0], logsumexp(by_node + logw, axis=1), rtol=1e-10)
    # the compiled poststratification kernel against the log-probabilities' NumPy form
    result = JointResult(spec, jd, xr.DataTree.from_dict({"posterior": posterior}), None)  # type: ignore[arg-type]
    frame = _frame()
    shares = poststratify_joint(result, frame, by="region").shares.values[0]  # (G, K, C)
    eta = _linear_predictor(draws, jd.design, frame)
    p = np.exp(_answer_log_probabilities(draws, spec, eta, points))[0] @ np.exp(logw)
    expected = p.reshape(len(REGIONS), 2, *p.shape[1:]).mean(axis=1)  # men and women alike
    order = np.argsort(frame["region"].drop_duplicates().to_numpy())
    np.testing.assert_allclose(shares, expected[order], atol=1e-12)


def test_population_shares_at_the_true_parameters_are_the_true_shares(tmp_path: Path) -> None:
    """poststratify_joint on a one-draw posterior at the truth: each question's shares and
    a pattern's, by region, equal the truth integrated with 60 nodes (the trait out)."""
    import xarray as xr

    from opinionmap.joint import JointResult

    spec = read_joint_spec(_spec(tmp_path))
    jd = build_joint_design(spec, _simulate(500))
    assert jd.design.coef_names == ("sex[male]",) and jd.design.groups[0].levels == tuple(REGIONS)
    # the truth with men as the coded level: beta = -SEX, cutpoints CUTPOINTS - SEX
    one = {"chain": [0], "draw": [0]}
    posterior = xr.Dataset(
        {
            "beta": (("chain", "draw", "outcome", "coef"), -SEX[None, None, :, None]),
            "cutpoints": (
                ("chain", "draw", "outcome", "cutpoint"),
                (CUTPOINTS - SEX[:, None])[None, None],
            ),
            "u_region": (("chain", "draw", "region", "outcome"), REGION_EFFECT[None, None]),
            "loading": (("chain", "draw", "outcome", "trait"), LOADING[None, None, :, None]),
        },
        coords=one,
    )
    truth = JointResult(spec, jd, xr.DataTree.from_dict({"posterior": posterior}), None)  # type: ignore[arg-type]
    pattern = {"q1": "more", "q2": "less", "q3": "same"}
    est = poststratify_joint(truth, _frame(), by="region", joint=[pattern, "q2=same"])
    table = est.summary().merge(_true_shares())
    np.testing.assert_allclose(table["mean"], table["truth"], atol=1e-6)
    patterns = est.pattern_summary().set_index(["region", "category"])["mean"]
    first = patterns.xs("q1=more,q2=less,q3=same", level="category")
    np.testing.assert_allclose(first, _true_pattern(pattern).loc[first.index], atol=1e-6)
    # a one-question pattern is that question's share
    second = patterns.xs("q2=same", level="category")
    same = table.query("outcome == 'q2' and category == 'same'").set_index("region")["truth"]
    np.testing.assert_allclose(second, same.loc[second.index], atol=1e-6)
    # the trait ties the answers: more likely than the product of the three shares
    shares = table.set_index(["outcome", "category", "region"])["truth"].sort_index()
    product = np.prod([shares.loc[(q, a)].loc[first.index] for q, a in pattern.items()], axis=0)
    assert (first.to_numpy() > product).all()


@pytest.mark.slow
def test_a_joint_fit_recovers_correlations_loadings_and_population_shares(
    tmp_path: Path,
) -> None:
    spec = read_joint_spec(_spec(tmp_path))
    result = fit_joint(
        spec,
        _simulate(3000),
        sampling=Sampling(draws=400, tune=400, chains=2),
        random_seed=3,
        warn=False,
    )
    # 2 x 400 draws (a smoke-sized fit): the loadings' signs and rough size are asserted
    loadings = result.loadings(prob=0.95).set_index("question")["mean"]
    assert result.tree.attrs["opinionmap_joint_anchors"] == '["q1"]'
    assert loadings["q1"] > 0.5 and loadings["q2"] < -0.4 and loadings["q3"] > 0.2, loadings
    correlations = result.correlations("region", prob=0.95)
    # 14 regions say little about a correlation: the strongest one's sign at least
    strongest = correlations.set_index(["question_a", "question_b"]).loc[("q1", "q2")]
    assert strongest["mean"] < 0 and strongest["lower"] < -0.6 < strongest["upper"]
    estimates = poststratify_joint(result, _frame(), by="region", joint="q1=more,q2=less")
    table = estimates.summary(prob=0.95).merge(_true_shares())
    covered = ((table["lower"] <= table["truth"]) & (table["truth"] <= table["upper"])).mean()
    assert covered >= 0.85, table
    assert (table["mean"] - table["truth"]).abs().mean() < 0.03
    # each question's shares sum to one in every region
    sums = table.groupby(["outcome", "region"])["mean"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    pattern = estimates.pattern_summary(prob=0.95).set_index("region")
    assert (pattern["category"] == "q1=more,q2=less").all()
    truth = _true_pattern({"q1": "more", "q2": "less"})
    inside = (pattern["lower"] <= truth) & (truth <= pattern["upper"])
    assert inside.mean() >= 0.85, pattern.assign(truth=truth)
    # the trait makes the pattern likelier than the product of its shares
    q1_more = table.query("outcome == 'q1' and category == 'more'").set_index("region")["mean"]
    q2_less = table.query("outcome == 'q2' and category == 'less'").set_index("region")["mean"]
    assert (pattern["mean"] > q1_more * q2_less).all()


def test_the_trait_is_anchored_on_the_question_that_loads_most(tmp_path: Path) -> None:
    """q1 (true loading 1.2) anchors the sign wherever it stands; chains start on its side."""
    text = SPEC.replace('["q1", "q2", "q3"]', '["q2", "q3", "q1"]')
    spec = read_joint_spec(_spec(tmp_path, text))
    jd = build_joint_design(spec, _simulate(3000))
    assert anchor_order(jd) == (2,)
    first, second = anchor_order(jd, dims=2)
    assert first == 2 and second in (0, 1)
    start = _start(jd, (2,))
    # q1 starts at +1.5; q2 (true loading -0.9) on the other side, q3 (0.6) on q1's
    assert start[2] == 1.5 and start[0] < 0 < start[1]


@pytest.mark.slow
def test_the_command_line_fits_saves_and_poststratifies_a_joint_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import opinionmap as om
    from opinionmap.cli import app
    from opinionmap.joint import load_joint
    from opinionmap.results import ProvenanceError

    _simulate(800).to_csv(tmp_path / "survey.csv", index=False)
    om.Codebook.from_roles(
        outcomes={q: list(LEVELS) for q in QUESTIONS},
        predictors=["sex"],
        area="region",
        missing=["dont_know"],
    ).to_toml(tmp_path / "survey.codebook.toml")
    spec = _spec(tmp_path, SPEC.replace('"ordinal"', '"ordinal"\ndata = "survey.csv"'))
    _frame().to_csv(tmp_path / "frame.csv", index=False)
    runner = CliRunner()
    fitted = runner.invoke(app, ["fit", str(spec), "--out", str(tmp_path / "joint.nc"),
                                 "--draws", "100", "--tune", "150", "--chains", "2",
                                 "--seed", "5", "--no-progress"])  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    assert "fitting q1, q2, q3 jointly (ordinal, trait of 1 dimension(s))" in fitted.output
    result = load_joint(tmp_path / "joint.nc")
    assert result.spec.outcomes == QUESTIONS and result.design.area == "region"
    loglik = result.tree["log_likelihood"]["patterns"].values
    assert loglik.shape[-1] == len(result.design.row_cell)
    assert np.isfinite(loglik).all() and (loglik < 0).all()
    with pytest.raises(ProvenanceError, match=r"holds a joint model of several questions"):
        om.load(tmp_path / "joint.nc")
    base = ["poststratify", str(tmp_path / "joint.nc"), "--frame", str(tmp_path / "frame.csv")]
    shares = runner.invoke(app, [*base, "--out", str(tmp_path / "shares.csv")])
    assert shares.exit_code == 0, shares.output
    table = pd.read_csv(tmp_path / "shares.csv")
    assert list(table.columns[:3]) == ["outcome", "region", "category"]
    assert len(table) == 3 * len(REGIONS) * 3
    np.testing.assert_allclose(table.groupby(["outcome", "region"])["mean"].sum(), 1.0)
    pattern = "q2=less,q1=more"
    both = runner.invoke(app, [*base, "--joint", pattern, "--out", str(tmp_path / "both.csv")])
    assert both.exit_code == 0, both.output
    rows = pd.read_csv(tmp_path / "both.csv")
    assert len(rows) == len(REGIONS) and (rows["category"] == pattern).all()
    assert ((rows["lower"] <= rows["mean"]) & (rows["mean"] <= rows["upper"])).all()
    bad = runner.invoke(app, [*base, "--joint", "q9=less", "--out", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2 and "unknown question 'q9'" in bad.output
    # the report: its own section, the pattern's table the same draws as poststratify's
    folder = tmp_path / "report"
    report = runner.invoke(
        app,
        ["report", str(tmp_path / "joint.nc"), "--frame", str(tmp_path / "frame.csv"),
         "--out", str(folder), "--joint", pattern],
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert 'id="joint"' in html and "3 questions in one model" in html
    assert "NOT CONVERGED: joint (1 of 1 models)" in html
    assert 'alt="correlations of joint' in html and 'alt="map of the pattern' not in html
    by_region = pd.read_csv(folder / "joint_pattern_by_region.csv").set_index("region")
    pd.testing.assert_series_equal(
        by_region["mean"], rows.set_index("region")["mean"], check_exact=False, rtol=1e-9
    )
    assert (by_region["category"] == pattern).all()
    correlations = pd.read_csv(folder / "joint_correlations.csv")
    assert len(correlations) == 3 and set(correlations["term"]) == {"region"}
    loadings = pd.read_csv(folder / "joint_loadings.csv")
    assert loadings["question"].tolist() == list(QUESTIONS)


@pytest.mark.slow
def test_loo_prefers_the_trait_that_ties_a_respondents_answers(tmp_path: Path) -> None:
    """PSIS-LOO over respondents: the model with the trait beats the one without it."""
    data = _simulate(1500, seed=4)
    fits = {
        trait: fit_joint(
            read_joint_spec(_spec(tmp_path, extra=f"[joint]\ntrait = {trait}\n")),
            data,
            sampling=Sampling(draws=200, tune=300, chains=2),
            random_seed=2,
            warn=False,
        )
        for trait in (0, 1)
    }
    loos = {trait: fit.loo() for trait, fit in fits.items()}
    answered = int((data[list(QUESTIONS)] != "dont_know").any(axis=1).sum())
    assert loos[1].n_data_points == answered == fits[1].design.n_respondents
    assert loos[1].elpd_i.sizes["respondent"] == answered
    diff = loos[1].elpd_i.values - loos[0].elpd_i.values
    se = np.sqrt(len(diff) * np.var(diff, ddof=1))
    # true loadings 1.2, -0.9, 0.6: the answers depend on each other well beyond noise
    assert diff.sum() > 4 * se > 0, (diff.sum(), se)
    assert loos[1].elpd == pytest.approx(loos[1].elpd_i.values.sum())
