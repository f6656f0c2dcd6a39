"""opinionmap: Bayesian multilevel regression and poststratification for opinion surveys."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from opinionmap.codebook import Codebook, Variable, read_codebook
from opinionmap.survey import Survey, read_survey

try:
    __version__ = version("opinionmap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "Codebook",
    "Survey",
    "Variable",
    "__version__",
    "read_codebook",
    "read_survey",
]
