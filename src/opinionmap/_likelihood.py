"""Models' likelihoods and their gradients as compiled PyTensor Ops.

**One question** (:func:`opinionmap.model.build_model`): the cell-aggregated
log-likelihood ``sum_i sum_k n_ik log P(k | eta_i)`` over cells ``i`` and answers ``k``
with counts ``n_ik``, and its partial derivatives, in one pass of numba per call
(:func:`categorical_loglik`, :func:`cumulative_loglik`), where PyTensor's form (a
log-softmax, or log-differences of the link's distribution function, each with its
gradient graph) takes several passes over (cells x answers) arrays. Categorical:
``log P(k) = eta_ik - log(1 + sum_j exp(eta_ij))`` (reference answer's predictor 0),
shifted by the row's largest predictor. Cumulative logit: with ``u_j = c_j - eta``,
``log P(0) = u_0 - s(u_0)``, ``log P(K) = -s(u_K-1)`` and, between,
``log P(j) = u_j-1 + log expm1(c_j - c_j-1) - s(u_j-1) - s(u_j)`` with the softplus
``s(u) = log(1 + e^u)`` (one exponential and one logarithm per cell and cutpoint,
exact in both tails); probit in log space from ``erfc`` as below. A binary question is
the two-answer cumulative case with its cutpoint at zero. On the bundled survey the
ordinal models' log density and gradient take 0.26-0.53x the time they took with
PyTensor's form (``benchmarks/README.md``); ``tests/test_likelihood.py`` checks both
kernels against scipy's log-space functions and their gradients against
central differences.

**A joint model** (:func:`opinionmap.joint.build_joint_model`): the likelihood is, for
every (covariate cell, answer pattern) row ``r`` with ``n_r`` respondents,

    n_r log sum_q w_q prod_k P(answer_rk | eta_ck + s_kq)

over the Gauss-Hermite nodes ``q`` of the respondent trait (``s_kq``: question ``k``'s
shift at node ``q``, its loadings times the node) and the questions ``k`` the row
answered, with ``P`` the cumulative-link (or, for yes/no questions, the binary) answer
probability. As PyTensor operations (each answer's log-probability per cell, node and
question, a gather into the rows, a log-sum-exp over the nodes: some 450 nodes with
their gradient) the log density and its gradient take 1.7-2.5 ms on the bundled
survey; this Op computes the value and every partial derivative in one pass of numba
(:func:`joint_loglik`) and the whole takes 0.4 ms (docs/model.md section 13).
:func:`joint_row_logliks` gives each row's value per draw, for the log-likelihood
stored with a fit.

It works in probability space: with the logit link ``F(c - x) = t / (1 + t)`` for
``t = exp(c - eta) exp(-s)``, so the exponentials are taken once per cell and once per
node, not once per cell and node, and a middle answer's probability is
``F(c_j - x) - F(c_{j-1} - x) = t_{j-1} expm1(c_j - c_{j-1}) / ((1 + t_{j-1})(1 + t_j))``,
with no cancellation; with the probit link from ``erfc`` of ``|c - x|``, a difference
of two upper-tail probabilities taken as one of two lower-tail ones. A row any of whose
answer probabilities falls below :data:`TINY` (far out in a tail, where the product of
probabilities could underflow), or whose exponentials would overflow, is computed in
log space, as :func:`_cumulative_log_space` does. ``tests/test_likelihood.py``
checks the value against a log-space NumPy form to 1e-10 and every partial derivative
against central differences, in the tails too.

A binary question is the two-level case with its one cutpoint at zero: ``P(no) = F(-eta)``,
``P(yes) = F(eta)``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

__all__ = [
    "categorical_loglik",
    "cell_loglik",
    "cumulative_loglik",
    "joint_loglik",
    "joint_loglik_op",
    "joint_row_logliks",
    "register_jax",
]

# an answer probability below this sends its row to the log-space path
TINY = 1e-150
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# a cell or node whose exponent exceeds this in size (exp(300) = 2e130) goes to the
# log-space path: products of two such exponentials stay finite
_CLIP = 300.0


@numba.njit(cache=True, inline="always", error_model="numpy")
def _log1mexp(x: float) -> float:  # pragma: no cover - compiled
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and far below it."""
    if x > -0.6931471805599453:
        return math.log(-math.expm1(x))
    return math.log1p(-math.exp(x))


@numba.njit(cache=True, inline="always", error_model="numpy")
def _log_cdf(u: float, probit: bool) -> float:  # pragma: no cover - compiled
    """``log F(u)``: logistic or standard normal, accurate in both tails."""
    if not probit:
        return -(max(-u, 0.0) + math.log1p(math.exp(-abs(u))))
    if u >= 0.0:
        return math.log1p(-0.5 * math.erfc(u / _SQRT2))
    if u > -37.0:
        return math.log(0.5 * math.erfc(-u / _SQRT2))
    # Mills' ratio series: erfc underflows from here on
    z = 1.0 / (u * u)
    series = 1.0 - z * (1.0 - z * (3.0 - z * (15.0 - 105.0 * z)))
    return -0.5 * u * u - _LOG_SQRT_2PI - math.log(-u) + math.log(series)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _log_pdf(u: float, probit: bool) -> float:  # pragma: no cover - compiled
    """``log f(u)``, the density of the link's distribution."""
    if probit:
        return -0.5 * u * u - _LOG_SQRT_2PI
    e = math.exp(-abs(u))
    return -abs(u) - 2.0 * math.log1p(e)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _log_level(
    cut: np.ndarray, x: float, j: int, probit: bool
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """Answer ``j``'s ``log P`` at linear predictor ``x``, and ``f/P`` at its two cutpoints.

    ``f/P`` is the derivative of ``log P`` with respect to the upper cutpoint (zero for
    the last answer) and minus that with respect to the lower one (zero for the first).
    """
    c = cut.shape[0]
    if j == 0:
        a = cut[0] - x
        log_p = _log_cdf(a, probit)
        return log_p, math.exp(_log_pdf(a, probit) - log_p), 0.0
    if j == c:
        b = cut[c - 1] - x
        log_p = _log_cdf(-b, probit)
        return log_p, 0.0, math.exp(_log_pdf(b, probit) - log_p)
    a, b = cut[j] - x, cut[j - 1] - x
    if b > 0.0:  # both in the upper tail, where F rounds to 1: F(-b) - F(-a) instead
        log_a, log_b = _log_cdf(-b, probit), _log_cdf(-a, probit)
    else:
        log_a, log_b = _log_cdf(a, probit), _log_cdf(b, probit)
    log_p = log_a + _log1mexp(log_b - log_a)
    return log_p, math.exp(_log_pdf(a, probit) - log_p), math.exp(_log_pdf(b, probit) - log_p)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cell_table(
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    node_exp: np.ndarray,
    gaps: np.ndarray,
    probit: bool,
    prob: np.ndarray,
    dens: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """One cell's answer probabilities ``prob`` (K, Q, C + 1) and densities ``dens`` (K, Q, C).

    ``eta`` (K,): the cell's linear predictors; ``dens[k, q, j] = f(u)`` and the answers'
    probabilities from ``F(u)`` at ``u = cut[k, j] - eta[k] - shift[k, q]``. Logit:
    ``node_exp`` and ``gaps`` from :func:`_node_factors`.
    """
    if probit:
        _probit_table(eta, shift, cut, prob, dens)
    else:
        _logit_table(eta, cut, node_exp, gaps, prob, dens)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _probit_table(
    eta: np.ndarray, shift: np.ndarray, cut: np.ndarray, prob: np.ndarray, dens: np.ndarray
) -> None:  # pragma: no cover - compiled
    """:func:`_cell_table` for the probit link: each difference of F from its smaller tails."""
    k_q, n_nodes = shift.shape
    c = cut.shape[1]
    for k in range(k_q):
        for q in range(n_nodes):
            x = eta[k] + shift[k, q]
            for j in range(c):
                u = cut[k, j] - x
                dens[k, q, j] = _INV_SQRT_2PI * math.exp(-0.5 * u * u)
                # F(-|u|), kept in prob[j + 1] until the differences are taken
                prob[k, q, j + 1] = 0.5 * math.erfc(abs(u) / _SQRT2)
            below = prob[k, q, 1] if cut[k, 0] - x < 0.0 else 1.0 - prob[k, q, 1]
            for j in range(1, c):
                a, b = cut[k, j] - x, cut[k, j - 1] - x
                tail_a, tail_b = prob[k, q, j + 1], prob[k, q, j]
                if b >= 0.0:  # two upper-tail values: F(a) - F(b) = F(-b) - F(-a)
                    prob[k, q, j] = tail_b - tail_a
                elif a <= 0.0:
                    prob[k, q, j] = tail_a - tail_b
                else:
                    prob[k, q, j] = 1.0 - tail_a - tail_b
            last = prob[k, q, c]
            prob[k, q, c] = last if cut[k, c - 1] - x > 0.0 else 1.0 - last
            prob[k, q, 0] = below


@numba.njit(cache=True, inline="always", error_model="numpy")
def _logit_table(
    eta: np.ndarray,
    cut: np.ndarray,
    node_exp: np.ndarray,
    gaps: np.ndarray,
    prob: np.ndarray,
    dens: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """:func:`_cell_table` for the logit link, from ``t = exp(cut - eta) exp(-shift)``.

    Where an exponent is beyond :data:`_CLIP` the probabilities are left NaN, which sends
    the cell's rows to the log-space path.
    """
    k_q, n_nodes = node_exp.shape
    c = cut.shape[1]
    cell_exp = np.empty(c)
    for k in range(k_q):
        far = False
        for j in range(c):
            far = far or abs(cut[k, j] - eta[k]) > _CLIP
            cell_exp[j] = math.exp(cut[k, j] - eta[k]) if not far else 0.0
        for q in range(n_nodes):
            # F(u) = t / (1 + t), f(u) = t / (1 + t)^2
            t_prev = cell_exp[0] * node_exp[k, q]
            inv_prev = 1.0 / (1.0 + t_prev)
            prob[k, q, 0] = t_prev * inv_prev
            dens[k, q, 0] = t_prev * inv_prev * inv_prev
            for j in range(1, c):
                t = cell_exp[j] * node_exp[k, q]
                inv = 1.0 / (1.0 + t)
                # F(u_j) - F(u_{j-1}) = t_{j-1} (exp(gap) - 1) / ((1 + t_{j-1})(1 + t_j))
                prob[k, q, j] = t_prev * gaps[k, j] * inv_prev * inv
                dens[k, q, j] = t * inv * inv
                t_prev, inv_prev = t, inv
            prob[k, q, c] = inv_prev
            if far:
                prob[k, q, :] = np.nan


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _node_factors(
    shift: np.ndarray, cut: np.ndarray, probit: bool
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The logit table's ``node_exp = exp(-shift)`` (K, Q) and ``gaps`` (K, C), once per call.

    ``gaps[k, j] = expm1(cut[k, j] - cut[k, j - 1])``; ``node_exp`` is NaN for a question
    with a shift beyond :data:`_CLIP`, which sends its rows to the log-space path.
    """
    k_q, n_nodes = shift.shape
    c = cut.shape[1]
    node_exp = np.empty((k_q, n_nodes))
    gaps = np.zeros((k_q, c))
    if not probit:
        for k in range(k_q):
            far = False
            for q in range(n_nodes):
                far = far or abs(shift[k, q]) > _CLIP
            for q in range(n_nodes):
                node_exp[k, q] = math.exp(-shift[k, q]) if not far else np.nan
            for j in range(1, c):
                gaps[k, j] = math.expm1(min(cut[k, j] - cut[k, j - 1], 2.0 * _CLIP))
    return node_exp, gaps


@numba.njit(cache=True, inline="always", error_model="numpy")
def _row(
    answers: np.ndarray,
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    weights: np.ndarray,
    prob: np.ndarray,
    dens: np.ndarray,
    probit: bool,
    node: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
) -> float:  # pragma: no cover - compiled
    """One row's log-likelihood ``log sum_q w_q prod_k P_k``, from its cell's tables.

    ``answers`` (K,) and ``eta`` (K,): the row's answers (-1: none) and its cell's linear
    predictors; ``weights = exp(log_w)``. Leaves each node's posterior weight in ``node``
    (Q,) and, per (question, node), ``d log P / d(upper cutpoint)`` in ``upper`` and
    ``d log P / d(lower cutpoint)`` in ``lower`` (K, Q). In probability space unless a
    probability is below :data:`TINY`, then in log space.
    """
    k_q, n_nodes = shift.shape
    c = cut.shape[1]
    exact = True
    for q in range(n_nodes):
        node[q] = weights[q]
    for k in range(k_q):
        j = answers[k]
        if j < 0:
            continue
        for q in range(n_nodes):
            p = prob[k, q, j]
            if p >= TINY:
                node[q] *= p
                inv = 1.0 / p
                upper[k, q] = dens[k, q, j] * inv if j < c else 0.0
                lower[k, q] = dens[k, q, j - 1] * inv if j > 0 else 0.0
            else:  # NaN included
                exact = False
    norm = 0.0
    if exact:
        for q in range(n_nodes):
            norm += node[q]
    if not norm >= TINY:
        return _row_in_log_space(answers, eta, shift, cut, log_w, probit, node, upper, lower)
    for q in range(n_nodes):
        node[q] /= norm
    return math.log(norm)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _row_in_log_space(
    answers: np.ndarray,
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    probit: bool,
    node: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
) -> float:  # pragma: no cover - compiled
    """:func:`_row` far in a tail: every answer's probability in log space."""
    k_q, n_nodes = shift.shape
    for q in range(n_nodes):
        node[q] = log_w[q]
    for k in range(k_q):
        j = answers[k]
        if j < 0:
            continue
        for q in range(n_nodes):
            log_p, up, low = _log_level(cut[k], eta[k] + shift[k, q], j, probit)
            node[q] += log_p
            upper[k, q] = up
            lower[k, q] = low
    top = node[0]
    for q in range(1, n_nodes):
        top = max(top, node[q])
    norm = 0.0
    for q in range(n_nodes):
        norm += math.exp(node[q] - top)
    lse = top + math.log(norm)
    for q in range(n_nodes):
        node[q] = math.exp(node[q] - lse)
    return lse


@numba.njit(cache=True, nogil=True, error_model="numpy")
def joint_loglik(
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    row_cell: np.ndarray,
    answers: np.ndarray,
    row_count: np.ndarray,
    probit: bool,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The log-likelihood and its gradient with respect to ``eta``, ``shift`` and ``cut``.

    ``eta`` (cells, K): each cell's linear predictor by question, the trait left out;
    ``shift`` (K, Q): each question's shift at each node; ``cut`` (K, C): cutpoints,
    increasing; ``log_w`` (Q,): the nodes' log-weights; ``row_cell`` (R,), ``answers``
    (R, K) (-1: not answered) and ``row_count`` (R,): the (cell, pattern) rows, fastest
    when sorted by cell (a cell's probabilities are computed when its rows begin).
    """
    n_cells, k_q = eta.shape
    n_nodes = shift.shape[1]
    c = cut.shape[1]
    node_exp, gaps = _node_factors(shift, cut, probit)
    prob = np.empty((k_q, n_nodes, c + 1))
    dens = np.empty((k_q, n_nodes, c))
    weights = np.exp(log_w)
    total = 0.0
    d_eta = np.zeros((n_cells, k_q))
    d_shift = np.zeros((k_q, n_nodes))
    d_cut = np.zeros((k_q, c))
    node = np.empty(n_nodes)
    upper = np.empty((k_q, n_nodes))
    lower = np.empty((k_q, n_nodes))
    current = -1
    for r in range(row_cell.shape[0]):
        i = row_cell[r]
        if i != current:
            _cell_table(eta[i], shift, cut, node_exp, gaps, probit, prob, dens)
            current = i
        lse = _row(
            answers[r], eta[i], shift, cut, log_w, weights, prob, dens, probit, node, upper, lower
        )
        n = row_count[r]
        total += n * lse
        for k in range(k_q):
            j = answers[r, k]
            if j < 0:
                continue
            for q in range(n_nodes):
                weight = n * node[q]
                # P = F(c_j - x) - F(c_{j-1} - x): d log P/dx = -(upper - lower)
                dx = -weight * (upper[k, q] - lower[k, q])
                d_eta[i, k] += dx
                d_shift[k, q] += dx
                if j < c:
                    d_cut[k, j] += weight * upper[k, q]
                if j > 0:
                    d_cut[k, j - 1] -= weight * lower[k, q]
    return total, d_eta, d_shift, d_cut


@numba.njit(cache=True, nogil=True, error_model="numpy")
def joint_row_logliks(
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    row_cell: np.ndarray,
    answers: np.ndarray,
    probit: bool,
) -> np.ndarray:  # pragma: no cover - compiled
    """Each row's log-likelihood per draw, (S, R); without the GIL, so threads can share draws.

    As :func:`joint_loglik` for each draw, with a draw axis first on ``eta`` (S, cells,
    K), ``shift`` (S, K, Q) and ``cut`` (S, K, C).
    """
    n_draws, _, k_q = eta.shape
    n_nodes = shift.shape[2]
    c = cut.shape[2]
    n_rows = row_cell.shape[0]
    out = np.empty((n_draws, n_rows))
    weights = np.exp(log_w)
    for s in range(n_draws):
        node_exp, gaps = _node_factors(shift[s], cut[s], probit)
        prob = np.empty((k_q, n_nodes, c + 1))
        dens = np.empty((k_q, n_nodes, c))
        node = np.empty(n_nodes)
        upper = np.empty((k_q, n_nodes))
        lower = np.empty((k_q, n_nodes))
        current = -1
        for r in range(n_rows):
            i = row_cell[r]
            if i != current:
                _cell_table(eta[s, i], shift[s], cut[s], node_exp, gaps, probit, prob, dens)
                current = i
            out[s, r] = _row(
                answers[r],
                eta[s, i],
                shift[s],
                cut[s],
                log_w,
                weights,
                prob,
                dens,
                probit,
                node,
                upper,
                lower,
            )
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _logit_kernel(
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    row_cell: np.ndarray,
    answers: np.ndarray,
    row_count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    total, d_eta, d_shift, d_cut = joint_loglik(
        eta, shift, cut, log_w, row_cell, answers, row_count, False
    )
    return np.array(total), d_eta, d_shift, d_cut


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _probit_kernel(
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    row_cell: np.ndarray,
    answers: np.ndarray,
    row_count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    total, d_eta, d_shift, d_cut = joint_loglik(
        eta, shift, cut, log_w, row_cell, answers, row_count, True
    )
    return np.array(total), d_eta, d_shift, d_cut


@numba.njit(cache=True, inline="always", error_model="numpy")
def _softplus(u: float) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """``log(1 + e^u)``, ``F(u)`` and ``F(-u)`` for the logistic ``F``, with one exponential."""
    t = math.exp(-abs(u))
    inv = 1.0 / (1.0 + t)
    if u >= 0.0:
        return u + math.log1p(t), inv, t * inv
    return math.log1p(t), t * inv, inv


@numba.njit(cache=True, nogil=True, error_model="numpy")
def categorical_loglik(
    eta: np.ndarray, counts: np.ndarray
) -> tuple[float, np.ndarray]:  # pragma: no cover - compiled
    """``sum_ik n_ik log P(k | eta_i)`` under the softmax, and its gradient in ``eta``.

    ``eta`` (cells, K - 1): the non-reference answers' linear predictors (the reference
    answer's is 0); ``counts`` (cells, K), the reference answer first.
    """
    n_cells, k1 = eta.shape
    d_eta = np.empty((n_cells, k1))
    e = np.empty(k1)
    total = 0.0
    for i in range(n_cells):
        top = 0.0
        for k in range(k1):
            top = max(top, eta[i, k])
        norm = math.exp(-top)
        size = counts[i, 0]
        linear = 0.0
        for k in range(k1):
            e[k] = math.exp(eta[i, k] - top)
            norm += e[k]
            size += counts[i, k + 1]
            linear += counts[i, k + 1] * eta[i, k]
        total += linear - size * (top + math.log(norm))
        scale = size / norm
        for k in range(k1):
            d_eta[i, k] = counts[i, k + 1] - e[k] * scale
    return total, d_eta


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cumulative_loglik(
    eta: np.ndarray, cut: np.ndarray, counts: np.ndarray, probit: bool
) -> tuple[float, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``sum_ik n_ik log P(k | eta_i)`` under the cumulative link, and its gradient.

    ``eta`` (cells,); ``cut`` (K - 1,), increasing; ``counts`` (cells, K). Returns the
    value and its partial derivatives in ``eta`` and ``cut``.
    """
    if probit:
        return _cumulative_log_space(eta, cut, counts, True)
    n_cells = eta.shape[0]
    c = cut.shape[0]
    # log expm1(gap) and its derivative 1 / (1 - exp(-gap)), once per call
    log_gap = np.zeros(c)
    d_gap = np.zeros(c)
    for j in range(1, c):
        gap = cut[j] - cut[j - 1]
        log_gap[j] = gap + _log1mexp(-gap)
        d_gap[j] = -1.0 / math.expm1(-gap)
    soft = np.empty(c)
    up = np.empty(c)
    down = np.empty(c)
    d_eta = np.empty(n_cells)
    d_cut = np.zeros(c)
    total = 0.0
    for i in range(n_cells):
        x = eta[i]
        for j in range(c):
            soft[j], up[j], down[j] = _softplus(cut[j] - x)
        dx = 0.0
        n = counts[i, 0]
        if n != 0.0:  # log F(u_0) = u_0 - s(u_0): d/du_0 = F(-u_0)
            total += n * (cut[0] - x - soft[0])
            d_cut[0] += n * down[0]
            dx -= n * down[0]
        for j in range(1, c):
            n = counts[i, j]
            if n != 0.0:
                total += n * (cut[j - 1] - x + log_gap[j] - soft[j - 1] - soft[j])
                lower, upper, gap = n * down[j - 1], n * up[j], n * d_gap[j]
                d_cut[j - 1] += lower - gap
                d_cut[j] += gap - upper
                dx += upper - lower
        n = counts[i, c]
        if n != 0.0:  # log F(-u) = -s(u): d/du = -F(u)
            total -= n * soft[c - 1]
            d_cut[c - 1] -= n * up[c - 1]
            dx += n * up[c - 1]
        d_eta[i] = dx
    return total, d_eta, d_cut


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cumulative_log_space(
    eta: np.ndarray, cut: np.ndarray, counts: np.ndarray, probit: bool
) -> tuple[float, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """:func:`cumulative_loglik` answer by answer with :func:`_log_level` (the probit link)."""
    n_cells = eta.shape[0]
    c = cut.shape[0]
    d_eta = np.empty(n_cells)
    d_cut = np.zeros(c)
    total = 0.0
    for i in range(n_cells):
        dx = 0.0
        for j in range(c + 1):
            n = counts[i, j]
            if n == 0.0:
                continue
            log_p, upper, lower = _log_level(cut, eta[i], j, probit)
            total += n * log_p
            dx -= n * (upper - lower)
            if j < c:
                d_cut[j] += n * upper
            if j > 0:
                d_cut[j - 1] -= n * lower
        d_eta[i] = dx
    return total, d_eta, d_cut


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _categorical_kernel(
    eta: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    total, d_eta = categorical_loglik(eta, counts)
    return np.array(total), d_eta


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cumulative_logit_kernel(
    eta: np.ndarray, cut: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    total, d_eta, d_cut = cumulative_loglik(eta, cut, counts, False)
    return np.array(total), d_eta, d_cut


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cumulative_probit_kernel(
    eta: np.ndarray, cut: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    total, d_eta, d_cut = cumulative_loglik(eta, cut, counts, True)
    return np.array(total), d_eta, d_cut


def _source_version() -> int:
    """A number that changes with this file, salting PyTensor's cache key for the Op.

    PyTensor keys a compiled Op by its class and properties; numba does not notice a
    change in a function that a cached one calls. Keying on the source keeps an edited
    kernel from being loaded stale.
    """
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return int(digest[:12], 16)


_VERSION = _source_version()


def _check_link(link: str) -> str:
    if link not in ("logit", "probit"):
        raise ValueError(f"link must be 'logit' or 'probit', not {link!r}")
    return link


def _pullback(outputs: Any, cotangents: Any, n_data: int) -> list[Any]:
    """The value's cotangent times an Op's stored partial derivatives; none for the data."""
    from pytensor.gradient import DisconnectedType, disconnected_type

    for g in cotangents[1:]:
        if not isinstance(g.type, DisconnectedType):
            raise NotImplementedError("a likelihood Op's derivatives are not differentiable")
    g = cotangents[0]
    return [*(g * d for d in outputs[1:]), *(disconnected_type() for _ in range(n_data))]


def _joint_op_class() -> Any:
    """The joint model's Op class, defined on first use: importing PyTensor is slow."""
    global _JOINT_OP
    if _JOINT_OP is not None:
        return _JOINT_OP

    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    class JointLoglik(Op):
        """``(loglik, d_eta, d_shift, d_cut) = JointLoglik(link)(eta, shift, cut, ...)``.

        The first output is the summed log-likelihood; the others its partial
        derivatives, which :meth:`pullback` multiplies by the incoming gradient.
        """

        __props__ = ("link",)

        def __init__(self, link: str) -> None:
            self.link = _check_link(link)

        def make_node(self, *inputs: Any) -> Apply:
            eta, shift, cut, log_w, row_cell, answers, row_count = (
                pt.as_tensor_variable(x) for x in inputs
            )
            outputs = [pt.dscalar(), pt.dmatrix(), pt.dmatrix(), pt.dmatrix()]
            return Apply(self, [eta, shift, cut, log_w, row_cell, answers, row_count], outputs)

        def perform(self, node: Apply, inputs: Sequence[Any], outputs: Any) -> None:
            kernel: Any = _probit_kernel if self.link == "probit" else _logit_kernel
            results = kernel(
                *(np.asarray(x, dtype=float) for x in inputs[:4]),
                np.asarray(inputs[4], dtype=np.int64),
                np.asarray(inputs[5], dtype=np.int64),
                np.asarray(inputs[6], dtype=float),
            )
            for store, value in zip(outputs, results, strict=True):
                store[0] = value

        def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
            return _pullback(outputs, cotangents, 4)

        def connection_pattern(self, node: Apply) -> list[list[bool]]:
            # the data (log-weights, rows, answers, counts) are constants of the model
            return [[True] * 4] * 3 + [[False] * 4] * 4

    @register_funcify_default_op_cache_key(JointLoglik)
    def _funcify(op: JointLoglik, **kwargs: Any) -> tuple[Any, int]:
        return (_probit_kernel if op.link == "probit" else _logit_kernel), _VERSION

    _JOINT_OP = JointLoglik
    return _JOINT_OP


def _cell_kernel(family: str, link: str) -> Any:
    """The numba kernel of :class:`CellLoglik`: (value, derivatives) of its inputs."""
    if family == "categorical":
        return _categorical_kernel
    return _cumulative_probit_kernel if link == "probit" else _cumulative_logit_kernel


def _cell_op_class() -> Any:
    """One question's Op class, defined on first use: importing PyTensor is slow."""
    global _CELL_OP
    if _CELL_OP is not None:
        return _CELL_OP

    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    class CellLoglik(Op):
        """``(loglik, d_eta[, d_cut]) = CellLoglik(family, link)(eta[, cut], counts)``.

        ``family``: ``"categorical"`` (``eta`` a matrix) or ``"cumulative"`` (``eta`` a
        vector, with the cutpoints); the counts are data, not differentiated.
        """

        __props__ = ("family", "link")

        def __init__(self, family: str, link: str = "logit") -> None:
            if family not in ("categorical", "cumulative"):
                raise ValueError(f"family must be 'categorical' or 'cumulative', not {family!r}")
            self.family = family
            self.link = _check_link(link)

        def make_node(self, *inputs: Any) -> Apply:
            tensors = [pt.as_tensor_variable(x).astype("float64") for x in inputs]
            # the value, then the derivatives in eta (a matrix: categorical) and the cutpoints
            categorical = self.family == "categorical"
            outputs = (
                [pt.dscalar(), pt.dmatrix()] if categorical else [pt.dscalar(), *pt.dvectors(2)]
            )
            if len(tensors) != len(outputs):
                raise TypeError(f"CellLoglik({self.family!r}) takes {len(outputs)} inputs")
            return Apply(self, tensors, outputs)

        def perform(self, node: Apply, inputs: Sequence[Any], outputs: Any) -> None:
            kernel = _cell_kernel(self.family, self.link)
            results = kernel(*(np.asarray(x, dtype=float) for x in inputs))
            for store, value in zip(outputs, results, strict=True):
                store[0] = value

        def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
            return _pullback(outputs, cotangents, 1)

        def connection_pattern(self, node: Apply) -> list[list[bool]]:
            # every input but the counts (the last) is differentiated
            n_out = len(node.outputs)
            return [[True] * n_out] * (len(node.inputs) - 1) + [[False] * n_out]

    @register_funcify_default_op_cache_key(CellLoglik)
    def _funcify(op: CellLoglik, **kwargs: Any) -> tuple[Any, int]:
        return _cell_kernel(op.family, op.link), _VERSION

    _CELL_OP = CellLoglik
    return _CELL_OP


_JOINT_OP: Any = None
_CELL_OP: Any = None


def joint_loglik_op(link: str) -> Any:
    """The Op for ``link``: call it on the seven inputs of :func:`joint_loglik`."""
    return _joint_op_class()(link)


def cell_loglik(family: str, link: str, eta: Any, counts: Any, cut: Any = None) -> Any:
    """One question's summed log-likelihood over its cells, a PyTensor scalar.

    ``family``: ``"categorical"`` (``eta`` (cells, K - 1)), ``"ordinal"`` (``eta``
    (cells,), ``cut`` the K - 1 cutpoints) or ``"bernoulli"`` (``eta`` (cells,), the
    cumulative model with one cutpoint at zero); ``counts`` (cells, K).
    """
    cell_op = _cell_op_class()
    if family == "categorical":
        return cell_op("categorical")(eta, counts)[0]
    if family == "bernoulli":
        cut = np.zeros(1)
    elif family != "ordinal":
        raise ValueError(f"family must be 'categorical', 'ordinal' or 'bernoulli', not {family!r}")
    return cell_op("cumulative", link)(eta, cut, counts)[0]


def register_jax() -> None:
    """Give PyTensor's JAX backend the one-question Op (``sampler="numpyro"``).

    The same log-likelihood in ``jax.numpy`` (the cumulative link in log space as in
    :func:`_cumulative_log_space`), its derivatives by JAX's autodiff. Imports JAX, so it
    is called only where a JAX sampler is asked for.
    """
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import log_ndtr
    from pytensor.link.jax.dispatch import jax_funcify

    def log1mexp(x: Any) -> Any:
        # each branch sees only its own inputs, so neither gives a NaN derivative
        near = x > -math.log(2.0)
        return jnp.where(
            near,
            jnp.log(-jnp.expm1(jnp.where(near, x, -1.0))),
            jnp.log1p(-jnp.exp(jnp.where(near, -1.0, x))),
        )

    def categorical(eta: Any, counts: Any) -> Any:
        full = jnp.concatenate([jnp.zeros_like(eta[:, :1]), eta], axis=1)
        return jnp.sum(counts * jax.nn.log_softmax(full, axis=1))

    def cumulative(log_f: Any) -> Any:
        def loglik(eta: Any, cut: Any, counts: Any) -> Any:
            upper = cut[None, :] - eta[:, None]
            a, b = upper[:, 1:], upper[:, :-1]
            # F(a) - F(b) = F(-b) - F(-a), from the lower tails
            mirror = b > 0.0
            a, b = jnp.where(mirror, -b, a), jnp.where(mirror, -a, b)
            log_a = log_f(a)
            middle = log_a + log1mexp(log_f(b) - log_a)
            log_p = jnp.concatenate([log_f(upper[:, :1]), middle, log_f(-upper[:, -1:])], axis=1)
            return jnp.sum(counts * log_p)

        return loglik

    @jax_funcify.register(_cell_op_class())
    def _funcify(op: Any, **kwargs: Any) -> Any:
        # differentiated: eta, and the cutpoints of a cumulative model
        wrt: tuple[int, ...] = (0,) if op.family == "categorical" else (0, 1)
        if op.family == "categorical":
            loglik = categorical
        else:
            loglik = cumulative(log_ndtr if op.link == "probit" else jax.nn.log_sigmoid)
        value_and_grad = jax.value_and_grad(loglik, argnums=wrt)

        def cell_loglik(*inputs: Any) -> tuple[Any, ...]:
            value, grads = value_and_grad(*inputs)
            return (value, *grads)

        return cell_loglik

    _JAX_REGISTERED = True


_JAX_REGISTERED = False
