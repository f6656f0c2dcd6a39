"""Small shared test helpers (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from opinionmap.design import Design
from opinionmap.predict import Draws
from opinionmap.spec import Sampling


@dataclass(frozen=True)
class PriorFit:
    """A stand-in for a FitResult whose 'posterior' is a draw from the prior (no sampling)."""

    design: Design
    posterior: xr.Dataset

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
