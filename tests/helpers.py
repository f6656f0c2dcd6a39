"""Small shared test helpers (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from opinionmap.design import Design
from opinionmap.predict import Draws
from opinionmap.spec import ModelSpec, Sampling


@dataclass(frozen=True)
class PriorFit:
    """A stand-in for a FitResult whose 'posterior' is a draw from the prior (no sampling)."""

    design: Design
    posterior: xr.Dataset

    @property
    def spec(self) -> ModelSpec:
        return self.design.spec

    def draws(self) -> Draws:
        return Draws.from_posterior(self.posterior, self.design)


def run_bundled(questions: list[str], out: Path, sampling: Sampling, **kwargs: Any) -> Path:
    """``run_specs`` on bundled questions, the bundled survey and frame; the report's path."""
    import opinionmap as om
    from opinionmap.pipeline import run_specs

    return run_specs(
        [om.datasets.models_dir() / f"{q}.toml" for q in questions],
        survey_path=om.datasets.kazakhstan_survey_path(),
        frame_path=om.datasets.kazakhstan_frame_path(),
        weight="population",
        out=out,
        sampling=sampling,
        **kwargs,
    )


def at_random_point(model: Any, names: list[str], seed: int = 0) -> tuple[float, xr.Dataset]:
    """A model's log-likelihood at a random point, and the named variables there.

    Every random variable is replaced by its (transformed) value at the point; the
    variables come back as a one-draw posterior with the model's dims and coords.
    """
    import numpy as np
    from pymc.pytensorf import compile

    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0.0, 0.7, v.shape) for k, v in model.initial_point().items()}
    outputs = model.replace_rvs_by_values([model["loglik"], *(model[n] for n in names)])
    function = compile(model.value_vars, outputs, on_unused_input="ignore")
    values = function(*(point[v.name] for v in model.value_vars))
    posterior = {n: (("chain", "draw", *model.named_vars_to_dims.get(n, ())), v[None, None])
                 for n, v in zip(names, values[1:], strict=True)}  # fmt: skip
    coords = {k: list(v) for k, v in model.coords.items()}
    return float(values[0]), xr.Dataset(posterior, coords=coords)
