"""Fitting: sample a model with nutpie (or PyMC's or NumPyro's NUTS) and check convergence.

:func:`fit` builds the design and its parameterisation plan, compiles and samples
the PyMC model, stores every respondent's pointwise log-likelihood (for LOO) and
returns a :class:`~opinionmap.results.FitResult`. This is the only module that
needs PyMC, PyTensor, nutpie or numba; loading and using a fit does not
(:mod:`opinionmap.results`).
"""

from __future__ import annotations

import json
import logging
import platform
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import numpy as np
import xarray as xr

from opinionmap.design import Design, SurveyData, build_design, merged_line
from opinionmap.diagnostics import ConvergenceWarning, diagnose
from opinionmap.errors import OpinionmapError
from opinionmap.model import build_model
from opinionmap.plan import Plan, make_plan
from opinionmap.predict import Draws, linear_predictor, log_probabilities
from opinionmap.progress import FitProgress
from opinionmap.results import FitResult, checksum
from opinionmap.spec import DEFAULT_SAMPLING, ModelSpec, Sampling

__all__ = ["FitInterrupted", "fit"]

LogLikelihood = Literal["auto", "respondent", "pattern"]
# what the fit is doing, for a command line or a log (the library itself prints nothing)
_log = logging.getLogger("opinionmap")
# store respondent-level log-likelihood up to this many values (draws x respondents)
RESPONDENT_LOGLIK_MAX = 50_000_000
# draws in all chains together when the plan pairs two confounded grouping terms and
# nothing sets draws: 2,000 a chain with the default 4 chains, 4,000 with 2 (docs/model.md
# section 6: their SDs mix slowly; 2 x 2,000 left a large survey at R-hat 1.011-1.019)
CONFOUNDED_DRAWS = 8_000
CONFOUNDED_TARGET_ACCEPT = 0.99
# nutpie models compiled in this process, newest last: the same model refitted (another
# seed, more draws) skips compiling (2-5 s with the disk cache, 8-40 s without)
_COMPILED_CACHE_SIZE = 4
_compiled: OrderedDict[str, Any] = OrderedDict()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("opinionmap", "pymc", "pytensor", "arviz", "nutpie", "numpy", "pandas", "xarray"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def fit(
    spec: ModelSpec,
    survey: SurveyData,
    *,
    sampling: Sampling | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    cores: int | None = None,
    random_seed: int | None = None,
    sampler: str | None = None,
    target_accept: float | None = None,
    adaptation: str | None = None,
    progress: bool = True,
    on_progress: Callable[[FitProgress], None] | None = None,
    log_likelihood: LogLikelihood = "auto",
    warn: bool = True,
    aggregate: bool = True,
    partial: bool = False,
) -> FitResult:
    """Fit a model to survey data.

    Parameters
    ----------
    spec
        The model (:class:`~opinionmap.spec.ModelSpec` or ``read_spec(path)``).
    survey
        A :class:`~opinionmap.Survey` or a DataFrame with the formula's columns.
    sampling
        Sampler settings (:class:`~opinionmap.spec.Sampling`), laid over the spec's
        ``[sampling]`` table; the keyword arguments below are laid over both, and
        what is left open takes the defaults (4 chains x 1,000 draws after 1,000
        tuning steps, nutpie, target acceptance 0.95, a low-rank mass matrix for
        ordinal and bernoulli models and a diagonal one for categorical models;
        8,000 draws in all chains at target acceptance 0.99 where the plan pairs two
        confounded grouping terms and draws are not set, :data:`CONFOUNDED_DRAWS`:
        2,000 a chain with 4 chains, 4,000 with 2).
    draws, tune, chains, cores, sampler, target_accept, adaptation
        The same settings one by one (see :class:`~opinionmap.spec.Sampling`).
    random_seed
        Seed; the same seed and data give identical draws. ``None`` draws one
        and records it in the result's attributes.
    progress
        Show a progress bar while sampling.
    on_progress
        Called with a :class:`~opinionmap.progress.FitProgress` as the fit
        compiles, warms up and samples (a few times a second, from another
        thread, with the draws done and the divergences so far) and summarises.
    log_likelihood
        ``"respondent"`` stores each respondent's pointwise log-likelihood;
        ``"pattern"`` one value per distinct (cell, answer), which respondents with
        that cell and answer share; ``"auto"`` (default) stores respondents unless
        draws x respondents exceeds 50 million. Either way
        :meth:`~opinionmap.results.FitResult.loo` is the respondent-level PSIS-LOO.
    warn
        Emit a :class:`~opinionmap.diagnostics.ConvergenceWarning` when the fit
        did not converge.
    aggregate
        ``True`` (default) evaluates the likelihood on covariate cells;
        ``False`` on respondents (the same log-density, more slowly; for checks).
    partial
        When sampling is interrupted (Ctrl-C): ``False`` (default) raises
        :class:`FitInterrupted`, which carries the draws so far; ``True`` returns
        them as a fit marked partial, whose verdict says it did not converge.

    Raises
    ------
    FitInterrupted
        Sampling was interrupted and ``partial`` is false.

    Examples
    --------
    >>> import opinionmap as om  # doctest: +SKIP
    >>> spec = om.read_spec("models/presence_russia.toml")  # doctest: +SKIP
    >>> result = om.fit(spec, om.read_survey(spec.data), random_seed=1)  # doctest: +SKIP
    >>> print(result.diagnostics.verdict())  # doctest: +SKIP
    """
    if log_likelihood not in ("auto", "respondent", "pattern"):
        raise OpinionmapError(
            f"log_likelihood must be 'auto', 'respondent' or 'pattern', got {log_likelihood!r}."
        )
    design = build_design(spec, survey, aggregate=aggregate)
    asked = spec.sampling.merged(
        sampling,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=random_seed,
        sampler=sampler,
        target_accept=target_accept,
        adaptation=adaptation,
    )
    if design.merged:
        _log.info("%s: %s", spec.outcome, merged_line(design))
    plan = make_plan(design)
    if plan.confounded_pairs and asked.draws is None:
        # two confounded exchangeable terms' SDs trade off along a ridge: fewer effective
        # draws per draw, and a rare divergence where the ridge narrows (a structured
        # term confounded with another, districts within regions, is not paired). The
        # two settings were measured together: set draws, and neither applies
        asked = asked.merged(draws=confounded_draws(asked.chains))
        if asked.target_accept is None:
            asked = asked.merged(target_accept=CONFOUNDED_TARGET_ACCEPT)
    settings = asked.resolved(spec.family if spec.hurdle is None else "hurdle", design.n_parameters)
    tree = _sample(design, plan, settings, progress, on_progress or (lambda _p: None))
    posterior, stats, kept = _complete_draws(tree, settings)
    if on_progress is not None:
        chains, tuned = int(settings.chains or 0), int(settings.tune or 0)
        divergent = int(stats["diverging"].sum()) if "diverging" in stats else 0
        total = chains * (tuned + int(settings.draws or 0))
        on_progress(FitProgress("summarising", chains * (tuned + kept), total, divergent))
    if kept == 0:
        raise FitInterrupted(f"sampling {spec.outcome} was interrupted before any draw", None)
    groups = {
        "posterior": posterior,
        "sample_stats": stats,
        "log_likelihood": _log_likelihood(posterior, design, log_likelihood),
    }
    stored = design.to_tree()
    for name, node in stored.children.items():
        groups[name] = node.to_dataset()
    tree = xr.DataTree.from_dict(groups)
    attrs: dict[str, Any] = {str(k): v for k, v in stored.attrs.items()}
    tree.attrs.update(
        {
            **attrs,
            **settings.to_attrs(),
            "opinionmap_plan": plan.to_json(),
            "opinionmap_versions": json.dumps(_versions()),
            "opinionmap_aggregate": int(aggregate),
        }
    )
    if kept < (settings.draws or 0):
        tree.attrs["opinionmap_partial"] = f"{kept} of {settings.draws} draws per chain"
    tree.attrs["opinionmap_checksum"] = checksum(tree)
    result = FitResult(tree, spec, design, diagnose(tree, warn=False))
    if "opinionmap_partial" in tree.attrs and not partial:
        raise FitInterrupted(
            f"sampling {spec.outcome} was interrupted after {tree.attrs['opinionmap_partial']}",
            result,
        )
    if warn and not result.diagnostics.converged:
        warnings.warn(result.diagnostics.verdict(), ConvergenceWarning, stacklevel=2)
    return result


class FitInterrupted(KeyboardInterrupt):
    """Sampling was interrupted (Ctrl-C) before every draw was made.

    A ``KeyboardInterrupt``, so a script stops as it would without opinionmap. The
    draws made so far, every chain cut to the same length, are in ``partial``: a
    :class:`~opinionmap.results.FitResult` marked partial (its verdict says so), or
    ``None`` when no draw was made.
    """

    def __init__(self, message: str, partial: FitResult | None) -> None:
        super().__init__(message)
        self.partial = partial


def _complete_draws(tree: xr.DataTree, settings: Sampling) -> tuple[xr.Dataset, xr.Dataset, int]:
    """The posterior and sample statistics cut to the draws every chain finished.

    An interrupted sampler returns the draws so far, shorter chains padded with NaN.
    """
    posterior = tree["posterior"].to_dataset()
    stats = tree["sample_stats"].to_dataset()
    finite = np.ones((posterior.sizes["chain"], posterior.sizes["draw"]), dtype=bool)
    for name in posterior.data_vars:
        values = posterior[name].values.reshape((*finite.shape, -1))
        finite &= np.isfinite(values).all(axis=2)
    done = finite.all(axis=0)
    kept = int(np.argmin(done)) if not done.all() else int(done.size)
    if posterior.sizes["chain"] < (settings.chains or 0):
        kept = 0
    if kept < posterior.sizes["draw"]:
        posterior = posterior.isel(draw=slice(0, kept))
        stats = stats.isel(draw=slice(0, kept))
    return posterior, stats, kept


def confounded_draws(chains: int | None) -> int:
    """Draws per chain where the plan pairs confounded terms: :data:`CONFOUNDED_DRAWS` in all.

    >>> confounded_draws(None), confounded_draws(2), confounded_draws(3)
    (2000, 4000, 2667)
    """
    chains = chains or int(DEFAULT_SAMPLING["chains"])
    return -(-CONFOUNDED_DRAWS // chains)


def _model_key(design: Design, plan: Plan) -> str:
    """Everything the compiled model depends on: spec, data, cells and the plan."""
    parts = {
        "spec": design.spec.hash(),
        "data": design.data_hash,
        "cells": design.n_cells,
        "plan": plan.to_json(),
    }
    return json.dumps(parts, sort_keys=True)


def _compile_nutpie(design: Design, plan: Plan) -> Any:
    """The nutpie-compiled model of a design, from this process's cache when it has it.

    A new process compiling a model it compiled before loads nutpie's C callbacks from
    the disk cache (:mod:`opinionmap._compile_cache`) instead of building them again.
    """
    key = _model_key(design, plan)
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    compiled = compile_model(build_model(design, plan))
    _compiled[key] = compiled
    while len(_compiled) > _COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)
    return compiled


def compile_model(model: Any) -> Any:
    """A PyMC model compiled for nutpie (its C callbacks from the disk cache when there)."""
    import pytensor

    from opinionmap._compile_cache import compile_pymc_model

    # without fastmath: with it, kernels compiled afresh and kernels loaded from
    # PyTensor's disk cache round differently, so the same seed would give different
    # draws on a machine's first run and on later ones
    with pytensor.config.change_flags(numba__fastmath=False), warnings.catch_warnings():
        # PyMC compiles the initial point of an LKJ Cholesky factor (a scan) with the C
        # backend, which warns about BLAS; that function runs once, on a few numbers
        warnings.filterwarnings("ignore", message=".*BLAS.*", category=UserWarning)
        return compile_pymc_model(model)


def sample_nutpie(
    compiled: Any,
    settings: Sampling,
    progress: bool,
    on_progress: Callable[[FitProgress], None] = lambda _p: None,
) -> xr.DataTree:
    """Posterior and sample statistics of a compiled model, sampled as ``settings`` say."""
    import nutpie

    tune = int(settings.tune or 0)
    on_progress(FitProgress("warming up"))
    tree = nutpie.sample(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=settings.cores,
        seed=settings.seed,
        save_warmup=False,
        progress_bar=progress,
        progress_callback=lambda chains: on_progress(_nutpie_progress(chains, tune)),
        progress_rate=250,
        target_accept=settings.target_accept,
        adaptation=settings.adaptation,
    )
    return _posterior_and_stats(tree)


def _posterior_and_stats(tree: Any) -> xr.DataTree:
    """A sampler's posterior and numeric sample statistics as one DataTree."""
    stats = tree["sample_stats"].to_dataset()
    stats = stats[[v for v in stats.data_vars if stats[v].dtype != object]]
    return xr.DataTree.from_dict(
        {"posterior": tree["posterior"].to_dataset(), "sample_stats": stats}
    )


def _sample(
    design: Design,
    plan: Plan,
    settings: Sampling,
    progress: bool,
    on_progress: Callable[[FitProgress], None],
) -> xr.DataTree:
    """Posterior and sample statistics of a design's model, sampled as ``settings`` say."""
    assert settings.draws is not None and settings.chains is not None
    outcome = design.spec.outcome
    on_progress(FitProgress("compiling"))
    if settings.sampler == "nutpie":
        _log.info("compiling %s ...", outcome)
        compiled = _compile_nutpie(design, plan)
        _log.info(
            "sampling %s: %d chains x %d draws after %d tuning steps ...",
            outcome,
            settings.chains,
            settings.draws,
            settings.tune,
        )
        return sample_nutpie(compiled, settings, progress, on_progress)
    else:
        import pymc as pm

        if settings.sampler == "numpyro":
            try:
                import numpyro  # noqa: F401
            except ImportError as exc:
                raise OpinionmapError(
                    "sampler 'numpyro' needs numpyro and jax: pip install 'opinionmap[numpyro]' "
                    "(or pip install numpyro)"
                ) from exc
            from opinionmap._likelihood import register_jax

            register_jax()
        _log.info("sampling %s with %s ...", outcome, settings.sampler)
        on_progress(FitProgress("sampling"))
        with build_model(design, plan):
            tree = pm.sample(
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=settings.cores,
                random_seed=settings.seed,
                progressbar=progress,
                nuts_sampler=settings.sampler,
                target_accept=settings.target_accept,
                compute_convergence_checks=False,
            )
    return _posterior_and_stats(tree)


def _nutpie_progress(chains: Sequence[Any], tune: int) -> FitProgress:
    """The progress of nutpie's chains (``nutpie.ChainProgress``, one per chain)."""
    done = sum(int(c.finished_draws) for c in chains)
    total = sum(int(c.total_draws) for c in chains)
    divergences = sum(1 for c in chains for draw in c.divergent_draws if int(draw) >= tune)
    tuning = any(c.tuning for c in chains) or done == 0
    return FitProgress("warming up" if tuning else "sampling", done, total, divergences)


def _log_likelihood(posterior: xr.Dataset, design: Design, level: LogLikelihood) -> xr.Dataset:
    """Pointwise log-likelihood: per respondent, or per distinct (cell, answer) above a size.

    Respondents in one cell who gave one answer have the same pointwise log-likelihood,
    so ``"pattern"`` stores each (cell, answer) pair once (``Design.patterns``) and
    :meth:`~opinionmap.results.FitResult.loo` gives the respondent-level PSIS-LOO from it.
    """
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    draws = Draws.from_posterior(posterior, design)
    if level == "auto":
        size = n_chain * n_draw * design.n_respondents
        level = "respondent" if size <= RESPONDENT_LOGLIK_MAX else "pattern"
    if level == "respondent":
        cell, response, dim = design.respondent_cell, design.respondent_response, "respondent"
    else:
        cell, response, _, _ = design.patterns()
        dim = "pattern"
    from opinionmap._kernel import log_likelihood

    values = log_likelihood(design, draws, cell, response)
    if values is None:  # a hurdle model, or the kernel switched off
        values = np.empty((draws.n_samples, len(cell)))
        chunk = max(1, 20_000_000 // max(design.n_cells * len(design.categories), 1))
        for start in range(0, draws.n_samples, chunk):
            sl = slice(start, min(start + chunk, draws.n_samples))
            part = draws.subset(sl)
            values[sl] = log_probabilities(design, linear_predictor(part, design), part)[
                :, cell, response
            ]
    coords: dict[str, Any] = {"chain": posterior["chain"], "draw": posterior["draw"]}
    if level == "respondent":
        coords["respondent"] = design.respondent_id
    ll = xr.DataArray(
        values.reshape(n_chain, n_draw, -1), dims=("chain", "draw", dim), coords=coords
    )
    out = xr.Dataset({design.spec.outcome: ll})
    out.attrs["opinionmap_level"] = level
    return out
