"""Exceptions raised by opinionmap.

Every error raised at the boundary (reading a survey, a codebook, a frame or a
spec) names the file, the column and the offending values, and says how to fix
them. They all derive from :class:`OpinionmapError`, itself a ``ValueError``, so
``except ValueError`` keeps working for callers that do not care which step
failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


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


def check_keys(
    table: Mapping[str, object],
    allowed: Iterable[str],
    *,
    where: str,
    context: str,
    error: type[OpinionmapError] = OpinionmapError,
) -> None:
    """Refuse keys of a TOML table that are not ``allowed``, naming them and the allowed ones.

    Examples
    --------
    >>> check_keys({"draws": 1, "samples": 2}, ["draws"], where="m.toml", context="in [run]")
    Traceback (most recent call last):
    ...
    opinionmap.errors.OpinionmapError: m.toml: unknown key(s) 'samples' in [run]; allowed ...
    """
    allowed = tuple(allowed)
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise error(
            f"{where}: unknown key(s) {format_values(unknown)} {context}; "
            f"allowed keys: {format_values(allowed)}."
        )


def near_misses(unknown: Iterable[str], known: Sequence[str]) -> dict[str, str]:
    """Unknown labels that equal a known one but for case or spacing: ``{unknown: known}``.

    Examples
    --------
    >>> near_misses(["almaty  City", "Aktobe"], ["Almaty city", "Astana"])
    {'almaty  City': 'Almaty city'}
    """
    normal = {" ".join(k.split()).casefold(): k for k in known}
    known_set = set(known)
    out = {}
    for label in unknown:
        match = normal.get(" ".join(str(label).split()).casefold())
        if match is not None and label not in known_set:
            out[str(label)] = match
    return out


def did_you_mean(misses: dict[str, str]) -> str:
    """``'a' (did you mean 'A'?), ...`` for an error message."""
    return ", ".join(f"{u!r} (did you mean {k!r}?)" for u, k in misses.items())
