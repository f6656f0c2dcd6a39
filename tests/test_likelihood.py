"""The compiled likelihood Ops (one question, joint model) against log-space references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_expit, log_ndtr, log_softmax, logsumexp

from opinionmap._likelihood import (
    TINY,
    categorical_loglik,
    cell_loglik,
    cumulative_loglik,
    joint_loglik,
    joint_loglik_op,
)
from opinionmap.joint import quadrature


def _reference(
    eta: np.ndarray,
    shift: np.ndarray,
    cut: np.ndarray,
    log_w: np.ndarray,
    row_cell: np.ndarray,
    answers: np.ndarray,
    row_count: np.ndarray,
    probit: bool,
    smallest: list[float] | None = None,
) -> float:
    """sum_r n_r log sum_q w_q prod_k P(answer), each P from log F in log space;
    ``smallest`` gets the smallest log P met."""
    log_f = log_ndtr if probit else log_expit
    total = 0.0
    for r, i in enumerate(row_cell):
        node = log_w.copy()
        for k, j in enumerate(answers[r]):
            if j < 0:
                continue
            x = eta[i, k] + shift[k]  # (Q,)
            bounds = np.concatenate([[-np.inf], cut[k], [np.inf]])
            a, b = bounds[j + 1] - x, bounds[j] - x
            # log(F(a) - F(b)), from the lower tail where both are above the middle
            flip = b > 0
            lo, hi = np.where(flip, -a, b), np.where(flip, -b, a)
            log_hi, log_lo = log_f(hi), log_f(lo)
            log_p = log_hi + np.log1p(-np.exp(log_lo - log_hi))
            if smallest is not None:
                smallest.append(float(log_p.min()))
            node = node + log_p
        total += row_count[r] * logsumexp(node)
    return float(total)


def _problem(
    seed: int, levels: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cells, k, rows = 7, 3, 25
    eta = scale * rng.normal(size=(cells, k))
    points, log_w = quadrature(1, 6)
    shift = rng.normal(0.0, 0.8, size=(k, 1)) @ points.T
    cut = np.sort(rng.normal(0.0, 1.5, size=(k, levels - 1)), axis=1)
    if levels == 2:
        cut = np.zeros((k, 1))
    row_cell = rng.integers(0, cells, rows)  # not sorted: the kernel recomputes as needed
    answers = rng.integers(-1, levels, size=(rows, k))
    answers[:, 0] = rng.integers(0, levels, rows)  # every row answers something
    row_count = rng.integers(1, 5, rows).astype(float)
    return eta, shift, cut, log_w, row_cell, answers, row_count


def _numeric_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        out[idx] = (f(up) - f(down)) / (2 * h)
    return out


@pytest.mark.parametrize("probit", [False, True], ids=["logit", "probit"])
@pytest.mark.parametrize("levels", [2, 3, 5])
@pytest.mark.parametrize("far", [False, True], ids=["typical", "far-tails"])
def test_value_and_gradient_equal_the_log_space_reference(
    probit: bool, levels: int, far: bool
) -> None:
    """The summed log-likelihood equals the log-space form to 1e-10 (relative) and each
    partial derivative its central difference, for 2, 3 and 5 answers, both links, with
    unanswered questions, rows out of cell order, and linear predictors far enough out
    (SD 40 probit, 500 logit) that answer probabilities fall below TINY (and the logit's
    exponentials would overflow), so the log-space path runs."""
    scale = (40.0 if probit else 500.0) if far else 1.0
    eta, shift, cut, log_w, row_cell, answers, row_count = _problem(levels + 10, levels, scale)
    args = (log_w, row_cell, answers, row_count, probit)
    total, d_eta, d_shift, d_cut = joint_loglik(eta, shift, cut, *args)
    smallest: list[float] = []
    expected = _reference(eta, shift, cut, *args, smallest)
    assert np.isfinite(expected)
    assert total == pytest.approx(expected, rel=1e-10)
    # far out, some probabilities are below TINY: the log-space path ran
    assert (min(smallest) < np.log(TINY)) == far
    inputs = [eta, shift, cut]
    for got, position in ((d_eta, 0), (d_shift, 1), (d_cut, 2)):

        def f(x: np.ndarray, position: int = position) -> float:
            moved = list(inputs)
            moved[position] = x
            return _reference(*moved, *args)

        if position == 2 and levels == 2:
            continue  # a yes/no question's cutpoint is fixed at zero
        numeric = _numeric_gradient(f, inputs[position])
        np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-5 * max(1.0, abs(total)) / 1e3)


def test_an_overflowing_linear_predictor_gives_the_exact_value() -> None:
    """Linear predictors of +-400 (exp() of them overflows) still give the log-space value."""
    eta, shift, cut, log_w, row_cell, answers, row_count = _problem(3, 3)
    eta[0] = 400.0
    eta[1] = -400.0
    row_cell[:4] = [0, 0, 1, 1]
    args = (log_w, row_cell, answers, row_count, False)
    total, d_eta, *_ = joint_loglik(eta, shift, cut, *args)
    assert total == pytest.approx(_reference(eta, shift, cut, *args), rel=1e-10)
    assert np.isfinite(d_eta).all()


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
def test_the_op_gives_the_kernels_value_and_its_gradient(mode: str) -> None:
    """In a PyTensor graph (numba, and Python's perform under the C backend) the Op's
    value is the kernel's and pytensor.grad of 2 x the value is twice its derivatives."""
    import pytensor
    import pytensor.tensor as pt

    eta, shift, cut, log_w, row_cell, answers, row_count = _problem(4, 4)
    e, s, c = pt.dmatrix("eta"), pt.dmatrix("shift"), pt.dmatrix("cut")
    total, *_ = joint_loglik_op("logit")(e, s, c, log_w, row_cell, answers, row_count)
    cost = 2.0 * total
    fn = pytensor.function([e, s, c], [cost, *pt.grad(cost, [e, s, c])], mode=mode)
    value, g_eta, g_shift, g_cut = fn(eta, shift, cut)
    expected = joint_loglik(eta, shift, cut, log_w, row_cell, answers, row_count, False)
    assert float(value) == pytest.approx(2.0 * expected[0], rel=1e-12)
    for got, want in zip((g_eta, g_shift, g_cut), expected[1:], strict=True):
        np.testing.assert_allclose(got, 2.0 * want, rtol=1e-12)


def test_the_op_refuses_an_unknown_link() -> None:
    with pytest.raises(ValueError, match="'cloglog'"):
        joint_loglik_op("cloglog")


# -- one question's cell likelihood ------------------------------------------------------
def _cumulative_reference(
    eta: np.ndarray, cut: np.ndarray, counts: np.ndarray, probit: bool
) -> float:
    """sum_ik n_ik log(F(c_k - eta_i) - F(c_k-1 - eta_i)), in log space from the lower tails."""
    log_f = log_ndtr if probit else log_expit
    bounds = np.concatenate([[-np.inf], cut, [np.inf]])
    a = bounds[None, 1:] - eta[:, None]  # (cells, K): upper bounds
    b = bounds[None, :-1] - eta[:, None]
    flip = b > 0
    lo, hi = np.where(flip, -a, b), np.where(flip, -b, a)
    with np.errstate(invalid="ignore"):
        log_p = log_f(hi) + np.log1p(-np.exp(log_f(lo) - log_f(hi)))
    return float(np.where(counts > 0, counts * log_p, 0.0).sum())


def _cell_problem(seed: int, levels: int, scale: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    cells = 9
    eta = scale * rng.normal(size=cells)
    cut = np.sort(rng.normal(0.0, 1.5, size=levels - 1))
    counts = rng.integers(0, 4, size=(cells, levels)).astype(float)
    counts[0] = 0.0  # an empty cell
    counts[1, -1] = 2.5  # survey-weighted counts need not be whole
    return eta, cut, counts


@pytest.mark.parametrize("probit", [False, True], ids=["logit", "probit"])
@pytest.mark.parametrize("levels", [2, 3, 5])
@pytest.mark.parametrize("scale", [1.0, 30.0, 400.0], ids=["typical", "tails", "far-tails"])
def test_cumulative_value_and_gradient_equal_the_log_space_reference(
    probit: bool, levels: int, scale: float
) -> None:
    """One question's ordinal log-likelihood equals the log-space form to 1e-10 and its
    partial derivatives in the predictors and cutpoints their central differences, with
    predictors far enough out (SD 400) that the logistic's exponentials overflow."""
    if probit and scale > 30.0:
        scale = 30.0  # log P of -scale**2 / 2: 80,000 has no digits left to differentiate
    eta, cut, counts = _cell_problem(levels + int(scale), levels, scale)
    total, d_eta, d_cut = cumulative_loglik(eta, cut, counts, probit)
    expected = _cumulative_reference(eta, cut, counts, probit)
    assert np.isfinite(expected)
    assert total == pytest.approx(expected, rel=1e-10)
    h = 1e-6 * max(1.0, scale / 30.0)
    tolerance = {"rtol": 1e-5, "atol": 1e-5 * max(1.0, abs(total)) / 1e3}
    numeric = _numeric_gradient(lambda x: _cumulative_reference(x, cut, counts, probit), eta, h)
    np.testing.assert_allclose(d_eta, numeric, **tolerance)
    assert d_eta[0] == 0.0  # the empty cell
    numeric = _numeric_gradient(lambda c: _cumulative_reference(eta, c, counts, probit), cut, h)
    np.testing.assert_allclose(d_cut, numeric, **tolerance)


def test_categorical_value_and_gradient_equal_scipys_log_softmax() -> None:
    """The softmax log-likelihood equals scipy's log_softmax times the counts, finite at
    predictors of +-800 (where exp overflows), and its gradient the central differences."""
    rng = np.random.default_rng(11)
    eta = rng.normal(scale=3.0, size=(8, 4))
    eta[0, 1], eta[1, 2] = 800.0, -800.0
    counts = rng.integers(0, 5, size=(8, 5)).astype(float)

    def reference(x: np.ndarray) -> float:
        full = np.concatenate([np.zeros((x.shape[0], 1)), x], axis=1)
        return float((counts * log_softmax(full, axis=1)).sum())

    total, d_eta = categorical_loglik(eta, counts)
    assert total == pytest.approx(reference(eta), rel=1e-12)
    np.testing.assert_allclose(
        d_eta, _numeric_gradient(reference, eta), rtol=1e-5, atol=1e-4 * abs(total) / 1e3
    )


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
@pytest.mark.parametrize("family", ["categorical", "ordinal", "bernoulli"])
def test_the_cell_op_gives_the_kernels_value_and_gradient(mode: str, family: str) -> None:
    """In a PyTensor graph the Op's value is the kernel's and pytensor.grad of 3 x the value
    is three times its derivatives; a yes/no question is the cumulative case at cut 0."""
    import pytensor
    import pytensor.tensor as pt

    eta, cut, counts = _cell_problem(5, 2 if family == "bernoulli" else 4, 1.0)
    c = pt.dvector("cut")
    if family == "categorical":
        e = pt.dmatrix("eta")
        eta = np.column_stack([eta, -eta, 0.5 * eta])
        wrt, values = [e], [eta]
        expected: tuple = categorical_loglik(eta, counts)
    elif family == "ordinal":
        e = pt.dvector("eta")
        wrt, values = [e, c], [eta, cut]
        expected = cumulative_loglik(eta, cut, counts, False)
    else:
        e = pt.dvector("eta")
        wrt, values = [e], [eta]
        expected = cumulative_loglik(eta, np.zeros(1), counts, False)[:2]
        assert expected[0] == pytest.approx(
            (counts[:, 0] * log_expit(-eta) + counts[:, 1] * log_expit(eta)).sum(), rel=1e-12
        )
    cost = 3.0 * cell_loglik(family, "logit", e, counts, c if family == "ordinal" else None)
    fn = pytensor.function(wrt, [cost, *pt.grad(cost, wrt)], mode=mode)
    value, *grads = fn(*values)
    assert float(value) == pytest.approx(3.0 * expected[0], rel=1e-12)
    for got, want in zip(grads, expected[1:], strict=True):
        np.testing.assert_allclose(got, 3.0 * want, rtol=1e-12)


@pytest.mark.parametrize(
    ("family", "link"), [("categorical", "logit"), ("ordinal", "logit"), ("ordinal", "probit"),
                         ("bernoulli", "logit"), ("bernoulli", "probit")]
)  # fmt: skip
def test_the_jax_form_gives_the_kernels_value_and_gradient(family: str, link: str) -> None:
    """sampler="numpyro" runs the Op through PyTensor's JAX backend: same value and gradient
    as the numba kernel to 1e-8, in the tails too (predictors of SD 20)."""
    pytest.importorskip("jax")
    import pytensor
    import pytensor.tensor as pt

    from opinionmap._likelihood import register_jax

    register_jax()
    eta, cut, counts = _cell_problem(6, 2 if family == "bernoulli" else 4, 20.0)
    e, c = pt.dvector("eta"), pt.dvector("cut")
    if family == "categorical":
        e = pt.dmatrix("eta")
        eta = np.column_stack([eta, -eta, 0.5 * eta])
    wrt = [e, c] if family == "ordinal" else [e]
    values = [eta, cut] if family == "ordinal" else [eta]
    total = cell_loglik(family, link, e, counts, c if family == "ordinal" else None)
    outputs = [total, *pt.grad(total, wrt)]
    jax_fn = pytensor.function(wrt, outputs, mode="JAX")
    numba_fn = pytensor.function(wrt, outputs, mode="NUMBA")
    got, want = jax_fn(*values), numba_fn(*values)
    # a derivative sums terms as large as the value's that cancel: absolute error ~1e-9 of it
    atol = 1e-9 * abs(float(want[0]))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-8, atol=atol)


def test_the_cell_likelihood_refuses_an_unknown_family_or_link() -> None:
    with pytest.raises(ValueError, match="'poisson'"):
        cell_loglik("poisson", "logit", np.zeros(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="'cauchit'"):
        cell_loglik("ordinal", "cauchit", np.zeros(3), np.ones((3, 2)), np.zeros(1))
