"""One model of several questions: correlated area effects and a respondent trait.

A battery of questions that share their answers' scale (the presence of Russia, the
USA, China, the EU and Muslim countries wanted: less, the same, more) is fitted as one
model instead of one model per question. For respondent ``i`` and question ``k``

    eta_ik = x_i' beta_k + sum_g u_g[g(i), k] + lambda_k' theta_i,

answered through the question's own cumulative link (ordinal: its own cutpoints) or
logit (bernoulli: its own intercept), where

- ``u_g[l, :] ~ N(0, diag(sigma_g) R_g diag(sigma_g))``, ``R_g ~ LKJ(2)``: a grouping
  term's effects (a region's, say) are correlated across the questions; ``R_g`` is
  reported as ``cor_<term>`` labelled by question;
- ``theta_i ~ N(0, I_D)`` is a respondent's trait (``D`` = 1 by default, 2 optional),
  ``lambda_k`` the question's loadings (the anchor question's first loading positive,
  and with two dimensions the anchor loading on the first only and a second anchor's
  second loading positive, so the trait's sign and rotation are fixed:
  :func:`anchor_order`), which makes answers dependent within a respondent.

Respondents are grouped by covariate cell and answers (one "pattern", a question they
did not answer written ``.``), each (cell, pattern) one row weighted by its
respondents. The trait is integrated out by Gauss-Hermite quadrature: in the model's
likelihood with 8 nodes for one dimension and 6 x 6 for two; in the pointwise
log-likelihood per (cell, pattern), stored for LOO, and in every estimand with 20 and
12 x 12. A
question left unanswered (its missing codes, a blank) contributes nothing for that
respondent; a respondent who answered none is dropped and counted.

Estimands are the population's: a question's share of each answer (the trait
integrated out, not set to 0) and the share giving a pattern of answers to several
questions, by area and group, draw by draw, weighted by the frame's counts
(:func:`poststratify_joint`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from opinionmap.design import Design, DesignError, SurveyData, as_frame, build_design
from opinionmap.diagnostics import ConvergenceWarning, Diagnostics, diagnose
from opinionmap.errors import OpinionmapError, check_keys, format_values
from opinionmap.progress import FitProgress
from opinionmap.results import SavedTree, checksum
from opinionmap.spec import ModelSpec, Priors, Sampling, SpecError, read_spec_file
from opinionmap.summaries import interval_prob, summarise_draws

if TYPE_CHECKING:
    import pymc as pm
    from arviz_stats.utils import ELPDDataLOO

    from opinionmap.frame import Frame

__all__ = [
    "JointDesign",
    "JointEstimates",
    "JointResult",
    "JointSpec",
    "anchor_order",
    "build_joint_design",
    "fit_joint",
    "is_joint_fit",
    "is_joint_spec",
    "load_joint",
    "parse_pattern",
    "poststratify_joint",
    "read_joint_spec",
]

# the design's outcome column: each respondent's answers to every question, as one label
PATTERN = "opinionmap_pattern"
# how a pattern label writes a question left unanswered, and separates the questions
UNANSWERED = "."
SEPARATOR = "|"
# keys a joint spec has besides a spec's
_JOINT_TOP = ("outcomes", "joint")
_JOINT_KEYS = ("trait", "quadrature")
# the attribute that marks a saved fit as a joint model's (its spec, as JSON)
JOINT_ATTR = "opinionmap_joint"
# c in sqrt(1 + c lambda^2): a N(0, lambda^2) shift inside the link is close to dividing
# the linear predictor by it (exact for probit; logit: (16 sqrt(3) / (15 pi))^2)
ATTENUATION = {"probit": 1.0, "logit": (16.0 * np.sqrt(3.0) / (15.0 * np.pi)) ** 2}
# Gauss-Hermite nodes per trait dimension: for estimands and the stored log-likelihood,
# and (fewer) inside the model's likelihood, evaluated at every step
QUADRATURE = {0: 1, 1: 20, 2: 12}
LIKELIHOOD_NODES = {0: 1, 1: 8, 2: 6}
# values held at once when poststratifying: draws x cells x questions x answers x nodes
_CHUNK_VALUES = 4_000_000


@dataclass(frozen=True)
class JointSpec:
    """Several questions sharing one right-hand side, family and answers.

    ``base`` is the shared model as a one-question spec (the first question on the
    left of the formula), which carries the family, link, answers, missing codes,
    priors, area covariates, sampling settings and the survey file.
    """

    outcomes: tuple[str, ...]
    base: ModelSpec
    trait: int = 1
    quadrature: int | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = str(self.source or "<joint spec>")
        if len(self.outcomes) < 2 or len(set(self.outcomes)) != len(self.outcomes):
            raise SpecError(
                f"{where}: outcomes must list two or more different questions, got "
                f"{format_values(self.outcomes)}."
            )
        if self.base.family not in ("ordinal", "bernoulli"):
            raise SpecError(
                f"{where}: a joint model joins ordinal or bernoulli questions (one linear "
                f"predictor each); {format_values(self.outcomes)} are {self.base.family}: fit "
                "them one by one."
            )
        if self.base.hurdle is not None or self.base.merge_below is not None:
            raise SpecError(
                f"{where}: [outcome] hurdle and merge_below apply to one-question models; "
                "a joint model drops each question's missing codes instead."
            )
        if isinstance(self.trait, bool) or self.trait not in QUADRATURE:
            raise SpecError(
                f"{where}: [joint] trait = {self.trait!r}: give 0 (none), 1 or 2 dimensions."
            )
        if self.trait == 2 and len(self.outcomes) < 3:
            raise SpecError(f"{where}: a two-dimensional trait needs three or more questions.")
        if self.quadrature is not None and (
            isinstance(self.quadrature, bool)
            or not isinstance(self.quadrature, int)
            or self.quadrature < 3
        ):
            raise SpecError(
                f"{where}: [joint] quadrature = {self.quadrature!r}: give the nodes per trait "
                "dimension, a whole number of 3 or more."
            )
        for term in self.base.group_terms:
            if term.slopes or term.correlated is not None or not term.intercept:
                raise SpecError(
                    f"{where}: term {term.written!r}: a joint model takes varying intercepts "
                    "(1 | g), correlated across the questions; drop the slopes or the ID."
                )
        if self.base.priors.structure:
            raise SpecError(
                f"{where}: [priors.structure] is not available in a joint model; its area "
                "effects are correlated across the questions instead."
            )
        clash = [q for q in self.outcomes if q in self.base.variables]
        if clash:
            raise SpecError(
                f"{where}: {format_values(clash)} is both a question and a predictor; a model "
                "cannot explain a column by itself."
            )

    @property
    def rhs(self) -> str:
        """The shared right-hand side of the formula."""
        return self.base.formula.split("~", 1)[1].strip()

    @property
    def nodes(self) -> int:
        """Gauss-Hermite nodes per trait dimension."""
        return self.quadrature or QUADRATURE[self.trait]

    def to_json(self) -> str:
        """The spec as JSON (stored in a saved fit)."""
        return json.dumps(
            {
                "outcomes": list(self.outcomes),
                "trait": self.trait,
                "quadrature": self.quadrature,
                "base": self.base.to_json(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> JointSpec:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        base = ModelSpec.from_json(raw["base"])
        return cls(tuple(raw["outcomes"]), base, raw["trait"], raw["quadrature"])

    def pattern_spec(self, patterns: Sequence[str]) -> ModelSpec:
        """The spec whose design aggregates respondents to (cell, pattern of answers)."""
        return replace(
            self.base,
            formula=f"{PATTERN} ~ {self.rhs}",
            family="categorical",
            link="logit",
            levels=tuple(patterns),
            missing=(),
        )


def is_joint_spec(path: str | os.PathLike[str]) -> bool:
    """Whether a spec file is a joint spec (it lists ``outcomes``)."""
    try:
        return "outcomes" in read_spec_file(path)[1]
    except SpecError:
        return False


def is_joint_fit(path: str | os.PathLike[str]) -> bool:
    """Whether a saved fit is a joint model's (read from the file's attributes only)."""
    import h5py

    try:
        with h5py.File(Path(path), "r") as fh:
            return JOINT_ATTR in fh.attrs
    except OSError:
        return False


def read_joint_spec(path: str | os.PathLike[str]) -> JointSpec:
    """Read a joint spec: a spec file with ``outcomes = [...]`` and ``formula = "~ ..."``.

    Besides a spec's keys, ``outcomes`` (the questions, two or more) and an optional
    ``[joint]`` table: ``trait`` (dimensions of the respondent trait: 0, 1 (default)
    or 2) and ``quadrature`` (Gauss-Hermite nodes per dimension). ``[outcome]``
    gives the answers every question shares and their missing codes.

    Raises
    ------
    SpecError
        Naming the file, the key and the fix.
    """
    source, raw = read_spec_file(path)
    outcomes = raw.get("outcomes")
    if not (isinstance(outcomes, list) and all(isinstance(q, str) and q for q in outcomes)):
        raise SpecError(
            f'{source}: outcomes must list the questions, e.g. outcomes = ["q1", "q2"]; '
            f"got {outcomes!r}."
        )
    formula = raw.get("formula")
    if not (isinstance(formula, str) and formula.strip().startswith("~")):
        raise SpecError(
            f"{source}: a joint spec's formula is the right-hand side its questions share, "
            f'e.g. formula = "~ 1 + sex + (1 | region)"; got {formula!r}.'
        )
    joint = raw.get("joint", {})
    if not isinstance(joint, Mapping):
        raise SpecError(f"{source}: [joint] must be a table (trait, quadrature).")
    check_keys(joint, _JOINT_KEYS, where=str(source), context="in [joint]", error=SpecError)
    rest = {k: v for k, v in raw.items() if k not in _JOINT_TOP}
    rest["formula"] = f"{outcomes[0] if outcomes else 'q'} ~ {formula.strip()[1:].strip()}"
    base = ModelSpec.from_dict(rest, source=source, base=source.parent)
    return JointSpec(
        tuple(outcomes),
        base,
        trait=joint.get("trait", 1),
        quadrature=joint.get("quadrature"),
        source=source,
    )


@dataclass(frozen=True)
class JointDesign:
    """A joint model's data: covariate cells, and each (cell, pattern) with its respondents.

    ``design`` is the covariate design (cells' fixed-effect matrix and group indices,
    built for the pattern of answers as its outcome); ``row_cell``, ``answers`` and
    ``row_count`` give each distinct (cell, pattern): its cell, the answer to each
    question by position in the levels (``-1`` not answered) and its respondents.
    """

    spec: JointSpec
    design: Design
    row_cell: np.ndarray = field(repr=False)
    answers: np.ndarray = field(repr=False)
    row_count: np.ndarray = field(repr=False)
    dropped: int = 0
    area: str | None = None

    @property
    def n_respondents(self) -> int:
        """Respondents who answered at least one question."""
        return int(self.row_count.sum())

    def answered(self) -> pd.Series:
        """Respondents who answered each question."""
        counts = ((self.answers >= 0) * self.row_count[:, None]).sum(axis=0)
        return pd.Series(counts, index=list(self.spec.outcomes), name="respondents")


def build_joint_design(spec: JointSpec, survey: SurveyData) -> JointDesign:
    """Aggregate a survey to (covariate cell, pattern of answers) for a joint spec.

    Raises
    ------
    DesignError
        A question the survey lacks; an answer that is neither a level nor a missing
        code (naming the question, the answers and the fix); an answer nobody gave to
        a question; no respondent answering more than one question.
    """
    df, source = as_frame(survey)
    where = source or "<data>"
    absent = [q for q in spec.outcomes if q not in df.columns]
    if absent:
        raise DesignError(
            f"{where}: the joint spec's question(s) {format_values(absent)} are not columns of "
            f"the survey; columns: {format_values(list(df.columns), limit=40)}."
        )
    levels, missing = spec.base.levels, set(spec.base.missing)
    codes = np.column_stack(
        [_answer_codes(df[q], q, levels, missing, where) for q in spec.outcomes]
    )
    answered = (codes >= 0).sum(axis=1)
    if not (answered > 1).any():
        raise DesignError(
            f"{where}: no respondent answered more than one of {format_values(spec.outcomes)}; "
            "a joint model learns from answers given together. Fit them one by one."
        )
    keep = answered > 0
    for k, q in enumerate(spec.outcomes):
        given = np.bincount(codes[keep, k][codes[keep, k] >= 0], minlength=len(levels))
        if (given == 0).any():
            unused = [lv for lv, n in zip(levels, given, strict=True) if n == 0]
            raise DesignError(
                f"{where}: nobody answered {q!r} with {format_values(unused)}; a joint model "
                "needs every answer given to every question (drop the level from [outcome] "
                "levels, or fit the question apart)."
            )
    labels = np.array([_pattern_label(row) for row in codes[keep]], dtype=object)
    patterns = tuple(sorted(set(labels)))
    data = df.loc[keep].assign(**{PATTERN: labels})
    design = build_design(spec.pattern_spec(patterns), data)
    area = getattr(survey, "area", None)
    return _joint_design(
        spec, design, dropped=int((~keep).sum()), area=area if isinstance(area, str) else None
    )


def _joint_design(spec: JointSpec, design: Design, dropped: int, area: str | None) -> JointDesign:
    """The (cell, pattern) rows of a pattern design."""
    cell, pattern = np.nonzero(design.counts)
    decoded = np.array([_decode(p) for p in design.categories], dtype=np.int64)
    return JointDesign(
        spec,
        design,
        row_cell=cell.astype(np.int64),
        answers=decoded.reshape(len(design.categories), -1)[pattern],
        row_count=design.counts[cell, pattern].astype(np.int64),
        dropped=dropped,
        area=area,
    )


def _answer_codes(
    column: pd.Series, question: str, levels: tuple[str, ...], missing: set[str], where: str
) -> np.ndarray:
    """Each respondent's answer by position in ``levels``; -1 for a missing code or a blank."""
    text = column.astype(object).where(column.notna(), None)
    values = [None if v is None else str(v) for v in text]
    known = {lv: i for i, lv in enumerate(levels)}
    odd = sorted({v for v in values if v is not None and v not in known and v not in missing})
    if odd:
        raise DesignError(
            f"{where}: question {question!r} has answers {format_values(odd)} that are neither "
            f"levels {format_values(levels)} nor missing codes "
            f"{format_values(sorted(missing)) or 'none'}; add them to [outcome] missing, or "
            "recode them."
        )
    return np.array([known.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)


def _pattern_label(codes: np.ndarray) -> str:
    return SEPARATOR.join(str(int(c)) if c >= 0 else UNANSWERED for c in codes)


def _decode(label: str) -> list[int]:
    return [-1 if part == UNANSWERED else int(part) for part in label.split(SEPARATOR)]


def quadrature(dims: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes (Q, dims) and log-weights (Q,) for an integral over N(0, I).

    Examples
    --------
    >>> x, logw = quadrature(1, 20)
    >>> round(float(np.exp(logw) @ x[:, 0] ** 2), 10)  # E[theta^2] = 1
    1.0
    """
    if dims == 0:
        return np.zeros((1, 0)), np.zeros(1)
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * dims), indexing="ij")
    weights = np.meshgrid(*([w] * dims), indexing="ij")
    points = np.column_stack([g.ravel() for g in grids])
    return points, np.log(np.prod([g.ravel() for g in weights], axis=0))


def build_joint_model(jd: JointDesign) -> pm.Model:
    """The PyMC model of a joint design (see the module docstring).

    Sampled on the marginal scale: ``beta_marginal``, ``cutpoints_marginal_at_means``
    (or ``Intercept_marginal_at_means``) and the area effects' SDs are each question's
    effects averaged over the trait, which the question's scale ``sqrt(1 + c |lambda_k|^2)``
    turns into the conditional ones the likelihood uses (stored as ``beta``, ``cutpoints``
    or ``Intercept``, ``sigma_<term>`` and ``u_<term>``); numeric columns enter centred at
    their respondent means; a main term's and its interaction's SDs are paired as in
    single-question models (docs/model.md section 13).
    """
    import pymc as pm
    import pytensor.tensor as pt

    from opinionmap._likelihood import joint_loglik_op
    from opinionmap.plan import numeric_means

    spec, design = jd.spec, jd.design
    base = spec.base
    k = len(spec.outcomes)
    coords: dict[str, Any] = {
        "outcome": list(spec.outcomes),
        "outcome_": list(spec.outcomes),
        "coef": list(design.coef_names),
        **{g.dim: list(g.levels) for g in design.groups},
    }
    if base.family == "ordinal":
        coords["cutpoint"] = list(range(len(base.levels) - 1))
    if spec.trait:
        coords["trait"] = list(range(spec.trait))
    centre = numeric_means(design)
    with pm.Model(coords=coords) as model:
        if spec.trait:
            anchors = anchor_order(jd, spec.trait)
            loading = _loadings(spec.trait, anchors, _start(jd, anchors))
            # a N(0, |lambda_k|^2) shift attenuates a question's effects by this factor
            scale = pt.sqrt(1.0 + ATTENUATION[base.link] * pt.sum(loading**2, axis=1))
        else:
            scale = pt.ones(k)
        x = design.X if centre is None else design.X - centre[None, :]
        eta = pt.zeros((design.n_cells, k))
        shift = pt.zeros(k)
        if x.shape[1]:
            sd = np.full(x.shape[1], base.priors.fixed)
            if base.priors.fixed_autoscale:
                sd = sd / np.where(design.x_sd > 0, design.x_sd, 1.0)
            beta_m = pm.Normal("beta_marginal", 0.0, sd[None, :], dims=("outcome", "coef"))
            beta = pm.Deterministic("beta", beta_m * scale[:, None], dims=("outcome", "coef"))
            eta = eta + pt.as_tensor_variable(x) @ beta.T
            if centre is not None:
                shift = beta @ centre
        if base.family == "bernoulli":
            at_means = pm.Normal(
                "Intercept_marginal_at_means", 0.0, base.priors.intercept, dims="outcome"
            )
            pm.Deterministic("Intercept", at_means * scale - shift, dims="outcome")
            eta = eta + (at_means * scale)[None, :]
        else:
            cut_m = pm.Normal(
                "cutpoints_marginal_at_means",
                0.0,
                base.priors.cutpoints,
                dims=("outcome", "cutpoint"),
                transform=pm.distributions.transforms.ordered,
                initval=np.tile(np.linspace(-1.0, 1.0, len(base.levels) - 1), (k, 1)),
            )
            cutpoints = cut_m * scale[:, None]
            pm.Deterministic("cutpoints", cutpoints + shift[:, None], dims=("outcome", "cutpoint"))
        sds = _marginal_sds(design, base.priors)
        for g in design.groups:
            chol = pm.LKJCorr(f"corr_chol_{g.name}", n=k, eta=2.0)
            sigma = pm.Deterministic(f"sigma_{g.name}", sds[g.name] * scale, dims="outcome")
            pm.Deterministic(f"cor_{g.name}", chol @ chol.T, dims=("outcome", "outcome_"))
            z = pm.ZeroSumNormal(f"z_{g.name}", sigma=1.0, dims=("outcome", g.dim))
            u = pm.Deterministic(
                f"u_{g.name}", ((sigma[:, None] * chol) @ z).T, dims=(g.dim, "outcome")
            )
            eta = eta + u[pt.as_tensor_variable(g.index)]
        # the trait integrated out by Gauss-Hermite quadrature, per (cell, pattern) row:
        # sampling every respondent's trait mixed the loadings far more slowly (docs/model.md
        # section 13); without a trait there is one node, at zero. One compiled Op gives
        # the rows' summed log-likelihood and its gradient (opinionmap._likelihood)
        points, log_w = quadrature(spec.trait, LIKELIHOOD_NODES[spec.trait])
        shift_q = loading @ points.T if spec.trait else pt.zeros((k, len(log_w)))  # (K, nodes)
        # a yes/no question is the two-answer cumulative model with its cutpoint at zero
        cut = cutpoints if base.family == "ordinal" else np.zeros((k, 1))
        total, *_ = joint_loglik_op(base.link)(
            eta,
            shift_q,
            cut,
            log_w,
            jd.row_cell.astype(np.int64),
            jd.answers.astype(np.int64),
            jd.row_count.astype(float),
        )
        pm.Potential("loglik", total)
    return model


def _marginal_sds(design: Design, priors: Priors) -> dict[str, Any]:
    """Each grouping term's SDs by question on the marginal scale, paired terms in polar form.

    A main term and its interaction (:func:`opinionmap.plan.sd_pairs`) trade their SDs
    off as in a single-question model; ``sd_radius_<interaction>`` and
    ``sd_angle_<interaction>`` give both, with the prior of two independent HalfNormals.
    """
    import pymc as pm

    from opinionmap.model import polar_sds
    from opinionmap.plan import sd_pairs

    sds: dict[str, Any] = {}
    for main, interaction in sd_pairs(design).items():
        sds[main], sds[interaction] = polar_sds(priors, main, interaction, "outcome")
    for g in design.groups:
        if g.name not in sds:
            sds[g.name] = pm.HalfNormal(
                f"sigma_marginal_{g.name}", priors.group_sd_for(g.name), dims="outcome"
            )
    return sds


def anchor_order(jd: JointDesign, dims: int = 1) -> tuple[int, ...]:
    """The questions that fix the trait's sign (and rotation), by position in the outcomes.

    The first is the question with the largest weight in the first principal component
    of the respondents' answer scores (:func:`_components`); with two dimensions the
    second is the largest of the others in the second component. Anchoring on a
    question that loads strongly keeps the mirror image of the posterior (every
    loading's sign flipped) far away (docs/model.md section 13).
    """
    vectors = _components(jd)
    first = int(np.argmax(np.abs(vectors[:, 0])))
    if dims < 2:
        return (first,)
    second = np.abs(vectors[:, 1])
    second[first] = -1.0
    return (first, int(np.argmax(second)))


def _components(jd: JointDesign) -> np.ndarray:
    """Principal components (K, K), largest first, of the answers' correlation matrix.

    Answer scores are positions in the levels, a missing answer at the question's mean.
    """
    scores = np.repeat(jd.answers.astype(float), jd.row_count, axis=0)
    scores[scores < 0] = np.nan
    means = np.nanmean(scores, axis=0)
    scores = np.where(np.isnan(scores), means[None, :], scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.nan_to_num(np.corrcoef(scores.T), nan=0.0)
    _, vectors = np.linalg.eigh(corr)
    return np.asarray(vectors[:, ::-1])


def _start(jd: JointDesign, anchors: tuple[int, ...]) -> np.ndarray:
    """Where every chain starts the loadings on the first dimension, (K,).

    The first component scaled so that the anchor's is 1.5 (its sign positive): with the
    sampler's jitter of +-1, every chain starts on the anchored side, in the same mode
    (chains started at random fell into the mirror image, with the anchor near zero).
    """
    first = _components(jd)[:, 0]
    return np.asarray(1.5 * first / first[anchors[0]])


def _loadings(dims: int, anchors: tuple[int, ...], start: np.ndarray) -> Any:
    """Loadings (K, D), identified so that no sign flip or rotation leaves the likelihood.

    The first anchor question's first loading is positive; with two dimensions it loads on
    the first only and the second anchor's second loading is positive. ``start``: the
    first dimension's initial values (:func:`_start`).
    """
    import pymc as pm
    import pytensor.tensor as pt

    k = len(start)
    first = pm.HalfNormal("loading_first", 1.0, initval=float(start[anchors[0]]))
    rows: list[Any] = [None] * k
    if dims == 1:
        rest = pm.Normal(
            "loading_rest", 0.0, 1.0, shape=(k - 1,), initval=np.delete(start, anchors[0])
        )
        free = iter(range(k - 1))
        for q in range(k):
            rows[q] = pt.stack([first if q == anchors[0] else rest[next(free)]])
    else:
        second = pm.HalfNormal("loading_second", 1.0)
        rest = pm.Normal("loading_rest", 0.0, 1.0, shape=(2 * k - 3,))
        rows[anchors[0]] = pt.stack([first, pt.zeros(())])
        rows[anchors[1]] = pt.stack([rest[0], second])
        pairs = iter(range(1, 2 * k - 3, 2))
        for q in range(k):
            if rows[q] is None:
                i = next(pairs)
                rows[q] = pt.stack([rest[i], rest[i + 1]])
    return pm.Deterministic("loading", pt.stack(rows), dims=("outcome", "trait"))


@dataclass(frozen=True)
class JointResult(SavedTree):
    """A fitted joint model: its design, posterior (a DataTree) and convergence diagnostics.

    ``save`` writes it as netCDF, atomically; :func:`load_joint` reads it.
    """

    spec: JointSpec
    design: JointDesign
    tree: xr.DataTree = field(repr=False)
    diagnostics: Diagnostics

    def correlations(self, term: str, prob: float | None = None) -> pd.DataFrame:
        """The posterior of a term's correlations across questions: one row per pair.

        Columns ``question_a``, ``question_b``, ``mean``, ``sd``, ``lower``, ``upper``.
        """
        name = f"cor_{term}"
        if name not in self.posterior:
            terms = [g.name for g in self.design.design.groups]
            raise OpinionmapError(
                f"no term {term!r} in this joint model; its terms: {format_values(terms)}."
            )
        draws = self.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...)
        values = draws.values
        rows = []
        outcomes = self.spec.outcomes
        for a in range(len(outcomes)):
            for b in range(a + 1, len(outcomes)):
                rows.append((outcomes[a], outcomes[b], values[:, a, b]))
        table = _summary(np.column_stack([r[2] for r in rows]), prob)
        table.insert(0, "question_b", [r[1] for r in rows])
        table.insert(0, "question_a", [r[0] for r in rows])
        return table

    def loo(self) -> ELPDDataLOO:
        """PSIS-LOO over respondents (``arviz_stats.loo``), pointwise values included.

        A respondent's point is all their answers together, the trait integrated out;
        the separate models' pointwise log-likelihoods of the same respondents, summed
        over the questions, give the comparable figure (``benchmarks/bench_joint.py``).
        Computed once per (cell, pattern) and counted once per respondent, as
        :meth:`opinionmap.FitResult.loo`.
        """
        from arviz_stats import loo

        from opinionmap.results import respondent_loo

        by_row = loo(self.tree, pointwise=True, var_name="patterns")
        log_lik = self.tree["log_likelihood"].to_dataset()["patterns"]
        return respondent_loo(log_lik, self.design.design, by_row)

    def loadings(self, prob: float | None = None) -> pd.DataFrame:
        """The posterior of each question's trait loadings: one row per question and dimension."""
        if "loading" not in self.posterior:
            raise OpinionmapError("this joint model has no respondent trait ([joint] trait = 0).")
        draws = self.posterior["loading"].stack(sample=("chain", "draw")).transpose("sample", ...)
        values = draws.values.reshape(draws.shape[0], -1)
        table = _summary(values, prob)
        dims = self.spec.trait
        table.insert(0, "dimension", [d for _ in self.spec.outcomes for d in range(dims)])
        table.insert(0, "question", [q for q in self.spec.outcomes for _ in range(dims)])
        return table


def fit_joint(
    spec: JointSpec,
    survey: SurveyData,
    *,
    sampling: Sampling | None = None,
    random_seed: int | None = None,
    progress: bool = False,
    warn: bool = True,
    on_progress: Callable[[FitProgress], None] = lambda _p: None,
) -> JointResult:
    """Fit a joint model with nutpie (as :func:`~opinionmap.fit`'s defaults) and check it.

    ``sampling`` is laid over the spec's ``[sampling]``; ``random_seed`` over both.
    A fit that did not converge warns (:class:`~opinionmap.ConvergenceWarning`) unless
    ``warn`` is false; its verdict says what failed. ``on_progress`` is called with
    the fit's phase and draws, as :func:`~opinionmap.fit`'s.
    """
    from opinionmap.fitting import _complete_draws, compile_model, sample_nutpie

    # "auto" is a diagonal mass matrix: on simulated surveys the loadings' bulk ESS was
    # 35-143 with it against 14 with the low-rank one (docs/model.md section 13)
    settings = spec.base.sampling.merged(sampling, seed=random_seed).resolved("joint")
    if settings.sampler != "nutpie":
        raise OpinionmapError(
            f"a joint model samples with nutpie; sampler {settings.sampler!r} is not available."
        )
    jd = build_joint_design(spec, survey)
    on_progress(FitProgress("compiling"))
    compiled = compile_model(build_joint_model(jd))
    tree = sample_nutpie(compiled, settings, progress, on_progress)
    on_progress(FitProgress("summarising"))
    posterior, stats, _ = _complete_draws(tree, settings)
    # the non-centred draws and the correlations' factors: sampled, not reported
    posterior = posterior.drop_vars(
        [v for v in posterior.data_vars if str(v).startswith(("z_", "corr_chol_"))]
    )
    loglik = joint_log_likelihood(spec, jd, posterior)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], -1)
    groups = {
        "posterior": posterior,
        "sample_stats": stats,
        "log_likelihood": xr.Dataset(
            {"patterns": (("chain", "draw", "pattern_row"), loglik.reshape(shape))}
        ),
    }
    stored = jd.design.to_tree()
    groups.update({name: node.to_dataset() for name, node in stored.children.items()})
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update({str(k): v for k, v in stored.attrs.items()})
    tree.attrs.update(settings.to_attrs())
    tree.attrs[JOINT_ATTR] = spec.to_json()
    tree.attrs["opinionmap_joint_dropped"] = jd.dropped
    if spec.trait:
        anchors = anchor_order(jd, spec.trait)
        tree.attrs["opinionmap_joint_anchors"] = json.dumps([spec.outcomes[q] for q in anchors])
    if jd.area is not None:
        tree.attrs["opinionmap_area"] = jd.area
    tree.attrs["opinionmap_checksum"] = checksum(tree)
    result = JointResult(spec, jd, tree, diagnose(tree, warn=False))
    if warn and not result.converged:
        warnings.warn(result.verdict, ConvergenceWarning, stacklevel=2)
    return result


@dataclass(frozen=True)
class _Draws:
    """A joint fit's draws, flattened over (chain, draw)."""

    beta: np.ndarray | None  # (S, K, p)
    intercept: np.ndarray | None  # (S, K)
    cutpoints: np.ndarray | None  # (S, K, C-1)
    effects: dict[str, np.ndarray]  # term -> (S, L, K)
    loading: np.ndarray | None  # (S, K, D)

    @classmethod
    def of(cls, post: xr.Dataset, jd: JointDesign) -> _Draws:

        def flat(name: str) -> np.ndarray | None:
            if name not in post:
                return None
            da = post[name]
            values = da.values
            return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])

        effects = {g.name: flat(f"u_{g.name}") for g in jd.design.groups}
        return cls(
            flat("beta"),
            flat("Intercept"),
            flat("cutpoints"),
            {k: v for k, v in effects.items() if v is not None},
            flat("loading"),
        )

    @property
    def n_samples(self) -> int:
        return (
            int(next(iter(self.effects.values())).shape[0])
            if self.effects
            else int(
                next(v for v in (self.beta, self.intercept, self.cutpoints) if v is not None).shape[
                    0
                ]
            )
        )


def _node_shifts(draws: _Draws, points: np.ndarray, n_samples: int, k: int) -> np.ndarray:
    """Each question's shift at each trait node, (S, K, Q): its loadings times the node."""
    if draws.loading is None:
        return np.zeros((n_samples, k, points.shape[0]))
    return np.einsum("skd,qd->skq", draws.loading, points)


def _linear_predictor(draws: _Draws, design: Design, frame: pd.DataFrame) -> np.ndarray:
    """(S, n, K) for frame rows, the training levels only."""
    coded = design.evaluate(design.with_covariates(frame), new_levels="error")
    s = draws.n_samples
    k = next(iter(draws.effects.values())).shape[2] if draws.effects else draws.beta.shape[1]  # type: ignore[union-attr]
    eta = np.zeros((s, len(frame), k))
    if draws.beta is not None and coded.X.shape[1]:
        eta += np.einsum("np,skp->snk", coded.X, draws.beta)
    if draws.intercept is not None:
        eta += draws.intercept[:, None, :]
    for g in coded.groups:
        eta += draws.effects[g.name][:, g.index, :]
    return eta


def parse_pattern(text: str | Mapping[str, str], spec: JointSpec) -> dict[str, str]:
    """A pattern of answers, ``"q1=less,q2=more"`` or ``{"q1": "less"}``, checked.

    Raises
    ------
    OpinionmapError
        An unknown question or answer, a question named twice, an empty pattern.
    """
    if isinstance(text, Mapping):
        pairs = [(str(k), str(v)) for k, v in text.items()]
    else:
        pairs = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            question, sep, answer = part.partition("=")
            if not sep:
                raise OpinionmapError(
                    f"joint pattern {text!r}: {part!r} is not question=answer (e.g. "
                    f"{spec.outcomes[0]}={spec.base.levels[0]})."
                )
            pairs.append((question.strip(), answer.strip()))
    if not pairs:
        raise OpinionmapError(
            f"empty joint pattern; give question=answer pairs, e.g. "
            f"{spec.outcomes[0]}={spec.base.levels[0]},{spec.outcomes[1]}={spec.base.levels[-1]}."
        )
    out: dict[str, str] = {}
    for question, answer in pairs:
        if question not in spec.outcomes:
            raise OpinionmapError(
                f"joint pattern: unknown question {question!r}; the model's questions: "
                f"{format_values(spec.outcomes)}."
            )
        if question in out:
            raise OpinionmapError(f"joint pattern: question {question!r} is named twice.")
        if answer not in spec.base.levels:
            raise OpinionmapError(
                f"joint pattern: {answer!r} is not an answer to {question!r}; its answers: "
                f"{format_values(spec.base.levels)}."
            )
        out[question] = answer
    return out


@dataclass(frozen=True)
class JointEstimates:
    """Population shares from a joint model, as draws.

    ``shares``: (sample, group, question, answer), each question's share of each
    answer by ``by`` group; ``pattern``: (sample, group), the share giving every answer
    of :attr:`joint`, the first pattern asked (``None`` if none was); ``patterns``:
    (sample, group, pattern), every pattern asked, labelled ``q1=a,q2=b``; ``groups``:
    the ``by`` levels of each group, one row each.
    """

    shares: xr.DataArray
    groups: pd.DataFrame
    by: tuple[str, ...]
    pattern: xr.DataArray | None = None
    joint: Mapping[str, str] | None = None
    patterns: xr.DataArray | None = None

    @property
    def pattern_label(self) -> str | None:
        """The (first) pattern as ``q1=a,q2=b``, the ``category`` of its rows."""
        return None if self.joint is None else _label(self.joint)

    def summary(self, prob: float | None = None) -> pd.DataFrame:
        """One row per question, group and answer.

        Columns ``outcome``, the ``by`` columns, ``category``, ``mean``, ``sd``,
        ``lower``, ``upper``.
        """
        values = self.shares.values  # (S, G, K, C)
        s, g = values.shape[:2]
        table = _summary(values.reshape(s, -1), prob)
        index = pd.MultiIndex.from_product(
            [range(g), self.shares["outcome"].values, self.shares["category"].values],
            names=["group", "outcome", "category"],
        ).to_frame(index=False)
        keys = self.groups.iloc[index["group"]].reset_index(drop=True)
        return pd.concat(
            [index[["outcome"]], keys, index[["category"]], table.reset_index(drop=True)], axis=1
        )

    def pattern_summary(self, prob: float | None = None) -> pd.DataFrame:
        """One row per group and pattern: the share giving every answer of the pattern.

        Columns: the ``by`` columns, ``category`` (the pattern, ``q1=a,q2=b``), ``mean``,
        ``sd``, ``lower``, ``upper``; shares of adults answering the pattern's questions.
        """
        if self.patterns is None:
            raise OpinionmapError("no joint pattern was asked for (joint=...).")
        values = self.patterns.values  # (S, G, P)
        s, g, n = values.shape
        table = _summary(values.reshape(s, -1), prob)
        out = self.groups.iloc[np.repeat(np.arange(g), n)].reset_index(drop=True)
        out["category"] = np.tile(self.patterns["pattern"].values, g)
        return pd.concat([out, table.reset_index(drop=True)], axis=1)


def _label(pattern: Mapping[str, str]) -> str:
    return ",".join(f"{q}={a}" for q, a in pattern.items())


def poststratify_joint(
    result: JointResult,
    frame: Frame | pd.DataFrame,
    *,
    by: str | Sequence[str] = (),
    joint: str | Mapping[str, str] | Sequence[str | Mapping[str, str]] | None = None,
    weight: str = "population",
) -> JointEstimates:
    """Every question's answer shares, and patterns' shares, by ``by`` group, as draws.

    Each frame cell's probabilities integrate the respondent trait out (the same
    quadrature as the fit), so a pattern's share is that of adults who would give
    every answer of it, answering those questions; weighted by the cell counts.
    ``joint`` is one pattern (``"q1=a,q2=b"`` or a mapping) or a list of them, computed
    from the same probabilities (:attr:`JointEstimates.patterns`).
    """
    from opinionmap._kernel import family_code, joint_accumulate
    from opinionmap.frame import Frame

    spec, jd = result.spec, result.design
    data = frame.data if isinstance(frame, Frame) else frame
    count = frame.weight if isinstance(frame, Frame) else weight
    by = (by,) if isinstance(by, str) else tuple(by)
    absent = [c for c in (*by, count) if c not in data.columns]
    if absent:
        raise OpinionmapError(
            f"frame: no column {format_values(absent)} (columns: {format_values(data.columns)})."
        )
    if joint is None:
        asked: list[dict[str, str]] = []
    elif isinstance(joint, (str, Mapping)):
        asked = [parse_pattern(joint, spec)]
    else:
        asked = [parse_pattern(one, spec) for one in joint]
    draws = _Draws.of(result.posterior, jd)
    needed = list(dict.fromkeys([*jd.design.spec.variables, *by]))
    covariates = jd.design.spec.covariates
    own = [c for c in needed if c in data.columns or covariates is None]
    cells = data.groupby(own, observed=True, sort=False)[count].sum().reset_index()
    if by:
        keys = cells[list(by)].astype(str)
        groups = keys.drop_duplicates().sort_values(list(by)).reset_index(drop=True)
        group = keys.merge(groups.reset_index(), how="left", on=list(by))["index"].to_numpy()
    else:
        groups = pd.DataFrame(index=[0])
        group = np.zeros(len(cells), dtype=np.int64)
    w = cells[count].to_numpy(dtype=float)
    points, logw = quadrature(spec.trait, spec.nodes)
    s, k, c, n_groups = draws.n_samples, len(spec.outcomes), len(spec.base.levels), len(groups)
    shares = np.zeros((s, n_groups, k, c))
    joint_share = np.zeros((s, n_groups, len(asked)))
    den = np.bincount(group, weights=w, minlength=n_groups)
    longest = max((len(a) for a in asked), default=1)
    questions = np.full((len(asked), longest), -1, dtype=np.int64)
    answers = np.zeros((len(asked), longest), dtype=np.int64)
    for t, pattern in enumerate(asked):
        for j, (q, a) in enumerate(pattern.items()):
            questions[t, j] = spec.outcomes.index(q)
            answers[t, j] = spec.base.levels.index(a)
    family = family_code(spec.base.family, spec.base.link)
    step = max(1, _CHUNK_VALUES // max(len(cells) * k, 1))
    for d0 in range(0, s, step):
        sub = _subset(draws, slice(d0, min(d0 + step, s)))
        eta = _linear_predictor(sub, jd.design, cells)  # (s, n, K)
        shift = (
            np.einsum("skd,qd->skq", sub.loading, points)
            if sub.loading is not None
            else np.zeros((eta.shape[0], k, len(logw)))
        )
        cut = sub.cutpoints if sub.cutpoints is not None else np.zeros((eta.shape[0], k, 0))
        rows = slice(d0, d0 + eta.shape[0])
        joint_accumulate(
            family,
            np.ascontiguousarray(eta),
            np.ascontiguousarray(cut, dtype=float),
            np.ascontiguousarray(shift),
            np.exp(logw),
            group.astype(np.int64),
            w,
            questions,
            answers,
            shares[rows],
            joint_share[rows],
        )
    shares /= den[None, :, None, None]
    joint_share /= den[None, :, None]
    array = xr.DataArray(
        shares,
        dims=("sample", "group", "outcome", "category"),
        coords={"outcome": list(spec.outcomes), "category": list(spec.base.levels)},
    )
    if not asked:
        return JointEstimates(array, groups, by)
    patterns = xr.DataArray(
        joint_share,
        dims=("sample", "group", "pattern"),
        coords={"pattern": [_label(a) for a in asked]},
    )
    first = patterns.isel(pattern=0, drop=True)
    return JointEstimates(array, groups, by, first, asked[0], patterns)


def _summary(values: np.ndarray, prob: float | None) -> pd.DataFrame:
    """``mean``, ``sd``, ``lower``, ``upper`` of each column of (S, n) draws."""
    da = xr.DataArray(values[None], dims=("chain", "draw", "item"))
    return summarise_draws(da, prob=interval_prob(prob)).drop(columns="item")


def _subset(draws: _Draws, rows: slice) -> _Draws:
    def cut(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else value[rows]

    return _Draws(
        cut(draws.beta),
        cut(draws.intercept),
        cut(draws.cutpoints),
        {k: v[rows] for k, v in draws.effects.items()},
        cut(draws.loading),
    )


def joint_log_likelihood(spec: JointSpec, jd: JointDesign, posterior: xr.Dataset) -> np.ndarray:
    """Each (cell, pattern)'s log-likelihood per draw, (S, R): the trait integrated out.

    Computed by the model's own likelihood kernel
    (:func:`opinionmap._likelihood.joint_row_logliks`), draws split among threads
    (the kernel releases the GIL; numba's own parallel loop compiled 2.5 times slower).
    """
    from concurrent.futures import ThreadPoolExecutor

    from opinionmap._likelihood import joint_row_logliks

    draws = _Draws.of(posterior, jd)
    points, logw = quadrature(spec.trait, spec.nodes)
    cells = jd.design.cells
    k = len(spec.outcomes)
    out = np.zeros((draws.n_samples, len(jd.row_cell)))
    step = max(1, _CHUNK_VALUES // max(len(cells) * k, 1))
    threads = os.cpu_count() or 1
    probit = spec.base.link == "probit"
    for d0 in range(0, draws.n_samples, step):
        sub = _subset(draws, slice(d0, d0 + step))
        eta = _linear_predictor(sub, jd.design, cells)  # (s, cells, K)
        shift = _node_shifts(sub, points, eta.shape[0], k)
        # a yes/no question: two answers, the cutpoint at zero
        cut = sub.cutpoints if sub.cutpoints is not None else np.zeros((eta.shape[0], k, 1))
        eta = np.ascontiguousarray(eta)
        shift = np.ascontiguousarray(shift)
        cut = np.ascontiguousarray(cut, dtype=float)

        def rows(
            part: slice, d0: int = d0, eta: Any = eta, shift: Any = shift, cut: Any = cut
        ) -> None:
            out[d0 + part.start : d0 + part.stop] = joint_row_logliks(
                eta[part], shift[part], cut[part], logw, jd.row_cell, jd.answers, probit
            )

        bounds = np.linspace(0, eta.shape[0], threads + 1).astype(int)
        parts = [slice(a, b) for a, b in pairwise(bounds) if b > a]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(rows, parts))
    return out


def load_joint(path: str | os.PathLike[str]) -> JointResult:
    """Load a joint fit saved by :meth:`JointResult.save`; the file alone is enough.

    Raises
    ------
    ProvenanceError
        Not a joint fit, or its draws or data no longer match what was recorded.
    """
    from opinionmap.results import ProvenanceError, _read_tree

    source = Path(path)
    tree = _read_tree(source)
    if JOINT_ATTR not in tree.attrs:
        raise ProvenanceError(
            f"{source}: a one-question fit, not a joint model's; read it with opinionmap.load."
        )
    try:
        spec = JointSpec.from_json(tree.attrs[JOINT_ATTR])
        design = Design.from_tree(tree)
    except (KeyError, ValueError, TypeError, OpinionmapError) as exc:
        raise ProvenanceError(
            f"{source}: its joint model's attributes are incomplete or malformed ({exc}); the "
            "file was modified after fitting. Refit the model."
        ) from exc
    if checksum(tree) != tree.attrs.get("opinionmap_checksum") or (
        design.data_hash != tree.attrs.get("opinionmap_data_hash")
    ):
        raise ProvenanceError(
            f"{source}: the draws or data stored in the file do not match what was recorded "
            "when it was fitted; the file was modified or damaged. Refit the model."
        )
    area = tree.attrs.get("opinionmap_area")
    jd = _joint_design(
        spec, design, int(tree.attrs["opinionmap_joint_dropped"]), str(area) if area else None
    )
    return JointResult(spec, jd, tree, diagnose(tree, warn=False))
