"""Fitting: sample a model with nutpie (or PyMC's or NumPyro's NUTS) and check convergence.

:func:`fit` builds the design and its parameterisation plan, compiles and samples
the PyMC model, stores every respondent's pointwise log-likelihood (for LOO) and
returns a :class:`~opinionmap.results.FitResult`. This is the only module that
needs PyMC, PyTensor, nutpie or numba; loading and using a fit does not
(:mod:`opinionmap.results`).
"""

from __future__ import annotations

import json
import platform
import warnings
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import numpy as np
import xarray as xr

from opinionmap.design import Design, SurveyData, build_design
from opinionmap.diagnostics import ConvergenceWarning, diagnose
from opinionmap.errors import OpinionmapError
from opinionmap.model import build_model
from opinionmap.plan import Plan, make_plan
from opinionmap.predict import Draws, linear_predictor, log_probabilities
from opinionmap.results import FitResult
from opinionmap.spec import ModelSpec, Sampling

__all__ = ["fit"]

LogLikelihood = Literal["auto", "respondent", "cell"]
# store respondent-level log-likelihood up to this many values (draws x respondents)
RESPONDENT_LOGLIK_MAX = 50_000_000
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
    log_likelihood: LogLikelihood = "auto",
    warn: bool = True,
    aggregate: bool = True,
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
        tuning steps, nutpie, target acceptance 0.95, diagonal adaptation).
    draws, tune, chains, cores, sampler, target_accept, adaptation
        The same settings one by one (see :class:`~opinionmap.spec.Sampling`).
    random_seed
        Seed; the same seed and data give identical draws. ``None`` draws one
        and records it in the result's attributes.
    progress
        Show a progress bar while sampling.
    log_likelihood
        ``"respondent"`` stores each respondent's log-likelihood (for LOO);
        ``"cell"`` one value per covariate cell; ``"auto"`` (default) stores
        respondents unless draws x respondents exceeds 50 million.
    warn
        Emit a :class:`~opinionmap.diagnostics.ConvergenceWarning` when the fit
        did not converge.
    aggregate
        ``True`` (default) evaluates the likelihood on covariate cells;
        ``False`` on respondents (the same log-density, more slowly; for checks).

    Examples
    --------
    >>> import opinionmap as om  # doctest: +SKIP
    >>> spec = om.read_spec("models/presence_russia.toml")  # doctest: +SKIP
    >>> result = om.fit(spec, om.read_survey(spec.data), random_seed=1)  # doctest: +SKIP
    >>> print(result.diagnostics.verdict())  # doctest: +SKIP
    """
    settings = spec.sampling.merged(
        sampling,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=random_seed,
        sampler=sampler,
        target_accept=target_accept,
        adaptation=adaptation,
    ).resolved()
    if log_likelihood not in ("auto", "respondent", "cell"):
        raise OpinionmapError(
            f"log_likelihood must be 'auto', 'respondent' or 'cell', got {log_likelihood!r}."
        )
    design = build_design(spec, survey, aggregate=aggregate)
    plan = make_plan(design)
    tree = _sample(design, plan, settings, progress)
    posterior = tree["posterior"].to_dataset()
    groups = {
        "posterior": posterior,
        "sample_stats": tree["sample_stats"].to_dataset(),
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
    diagnostics = diagnose(tree, warn=False)
    if warn and not diagnostics.converged:
        warnings.warn(diagnostics.verdict(), ConvergenceWarning, stacklevel=2)
    return FitResult(tree, spec, design, diagnostics)


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
    from opinionmap._compile_cache import compile_pymc_model

    key = _model_key(design, plan)
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    import pytensor

    # without fastmath: with it, kernels compiled afresh and kernels loaded from
    # PyTensor's disk cache round differently, so the same seed would give different
    # draws on a machine's first run and on later ones
    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = compile_pymc_model(build_model(design, plan))
    _compiled[key] = compiled
    while len(_compiled) > _COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)
    return compiled


def _sample(design: Design, plan: Plan, settings: Sampling, progress: bool) -> xr.DataTree:
    """Posterior and sample statistics of a design's model, sampled as ``settings`` say."""
    assert settings.draws is not None and settings.chains is not None
    if settings.sampler == "nutpie":
        import nutpie

        tree = nutpie.sample(
            _compile_nutpie(design, plan),
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.cores,
            seed=settings.seed,
            save_warmup=False,
            progress_bar=progress,
            target_accept=settings.target_accept,
            adaptation=settings.adaptation,
        )
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
    stats = tree["sample_stats"].to_dataset()
    stats = stats[[v for v in stats.data_vars if stats[v].dtype != object]]
    return xr.DataTree.from_dict(
        {"posterior": tree["posterior"].to_dataset(), "sample_stats": stats}
    )


def _log_likelihood(posterior: xr.Dataset, design: Design, level: LogLikelihood) -> xr.Dataset:
    """Pointwise log-likelihood: per respondent (for LOO), or per cell above a size."""
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    draws = Draws.from_posterior(posterior, design)
    if level == "auto":
        level = (
            "respondent"
            if n_chain * n_draw * design.n_respondents <= RESPONDENT_LOGLIK_MAX
            else "cell"
        )
    width = design.n_respondents if level == "respondent" else design.n_cells
    values = np.empty((draws.n_samples, width))
    chunk = max(1, 20_000_000 // max(design.n_cells * len(design.categories), 1))
    for start in range(0, draws.n_samples, chunk):
        sl = slice(start, min(start + chunk, draws.n_samples))
        part = draws.subset(sl)
        logp = log_probabilities(design, linear_predictor(part, design), part)
        if level == "respondent":
            values[sl] = logp[:, design.respondent_cell, design.respondent_response]
        else:
            values[sl] = (logp * design.counts[None]).sum(axis=2)
    coords: dict[str, Any] = {"chain": posterior["chain"], "draw": posterior["draw"]}
    if level == "respondent":
        coords["respondent"] = design.respondent_id
    ll = xr.DataArray(
        values.reshape(n_chain, n_draw, -1),
        dims=("chain", "draw", "respondent" if level == "respondent" else "cell"),
        coords=coords,
    )
    out = xr.Dataset({design.spec.outcome: ll})
    out.attrs["opinionmap_level"] = level
    return out
