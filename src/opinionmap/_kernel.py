"""Population-weighted category probabilities summed by group, in one compiled pass.

Poststratification needs, for every posterior draw and output group, the sum over
the group's frame cells of each cell's population times its category
probabilities. :func:`opinionmap.predict.linear_predictor` and
:func:`~opinionmap.predict.probabilities` compute those probabilities as
(draws x cells x categories) arrays, several of them per chunk; here a numba
kernel computes, for one draw and a tile of a few thousand cells at a time, the
cells' linear predictors, then cell by cell their probabilities and weighted
sums, so nothing of that size is ever held; it runs blocks of draws in parallel.

Every term of the linear predictor becomes one of three kinds of read from a
per-draw table of coefficients (rows: fixed effects, then each grouping term's
level effects, one block per coefficient of a varying-slope term; columns: the
linear predictors, ``K - 1`` for a categorical model, one otherwise, a hurdle
model's second one last):

- fixed effects: the cell's design row times the table's first rows;
- varying intercepts (structured ones included): the row of the cell's level;
- varying slopes: the row of the cell's level times the cell's slope variable.

The link then gives the category probabilities exactly as
:func:`~opinionmap.predict.probabilities` does: softmax with the reference
category's logit 0, cumulative logit or probit, logit or probit for bernoulli,
and a hurdle model's ``(1 - P(code)) P(k | answering)`` then ``P(code)``. Two
forms take fewer exponentials where nothing can overflow (arguments within 700):
the softmax as ``exp(eta_c) / (1 + sum exp(eta))``, and the cumulative logit as
``1 / (1 + exp(eta) exp(-c_k))`` with each draw's ``exp(-c_k)`` computed once. The
results equal the NumPy path's to rounding (``tests/test_kernel.py``).

:func:`joint_accumulate` does the same for a joint model of several questions
(:func:`opinionmap.joint.poststratify_joint`): per draw and frame cell, every answer's
probability to each question at each Gauss-Hermite node of the respondent trait, summed
with the nodes' weights into each question's shares and multiplied across a pattern's
answers into the pattern's share, without the (draws x cells x questions x answers x
nodes) arrays of the NumPy form, which took about six times as long.

:func:`log_likelihood` computes each respondent's (or answer pattern's) pointwise
log-likelihood from the same linear predictors, in log space (the softmax's log-sum-exp,
the cumulative link's log-differences of :mod:`opinionmap._likelihood`), for a fit's
``log_likelihood`` group: one pass per draw on one thread, where the NumPy form passes
several times over (draws x cells x answers) arrays: 0.5-0.8 s against 1.6-3.6 s for
the largest bundled question (``benchmarks/README.md``).

The kernel is compiled on first use and kept in numba's on-disk cache, so later
processes load it instead of compiling it. ``OPINIONMAP_POSTSTRATIFY_KERNEL=0``
makes :func:`~opinionmap.poststratification.poststratify` use the NumPy path.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import numba
import numpy as np

from opinionmap._likelihood import _log_level
from opinionmap.design import Design, GroupIndex, NewData, hurdle_parts
from opinionmap.predict import Draws

__all__ = ["SWITCH", "Kernel", "enabled", "family_code", "joint_accumulate", "log_likelihood"]

# the environment variable that switches the kernel off ("0") for the NumPy path
SWITCH = "OPINIONMAP_POSTSTRATIFY_KERNEL"

# family codes the kernel knows
CATEGORICAL, BERNOULLI_LOGIT, BERNOULLI_PROBIT, ORDINAL_LOGIT, ORDINAL_PROBIT = range(5)
_FAMILIES = {
    ("categorical", "logit"): CATEGORICAL,
    ("bernoulli", "logit"): BERNOULLI_LOGIT,
    ("bernoulli", "probit"): BERNOULLI_PROBIT,
    ("ordinal", "logit"): ORDINAL_LOGIT,
    ("ordinal", "probit"): ORDINAL_PROBIT,
}
# cells per tile and most draws per block: a tile's cells stay in cache while a thread's
# block of draws passes over them, and each draw's rows of the table stay in cache too
TILE_CELLS = 2048
DRAW_BLOCK = 16
# one kernel at a time: each already uses every core (dask may call from several threads)
_LOCK = threading.Lock()


def enabled() -> bool:
    """Whether poststratification uses the kernel (``OPINIONMAP_POSTSTRATIFY_KERNEL`` not ``0``)."""
    return os.environ.get(SWITCH, "1").strip() != "0"


@dataclass(frozen=True)
class _Part:
    """One linear predictor's design and draws (a hurdle model has two), and its table layout."""

    design: Design
    draws: Draws
    channels: int  # columns of the table: K - 1 (categorical) or 1
    n_fixed: int  # fixed-effect rows
    first_fixed: int  # its first fixed-effect row in the table
    first_channel: int

    @property
    def fixed(self) -> bool:
        return self.n_fixed > 0

    def levels(self, name: str) -> int:
        """Levels with effects (new levels appended by poststratification included)."""
        return int(self.draws.effects[name].shape[1])


@dataclass(frozen=True)
class Kernel:
    """A design's linear predictors and link, laid out for the compiled kernel.

    Build it with :meth:`for_design`; :meth:`table` lays out a slice of the draws,
    :meth:`cells` codes frame cells, and :meth:`accumulate` adds their weighted
    probabilities into the output groups.
    """

    parts: tuple[_Part, ...]
    family: int
    hurdle: bool
    n_categories: int
    n_rows: int  # rows of the table
    group_rows: tuple[tuple[int, ...], ...]  # per part, per group: its first row

    @classmethod
    def for_design(cls, design: Design, draws: Draws) -> Kernel | None:
        """The kernel's layout for ``design``, or ``None`` for a model it does not cover.

        Covered: categorical (logit), ordinal and bernoulli (logit or probit)
        models, a hurdle on an ordinal model, and every term
        :func:`~opinionmap.predict.linear_predictor` adds.
        """
        if design.spec.hurdle is not None:
            answered, non_answer = hurdle_parts(design)
            if draws.hurdle is None or non_answer.spec.family != "bernoulli":
                return None
            if non_answer.spec.link != "logit":
                return None
            pairs = [(answered, draws), (non_answer, draws.hurdle)]
        else:
            pairs = [(design, draws)]
        family = _FAMILIES.get((pairs[0][0].spec.family, pairs[0][0].spec.link))
        if family is None:
            return None
        if family in (ORDINAL_LOGIT, ORDINAL_PROBIT) and draws.cutpoints is None:
            return None
        parts, first_fixed, first_channel = [], 0, 0
        for part_design, part_draws in pairs:
            categorical = part_design.spec.family == "categorical"
            channels = len(part_design.categories) - 1 if categorical else 1
            p = part_design.X.shape[1] if part_draws.beta is not None else 0
            parts.append(_Part(part_design, part_draws, channels, p, first_fixed, first_channel))
            first_fixed += p
            first_channel += channels
        row = first_fixed
        group_rows = []
        for part in parts:
            starts = []
            for g in part.design.groups:
                starts.append(row)
                row += part.levels(g.name) * _coefficients(g)
            group_rows.append(tuple(starts))
        return cls(
            tuple(parts),
            family,
            len(parts) > 1,
            len(design.categories),
            row,
            tuple(group_rows),
        )

    @property
    def channels(self) -> int:
        """Linear predictors per cell and draw."""
        return sum(p.channels for p in self.parts)

    @property
    def values_per_draw(self) -> int:
        """Numbers the table holds per draw."""
        return self.n_rows * self.channels

    def table(self, sl: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The coefficients of the draws in ``sl``: table (S, rows, channels), offsets, cutpoints.

        The offsets (S, channels) are the intercepts; the cutpoints (S, K - 1) an
        ordinal model's (no columns otherwise).
        """
        n = sl.stop - sl.start
        table = np.zeros((n, self.n_rows, self.channels))
        offset = np.zeros((n, self.channels))
        for part, starts in zip(self.parts, self.group_rows, strict=True):
            draws, cols = part.draws, slice(part.first_channel, part.first_channel + part.channels)
            if draws.intercept is not None:
                offset[:, cols] = draws.intercept[sl].reshape(n, part.channels)
            if part.fixed:
                assert draws.beta is not None
                rows = slice(part.first_fixed, part.first_fixed + part.n_fixed)
                table[:, rows, cols] = draws.beta[sl].reshape(n, part.n_fixed, part.channels)
            for g, start in zip(part.design.groups, starts, strict=True):
                u = draws.effects[g.name][sl]
                levels = u.shape[1]
                for j in range(_coefficients(g)):
                    block = u[:, :, j] if g.slopes else u
                    rows = slice(start + j * levels, start + (j + 1) * levels)
                    table[:, rows, cols] = block.reshape(n, levels, part.channels)
        cut = self.parts[0].draws.cutpoints
        cutpoints = np.zeros((n, 0)) if cut is None else np.ascontiguousarray(cut[sl], dtype=float)
        return table, offset, cutpoints

    def cells(self, data: NewData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Coded cells as the kernel reads them, one row per term.

        Returns the design's columns (fixed-effect rows, n), each cell's table row of
        every varying intercept (terms, n), and of every varying slope's coefficient
        with its multiplier (two (coefficients, n) arrays).
        """
        n = data.X.shape[0]
        fixed = [data.X for part in self.parts if part.fixed]
        unit: list[np.ndarray] = []
        scaled: list[np.ndarray] = []
        multipliers: list[np.ndarray] = []
        by_name = {g.name: g for g in data.groups}
        for part, starts in zip(self.parts, self.group_rows, strict=True):
            for g, start in zip(part.design.groups, starts, strict=True):
                coded = by_name[g.name]
                if (coded.index < 0).any():
                    raise ValueError(
                        f"rows with levels of {g.name!r} the model has no effects for; code new "
                        "data with new_levels='error' or extend the draws first"
                    )
                if not g.slopes:
                    unit.append(start + coded.index)
                    continue
                levels = part.levels(g.name)
                W = coded.slope_matrix(data.X)
                for j in range(W.shape[1]):
                    scaled.append(start + j * levels + coded.index)
                    multipliers.append(W[:, j])
        return (
            _rows([column for x in fixed for column in x.T], n, float),
            _rows(unit, n, np.int64),
            _rows(scaled, n, np.int64),
            _rows(multipliers, n, float),
        )

    def accumulate(
        self,
        table: tuple[np.ndarray, np.ndarray, np.ndarray],
        cells: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        weights: np.ndarray,
        group: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """Add each draw's population-weighted probabilities into ``out`` (S, groups, K).

        ``weights`` is (1, n), every draw's cell weights, or (S, n), each draw's own;
        ``group`` each cell's output group (runs of equal groups sum together).
        """
        # every array C-ordered, writeable, with one dtype each, so that one compiled
        # version serves every model and caller (a float32 posterior, a strided or
        # read-only view such as np.broadcast_to's each make numba compile another)
        coefficients, offset, cutpoints = (_canonical(a, float) for a in table)
        X, unit, scaled, multipliers = _canonical_cells(cells)
        target = out if out.flags.c_contiguous and out.dtype == np.float64 else np.zeros(out.shape)
        # blocks of draws, several per thread, so that the threads finish together
        block = max(1, min(DRAW_BLOCK, len(coefficients) // (4 * numba.get_num_threads())))
        with _LOCK:
            _accumulate(
                self.family,
                int(self.hurdle),
                block,
                X,
                unit,
                scaled,
                multipliers,
                coefficients,
                offset,
                cutpoints,
                _canonical(weights, float),
                _canonical(group, np.int64),
                target,
            )
        if target is not out:
            out += target


def _canonical(array: np.ndarray, dtype: type) -> np.ndarray:
    """The array C-ordered, writeable and of ``dtype`` (a copy only where it is not)."""
    return np.require(array, dtype=dtype, requirements=["C", "W"])


def _canonical_cells(
    cells: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`Kernel.cells`' arrays canonical: values as float, level indices as int64."""
    X, unit, scaled, multipliers = cells
    return (
        _canonical(X, float),
        _canonical(unit, np.int64),
        _canonical(scaled, np.int64),
        _canonical(multipliers, float),
    )


def _coefficients(group: GroupIndex) -> int:
    """A term's coefficients per level: one, or a varying-slope term's intercept and slopes."""
    return len(group.slopes) + int(group.intercept) if group.slopes else 1


def _rows(rows: list[np.ndarray], n: int, dtype: type) -> np.ndarray:
    """Per-cell values of each term, one row per term: a C-ordered (terms, n) array."""
    if not rows:
        return np.zeros((0, n), dtype=dtype)
    return np.ascontiguousarray(np.stack(rows), dtype=dtype)


_SQRT1_2 = 1.0 / math.sqrt(2.0)


@numba.njit(cache=True, inline="always")
def _ndtr(a: float) -> float:  # pragma: no cover - compiled
    """The standard normal CDF, as scipy.special.ndtr computes it."""
    x = a * _SQRT1_2
    z = abs(x)
    if z < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(x)
    y = 0.5 * math.erfc(z)
    return 1.0 - y if x > 0.0 else y


@numba.njit(cache=True, inline="always")
def _cdf(family: int, x: float) -> float:  # pragma: no cover - compiled
    """The link's CDF: logistic or normal."""
    if family in (ORDINAL_PROBIT, BERNOULLI_PROBIT):
        return _ndtr(x)
    return 1.0 / (1.0 + math.exp(-x))


# beyond this, exp(x) over- or underflows: the one-exp forms below take the direct ones
_EXP_SAFE = 700.0


@numba.njit(cache=True, inline="always")
def _softmax(eta: np.ndarray, i: int, p: np.ndarray) -> None:  # pragma: no cover - compiled
    """Probabilities of the reference category (logit 0) and the others (logits ``eta[:, i]``)."""
    k = p.shape[0]
    top = 0.0
    for c in range(k - 1):
        top = max(top, abs(eta[c, i]))
    if top < _EXP_SAFE:
        # exp(eta_c) / (1 + sum exp(eta)): one exp fewer than shifting by the largest logit
        total = 1.0
        for c in range(k - 1):
            p[c + 1] = math.exp(eta[c, i])
            total += p[c + 1]
        p[0] = 1.0
    else:
        top = 0.0
        for c in range(k - 1):
            top = max(top, eta[c, i])
        p[0] = math.exp(-top)
        total = p[0]
        for c in range(k - 1):
            p[c + 1] = math.exp(eta[c, i] - top)
            total += p[c + 1]
    for c in range(k):
        p[c] /= total


@numba.njit(cache=True, inline="always")
def _cumulative(
    family: int, eta: float, cutpoints: np.ndarray, exp_cut: np.ndarray, s: int, p: np.ndarray
) -> None:  # pragma: no cover - compiled
    """An ordinal model's probabilities: differences of P(y <= k) = F(c_k - eta).

    With the logit link, ``1 / (1 + exp(eta - c_k))``; when ``exp_cut`` holds every
    ``exp(-c_k)`` of the draw, as ``1 / (1 + exp(eta) exp(-c_k))``: one exp per cell.
    """
    n_cut = cutpoints.shape[1]
    previous = 0.0
    if family == ORDINAL_LOGIT and exp_cut[0] > 0.0 and abs(eta) < _EXP_SAFE:
        e = math.exp(eta)
        for k in range(n_cut):
            cdf = 1.0 / (1.0 + e * exp_cut[k])
            p[k] = cdf - previous
            previous = cdf
    else:
        for k in range(n_cut):
            if family == ORDINAL_LOGIT:
                cdf = 1.0 / (1.0 + math.exp(eta - cutpoints[s, k]))
            else:
                cdf = _ndtr(cutpoints[s, k] - eta)
            p[k] = cdf - previous
            previous = cdf
    p[n_cut] = 1.0 - previous


@numba.njit(cache=True, inline="always")
def _link(
    family: int,
    eta: np.ndarray,
    i: int,
    cutpoints: np.ndarray,
    exp_cut: np.ndarray,
    s: int,
    p: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Category probabilities ``p`` of the answers from cell ``i``'s linear predictors."""
    if family == CATEGORICAL:
        _softmax(eta, i, p)
    elif family in (BERNOULLI_LOGIT, BERNOULLI_PROBIT):
        p[1] = _cdf(family, eta[0, i])
        p[0] = 1.0 - p[1]
    else:
        _cumulative(family, eta[0, i], cutpoints, exp_cut, s, p)


@numba.njit(cache=True, inline="always")
def _linear_predictors(
    s: int,
    start: int,
    X: np.ndarray,
    unit: np.ndarray,
    scaled: np.ndarray,
    multipliers: np.ndarray,
    table: np.ndarray,
    offset: np.ndarray,
    eta: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The linear predictors (channels, m) in draw ``s`` of the ``m`` cells from ``start``.

    Term by term over the tile's cells: long, simple loops the compiler vectorises.
    """
    m = eta.shape[1]
    for c in range(eta.shape[0]):
        row = eta[c]
        row[:] = offset[s, c]
        for j in range(X.shape[0]):
            beta, x = table[s, j, c], X[j, start : start + m]
            for i in range(m):
                row[i] += x[i] * beta
        for t in range(unit.shape[0]):
            index = unit[t, start : start + m]
            for i in range(m):
                row[i] += table[s, index[i], c]
        for t in range(scaled.shape[0]):
            index, factor = scaled[t, start : start + m], multipliers[t, start : start + m]
            for i in range(m):
                row[i] += table[s, index[i], c] * factor[i]


@numba.njit(parallel=True, cache=True, nogil=True)
def _accumulate(
    family: int,
    hurdle: int,
    block: int,
    X: np.ndarray,
    unit: np.ndarray,
    scaled: np.ndarray,
    multipliers: np.ndarray,
    table: np.ndarray,
    offset: np.ndarray,
    cutpoints: np.ndarray,
    weights: np.ndarray,
    group: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add every draw's population-weighted category probabilities into ``out`` by group."""
    n_draws, n_cells = table.shape[0], X.shape[1]
    channels, k_out = table.shape[2], out.shape[2]
    k_answers = k_out - hurdle
    blocks = (n_draws + block - 1) // block
    for b in numba.prange(blocks):
        etas = np.empty((channels, TILE_CELLS))
        p = np.empty(k_out)
        answers = p[:k_answers]
        acc = np.zeros(k_out)
        exp_cut = np.zeros(max(cutpoints.shape[1], 1))
        first, last = b * block, min(n_draws, (b + 1) * block)
        for start in range(0, n_cells, TILE_CELLS):
            stop = min(n_cells, start + TILE_CELLS)
            eta = etas[:, : stop - start]
            for s in range(first, last):
                _exp_cutpoints(cutpoints, s, exp_cut)
                _linear_predictors(s, start, X, unit, scaled, multipliers, table, offset, eta)
                ws = s if weights.shape[0] > 1 else 0
                current = group[start]
                for i in range(stop - start):
                    if group[start + i] != current:
                        for k in range(k_out):
                            out[s, current, k] += acc[k]
                            acc[k] = 0.0
                        current = group[start + i]
                    _link(family, eta, i, cutpoints, exp_cut, s, answers)
                    if hurdle:
                        code = 1.0 / (1.0 + math.exp(-eta[channels - 1, i]))
                        for k in range(k_answers):
                            p[k] *= 1.0 - code
                        p[k_answers] = code
                    w = weights[ws, start + i]
                    for k in range(k_out):
                        acc[k] += w * p[k]
                for k in range(k_out):
                    out[s, current, k] += acc[k]
                    acc[k] = 0.0


@numba.njit(cache=True, inline="always")
def _exp_cutpoints(
    cutpoints: np.ndarray, s: int, exp_cut: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``exp(-c_k)`` of draw ``s``'s cutpoints, or ``exp_cut[0] = 0`` when one is too far out."""
    exp_cut[0] = 0.0
    for k in range(cutpoints.shape[1]):
        if abs(cutpoints[s, k]) >= _EXP_SAFE:
            exp_cut[0] = 0.0
            return
        exp_cut[k] = math.exp(-cutpoints[s, k])


def family_code(family: str, link: str) -> int:
    """The kernel's code of a family and link."""
    return _FAMILIES[(family, link)]


@numba.njit(parallel=True, cache=True, nogil=True)
def joint_accumulate(
    family: int,
    eta: np.ndarray,
    cutpoints: np.ndarray,
    shift: np.ndarray,
    node_weight: np.ndarray,
    group: np.ndarray,
    count: np.ndarray,
    pattern_question: np.ndarray,
    pattern_answer: np.ndarray,
    shares: np.ndarray,
    patterns: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """A joint model's population sums by group, the respondent trait integrated out.

    For each draw ``s`` and frame cell ``i`` (``eta``: (S, n, K) linear predictors of the
    ``K`` questions; ``shift``: (S, K, Q) each question's trait shift at each quadrature
    node, whose weights are ``node_weight``), every answer's probability at every node
    (ordinal: ``cutpoints`` (S, K, C-1); bernoulli: logit or probit), then adds the
    cell's ``count`` times their node-weighted sums to ``shares[s, group[i], k, c]`` and
    times the node-weighted products of each pattern's answers to
    ``patterns[s, group[i], t]`` (pattern ``t``: questions ``pattern_question[t]``,
    answers ``pattern_answer[t]``, padded with -1). Draws run in parallel.
    """
    n_draws, n_cells, n_questions = eta.shape
    n_nodes, levels = node_weight.shape[0], shares.shape[3]
    for s in numba.prange(n_draws):
        p = np.empty((n_questions, n_nodes, levels))
        exp_cut = np.empty((n_questions, max(levels - 1, 1)))
        for k in range(n_questions):
            exp_cut[k, 0] = 0.0
            if family == ORDINAL_LOGIT:
                _exp_cutpoints(cutpoints[:, k, :], s, exp_cut[k])
        for i in range(n_cells):
            g, w = group[i], count[i]
            _node_probabilities(family, eta, shift, cutpoints, exp_cut, s, i, p)
            for k in range(n_questions):
                for q in range(n_nodes):
                    for c in range(levels):
                        shares[s, g, k, c] += w * node_weight[q] * p[k, q, c]
            for t in range(pattern_question.shape[0]):
                patterns[s, g, t] += w * _pattern_probability(
                    p, node_weight, pattern_question[t], pattern_answer[t]
                )


@numba.njit(cache=True, inline="always")
def _node_probabilities(
    family: int,
    eta: np.ndarray,
    shift: np.ndarray,
    cutpoints: np.ndarray,
    exp_cut: np.ndarray,
    s: int,
    i: int,
    p: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Every answer's probability to each question at each node, ``p`` (K, Q, C), in cell ``i``."""
    for k in range(p.shape[0]):
        for q in range(p.shape[1]):
            x = eta[s, i, k] + shift[s, k, q]
            if family in (ORDINAL_LOGIT, ORDINAL_PROBIT):
                _cumulative(family, x, cutpoints[:, k, :], exp_cut[k], s, p[k, q])
            else:
                p[k, q, 1] = _cdf(family, x)
                p[k, q, 0] = 1.0 - p[k, q, 1]


@numba.njit(cache=True, inline="always")
def _pattern_probability(
    p: np.ndarray, node_weight: np.ndarray, questions: np.ndarray, answers: np.ndarray
) -> float:  # pragma: no cover - compiled
    """The node-weighted product of a pattern's answers' probabilities (``-1`` ends it)."""
    total = 0.0
    for q in range(node_weight.shape[0]):
        product = node_weight[q]
        for j in range(questions.shape[0]):
            if questions[j] < 0:
                break
            product *= p[questions[j], q, answers[j]]
        total += product
    return total


def log_likelihood(
    design: Design, draws: Draws, cell: np.ndarray, response: np.ndarray, chunk: int = 1000
) -> np.ndarray | None:
    """Each draw's ``log P(response[r] | cell[r])``, (draws, len(cell)); ``None`` if not covered.

    As ``log_probabilities(design, linear_predictor(draws, design), draws)[:, cell,
    response]`` (:mod:`opinionmap.predict`), to rounding, without the (draws x cells x
    answers) arrays. Covered: the families and links :class:`Kernel` covers, without
    a hurdle; ``None`` also when the kernel is switched off (:data:`SWITCH`).
    """
    kernel = Kernel.for_design(design, draws) if enabled() else None
    if kernel is None or kernel.hurdle:
        return None
    cells = _canonical_cells(kernel.cells(NewData(design.X, design.groups)))
    cell, response = _canonical(cell, np.int64), _canonical(response, np.int64)
    binary = kernel.family in (BERNOULLI_LOGIT, BERNOULLI_PROBIT)
    out = np.empty((draws.n_samples, len(cell)))
    for start in range(0, draws.n_samples, chunk):
        sl = slice(start, min(start + chunk, draws.n_samples))
        table, offset, cutpoints = (_canonical(a, float) for a in kernel.table(sl))
        if binary:  # the two-answer cumulative case, its one cutpoint at zero
            cutpoints = np.zeros((sl.stop - sl.start, 1))
        _pointwise(kernel.family, *cells, table, offset, cutpoints, cell, response, out[sl])
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pointwise(
    family: int,
    X: np.ndarray,
    unit: np.ndarray,
    scaled: np.ndarray,
    multipliers: np.ndarray,
    table: np.ndarray,
    offset: np.ndarray,
    cutpoints: np.ndarray,
    cell: np.ndarray,
    response: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """``out[s, r] = log P(response[r] | cell[r])`` in draw ``s``, in log space."""
    n_draws, n_cells, channels = table.shape[0], X.shape[1], table.shape[2]
    categorical = family == CATEGORICAL
    probit = family in (ORDINAL_PROBIT, BERNOULLI_PROBIT)
    n_answers = channels + 1 if categorical else cutpoints.shape[1] + 1
    eta = np.empty((channels, n_cells))
    logp = np.empty((n_cells, n_answers))
    for s in range(n_draws):
        _linear_predictors(s, 0, X, unit, scaled, multipliers, table, offset, eta)
        for i in range(n_cells):
            if categorical:
                # log P(k) = eta_k - log(1 + sum exp(eta)), shifted by the largest logit
                top = 0.0
                for c in range(channels):
                    top = max(top, eta[c, i])
                norm = math.exp(-top)
                for c in range(channels):
                    norm += math.exp(eta[c, i] - top)
                log_norm = top + math.log(norm)
                logp[i, 0] = -log_norm
                for c in range(channels):
                    logp[i, c + 1] = eta[c, i] - log_norm
            else:
                for j in range(n_answers):
                    logp[i, j] = _log_level(cutpoints[s], eta[0, i], j, probit)[0]
        for r in range(cell.shape[0]):
            out[s, r] = logp[cell[r], response[r]]
