"""opinionmap: Bayesian multilevel regression and poststratification for opinion surveys.

The pipeline, one module per stage, in data-flow order::

    survey (read_survey, Codebook) -> spec (ModelSpec, Sampling, read_spec)
      -> design (build_design) -> plan (make_plan) -> model (build_model)
      -> fitting (fit) -> results (FitResult, load)
      -> marginal (effects) / checks (ppc) / frame (read_frame, rake)
      -> poststratification (poststratify) / direct (direct_estimates)
      -> maps, report; pipeline and demo run it all

Names that need heavier imports (``fit`` needs PyMC; ``poststratify``, ``load`` and
the rest need ArviZ) are imported on first use, so ``import opinionmap`` and the
command line start quickly, and using a saved fit never imports PyMC.
"""

from __future__ import annotations

import importlib
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
from opinionmap.frame import Frame, read_frame, read_margin
from opinionmap.raking import rake
from opinionmap.spec import ModelSpec, Priors, Sampling, SpecError, read_spec
from opinionmap.survey import Survey, read_survey

try:
    __version__ = version("opinionmap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

_LAZY = {
    "build_design": "opinionmap.design",
    "Design": "opinionmap.design",
    "DesignError": "opinionmap.design",
    "make_plan": "opinionmap.plan",
    "Plan": "opinionmap.plan",
    "build_model": "opinionmap.model",
    "fit": "opinionmap.fitting",
    "FitInterrupted": "opinionmap.fitting",
    "load": "opinionmap.results",
    "FitResult": "opinionmap.results",
    "ProvenanceError": "opinionmap.results",
    "ConvergenceWarning": "opinionmap.diagnostics",
    "effects": "opinionmap.marginal",
    "summarise_draws": "opinionmap.summaries",
    "FitProgress": "opinionmap.progress",
    "ppc": "opinionmap.checks",
    "plot_ppc": "opinionmap.checks",
    "prior_check": "opinionmap.checks",
    "Structure": "opinionmap.structure",
    "AdjacencyError": "opinionmap.structure",
    "adjacency_from_boundaries": "opinionmap.structure",
    "poststratify": "opinionmap.poststratification",
    "Estimates": "opinionmap.poststratification",
    "CoverageWarning": "opinionmap.poststratification",
    "FramelessModel": "opinionmap.frameless",
    "fit_frameless": "opinionmap.frameless",
    "direct_estimates": "opinionmap.direct",
    "LonelyPSUWarning": "opinionmap.direct",
    "plot_balance": "opinionmap.maps",
    "plot_choropleth": "opinionmap.maps",
    "plot_mrp_vs_direct": "opinionmap.maps",
    "read_boundaries": "opinionmap.maps",
    "ReportOptions": "opinionmap.report",
    "build_report": "opinionmap.report",
    "init_project": "opinionmap.project",
    "JointResult": "opinionmap.joint",
    "JointSpec": "opinionmap.joint",
    "fit_joint": "opinionmap.joint",
    "load_joint": "opinionmap.joint",
    "poststratify_joint": "opinionmap.joint",
    "read_joint_spec": "opinionmap.joint",
    "read_project": "opinionmap.pipeline",
    "run_project": "opinionmap.pipeline",
    "fit_many": "opinionmap.pipeline",
    "SavedFit": "opinionmap.pipeline",
}


def __getattr__(name: str) -> Any:
    """Import the lazily loaded names (see ``_LAZY``) on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'opinionmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AdjacencyError",
    "Codebook",
    "CodebookError",
    "ConvergenceWarning",
    "CoverageWarning",
    "Design",
    "DesignError",
    "Estimates",
    "FitInterrupted",
    "FitProgress",
    "FitResult",
    "Frame",
    "FrameError",
    "FramelessModel",
    "JointResult",
    "JointSpec",
    "LonelyPSUWarning",
    "ModelSpec",
    "OpinionmapError",
    "Plan",
    "Priors",
    "ProvenanceError",
    "RakingError",
    "ReportOptions",
    "Sampling",
    "SavedFit",
    "SpecError",
    "Structure",
    "Survey",
    "SurveyError",
    "Variable",
    "__version__",
    "adjacency_from_boundaries",
    "build_design",
    "build_model",
    "build_report",
    "datasets",
    "direct_estimates",
    "effects",
    "fit",
    "fit_frameless",
    "fit_joint",
    "fit_many",
    "init_project",
    "load",
    "load_joint",
    "make_plan",
    "plot_balance",
    "plot_choropleth",
    "plot_mrp_vs_direct",
    "plot_ppc",
    "poststratify",
    "poststratify_joint",
    "ppc",
    "prior_check",
    "rake",
    "read_boundaries",
    "read_codebook",
    "read_frame",
    "read_joint_spec",
    "read_margin",
    "read_project",
    "read_spec",
    "read_survey",
    "run_project",
    "summarise_draws",
]
