"""opinionmap: Bayesian multilevel regression and poststratification for opinion surveys.

The pipeline, one module per stage::

    survey (read_survey, Codebook) -> spec (ModelSpec, read_spec)
      -> design (build_design) -> model (build_model) -> fit (fit, load)
      -> effects / ppc -> frame (read_frame, rake) for poststratification

Names that need PyMC (``fit``, ``load``, ``build_model``, ...) are imported on
first use, so ``import opinionmap`` and the command line start quickly. The
function wins over the submodule of the same name: ``om.fit`` is always the
function; reach a submodule with ``from opinionmap.fit import ...`` or
``importlib.import_module("opinionmap.fit")``.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opinionmap import datasets
from opinionmap.codebook import Codebook, Variable, read_codebook
from opinionmap.errors import (
    CodebookError,
    FrameError,
    OpinionmapError,
    RakingError,
    SurveyError,
)
from opinionmap.frame import Frame, read_frame
from opinionmap.raking import rake
from opinionmap.spec import ModelSpec, Priors, SpecError, read_spec
from opinionmap.survey import Survey, read_survey

try:
    __version__ = version("opinionmap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

_LAZY = {
    "build_design": "opinionmap.design",
    "Design": "opinionmap.design",
    "DesignError": "opinionmap.design",
    "build_model": "opinionmap.model",
    "fit": "opinionmap.fit",
    "load": "opinionmap.fit",
    "FitResult": "opinionmap.fit",
    "ProvenanceError": "opinionmap.fit",
    "ConvergenceWarning": "opinionmap.diagnostics",
    "effects": "opinionmap.effects",
    "summarise_draws": "opinionmap.effects",
    "ppc": "opinionmap.ppc",
    "plot_ppc": "opinionmap.ppc",
    "poststratify": "opinionmap.poststratify",
    "Estimates": "opinionmap.poststratify",
    "direct_estimates": "opinionmap.direct",
    "plot_choropleth": "opinionmap.maps",
    "plot_mrp_vs_direct": "opinionmap.maps",
    "read_boundaries": "opinionmap.maps",
}


class _LazyModule(types.ModuleType):
    """The package module: names in ``_LAZY`` resolve to their functions on every access.

    A module-level ``__getattr__`` is not enough: importing ``opinionmap.fit`` (the
    module) binds the submodule on the package under the same name as the function
    ``opinionmap.fit``, after which ``om.fit(...)`` would find the module.
    """

    def __getattribute__(self, name: str) -> Any:
        if name in _LAZY:
            return getattr(importlib.import_module(_LAZY[name]), name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _LazyModule


__all__ = [
    "Codebook",
    "CodebookError",
    "ConvergenceWarning",
    "Design",
    "DesignError",
    "Estimates",
    "FitResult",
    "Frame",
    "FrameError",
    "ModelSpec",
    "OpinionmapError",
    "Priors",
    "ProvenanceError",
    "RakingError",
    "SpecError",
    "Survey",
    "SurveyError",
    "Variable",
    "__version__",
    "build_design",
    "build_model",
    "datasets",
    "direct_estimates",
    "effects",
    "fit",
    "load",
    "plot_choropleth",
    "plot_mrp_vs_direct",
    "plot_ppc",
    "poststratify",
    "ppc",
    "rake",
    "read_boundaries",
    "read_codebook",
    "read_frame",
    "read_spec",
    "read_survey",
    "summarise_draws",
]
