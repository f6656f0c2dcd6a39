"""Small shared test helpers (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from dataclasses import dataclass

import xarray as xr

from opinionmap.design import Design
from opinionmap.predict import Draws


@dataclass(frozen=True)
class PriorFit:
    """A stand-in for a FitResult whose 'posterior' is a draw from the prior (no sampling)."""

    design: Design
    posterior: xr.Dataset

    def draws(self) -> Draws:
        return Draws.from_posterior(self.posterior, self.design)
