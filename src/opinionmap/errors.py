"""Exceptions raised by opinionmap.

Every error raised at the boundary (reading a survey, a codebook, a frame or a
spec) names the file, the column and the offending values, and says how to fix
them. They all derive from :class:`OpinionmapError`, itself a ``ValueError``, so
``except ValueError`` keeps working for callers that do not care which step
failed.
"""

from __future__ import annotations


class OpinionmapError(ValueError):
    """Base class of every input error opinionmap raises."""


class CodebookError(OpinionmapError):
    """A codebook is malformed or disagrees with the data it describes."""


class SurveyError(OpinionmapError):
    """Survey data cannot be read or fails validation."""


class FrameError(OpinionmapError):
    """A poststratification frame cannot be read or fails validation."""


class RakingError(OpinionmapError):
    """Margins given to :func:`opinionmap.rake` are inconsistent or cannot be fitted."""


def format_values(values: object, limit: int = 10) -> str:
    """Render offending values for an error message, at most ``limit`` of them.

    Examples
    --------
    >>> format_values(["a", "b"])
    "'a', 'b'"
    >>> format_values(range(12), limit=3)
    '0, 1, 2 (and 9 more)'
    """
    items = list(values)  # type: ignore[call-overload]
    shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in items[:limit])
    if len(items) > limit:
        shown += f" (and {len(items) - limit} more)"
    return shown
