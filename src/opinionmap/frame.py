"""Poststratification frames: population counts by cell.

A frame is a table with one row per cell (an area crossed with demographic
levels, e.g. region x sex x age x ethnicity x settlement) and a count column
(``population`` by default). Frames are read from CSV or Parquet and validated
once here; :meth:`Frame.from_margins` builds one from published margins by
raking (:func:`opinionmap.rake`) when the census does not publish the joint
table.

Frame labels often differ from a survey's (``"M"`` against ``"male"``, ``"Almaty
city"`` against ``"Almaty"``): :meth:`Frame.suggest_recode` proposes a mapping, which
goes in the codebook's ``[recode.<column>]`` table (applied by ``opinionmap run``) or
``read_frame(..., recode={"sex": {"M": "male", "F": "female"}})``;
:meth:`Frame.check_levels` checks the result against the survey's codebook.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from opinionmap._io import TABLE_FORMATS, write_table
from opinionmap.errors import FrameError, format_values
from opinionmap.raking import rake

if TYPE_CHECKING:
    from opinionmap.codebook import Codebook

__all__ = ["Frame", "match_labels", "read_frame", "read_margin"]

# words that name the kind of area rather than the area ("Almaty city", "Akmola oblast")
_GENERIC_WORDS = frozenset(
    {
        "city", "town", "region", "regional", "oblast", "oblys", "province", "district",
        "county", "state", "municipality", "rayon", "raion", "area", "the", "of", "obl", "g",
    }
)  # fmt: skip
# how close two labels' spellings must be (difflib's ratio) to be suggested as one
_CLOSE_SPELLING = 0.85


@dataclass(frozen=True)
class Frame:
    """A validated poststratification frame.

    Attributes
    ----------
    data
        One row per cell: the cell columns (categoricals) and the count column.
    cells
        Names of the columns that identify a cell.
    weight
        Name of the count column (``"population"`` by default).
    source
        The file it was read from, if any.
    """

    data: pd.DataFrame
    cells: tuple[str, ...]
    weight: str = "population"
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _validate(self.data, self.cells, self.weight, self._where)

    @property
    def _where(self) -> str:
        return str(self.source) if self.source is not None else "<frame>"

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        *,
        weight: str = "population",
        cells: Sequence[str] | None = None,
        recode: Mapping[str, Mapping[str, str]] | None = None,
        source: Path | None = None,
        labels: Iterable[str] = (),
    ) -> Frame:
        """Validate a DataFrame as a frame.

        ``cells`` defaults to every column except ``weight`` that is not numeric
        (so area-level covariates such as a region's urban share ride along
        without becoming cell keys), and the columns named in ``labels`` (categories
        coded as numbers, such as ages in years).
        """
        where = str(source) if source is not None else "<frame>"
        if weight not in df.columns:
            raise FrameError(
                f"{where}: no weight column {weight!r} (columns: {format_values(df.columns)}). "
                "Pass weight='<your count column>' (CLI: --weight)."
            )
        if cells is None:
            coded = set(labels)
            cells = [
                c
                for c in df.columns
                if c != weight and (c in coded or not pd.api.types.is_numeric_dtype(df[c].dtype))
            ]
        cells = list(cells)
        absent = [c for c in cells if c not in df.columns]
        if absent:
            raise FrameError(
                f"{where}: cell columns {format_values(absent)} not found "
                f"(columns: {format_values(df.columns)})."
            )
        if not cells:
            raise FrameError(
                f"{where}: no cell columns: every column besides {weight!r} is numeric. "
                "Name the cell columns with cells=[...]."
            )
        data = df.copy()
        for c in cells:
            if data[c].isna().any():
                rows = data.index[data[c].isna()].tolist()
                raise FrameError(
                    f"{where}: column {c!r} is empty in rows {format_values(rows)}. Every cell "
                    "needs a level in every cell column."
                )
            if not isinstance(data[c].dtype, pd.CategoricalDtype):
                text = data[c].astype(str)
                data[c] = pd.Categorical(text, categories=list(pd.unique(text)))
        data[weight] = _numeric_weight(data[weight], weight, where)
        frame = cls(data.reset_index(drop=True), tuple(cells), weight, source)
        return frame.recode(recode) if recode else frame

    @classmethod
    def from_margins(
        cls,
        margins: Sequence[pd.DataFrame],
        *,
        weight: str = "population",
        seed: pd.DataFrame | None = None,
        tol: float = 1e-10,
        max_iter: int = 10_000,
    ) -> Frame:
        """Build a frame from published margins by raking (see :func:`opinionmap.rake`).

        Examples
        --------
        >>> import pandas as pd
        >>> by_region_sex = pd.DataFrame(
        ...     {"region": ["A", "A", "B", "B"], "sex": ["male", "female"] * 2,
        ...      "population": [40.0, 60.0, 30.0, 70.0]})
        >>> by_region_urban = pd.DataFrame(
        ...     {"region": ["A", "A", "B", "B"], "settlement": ["urban", "rural"] * 2,
        ...      "population": [50.0, 50.0, 80.0, 20.0]})
        >>> frame = Frame.from_margins([by_region_sex, by_region_urban])
        >>> frame.cells
        ('region', 'sex', 'settlement')
        >>> float(frame.total)
        200.0
        """
        joint = rake(margins, value=weight, seed=seed, tol=tol, max_iter=max_iter)
        cells = tuple(c for c in joint.columns if c != weight)
        return cls(joint, cells, weight)

    # -- views ----------------------------------------------------------------------
    @property
    def total(self) -> float:
        """Total population of the frame."""
        return float(self.data[self.weight].sum())

    @property
    def n_cells(self) -> int:
        """Number of cells (rows)."""
        return len(self.data)

    def levels(self, column: str) -> list[str]:
        """Levels of a cell column, in frame order."""
        if column not in self.cells:
            raise FrameError(
                f"{self._where}: {column!r} is not a cell column "
                f"(cells: {format_values(self.cells)})."
            )
        return [str(v) for v in self.data[column].cat.categories]

    def collapse(self, by: Sequence[str]) -> pd.DataFrame:
        """Population totals by the given cell columns.

        Examples
        --------
        >>> import pandas as pd
        >>> f = Frame.from_dataframe(pd.DataFrame(
        ...     {"region": ["A", "A", "B"], "sex": ["m", "f", "m"], "population": [1, 2, 3]}))
        >>> f.collapse(["region"])["population"].tolist()
        [3.0, 3.0]
        """
        by = list(by)
        absent = [c for c in by if c not in self.data.columns]
        if absent:
            raise FrameError(
                f"{self._where}: cannot group by {format_values(absent)}: not in the frame "
                f"(cell columns: {format_values(self.cells)})."
            )
        grouped = self.data.groupby(by, observed=True, sort=True)[self.weight].sum()
        return grouped.reset_index()

    def recode(self, mapping: Mapping[str, Mapping[str, str]]) -> Frame:
        """A new frame with labels mapped, e.g. ``{"sex": {"M": "male", "F": "female"}}``.

        Cells that become identical after mapping are summed.
        """
        data = _recode(self.data, mapping, self._where)
        others = [c for c in data.columns if c not in (*self.cells, self.weight)]
        data = data.groupby(list(self.cells), sort=False, as_index=False).agg(
            {self.weight: "sum", **dict.fromkeys(others, "first")}
        )
        for c in self.cells:
            text = data[c].astype(str)
            data[c] = pd.Categorical(text, categories=list(pd.unique(text)))
        return Frame(data[list(self.data.columns)], self.cells, self.weight, self.source)

    # -- checks against a survey ------------------------------------------------------
    def suggest_recode(
        self, codebook: Codebook
    ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
        """How this frame's labels map onto a survey codebook's levels, where they differ.

        For every cell column whose levels the codebook declares, each frame label the
        codebook does not know is matched (:func:`match_labels`) against the declared
        levels that no frame label spells exactly. Returns ``(recode, unmatched)``:
        ``{column: {frame label: survey label}}``, for the codebook's ``[recode]``
        table, and ``{column: [frame labels]}`` left for the user to map.

        Examples
        --------
        >>> import pandas as pd
        >>> from opinionmap.codebook import Codebook
        >>> frame = Frame.from_dataframe(pd.DataFrame({
        ...     "region": ["Almaty city", "Almaty region", "Abai"], "population": [1, 2, 3]}))
        >>> codebook = Codebook.from_dict({"variables": {"region": {
        ...     "role": "area", "levels": ["Almaty", "Almaty region", "Zhetisu"]}}})
        >>> frame.suggest_recode(codebook)
        ({'region': {'Almaty city': 'Almaty'}}, {'region': ['Abai']})
        """
        recode: dict[str, dict[str, str]] = {}
        unmatched: dict[str, list[str]] = {}
        for c in self.cells:
            if c not in codebook.names or not codebook[c].levels:
                continue
            declared = [str(v) for v in codebook[c].levels or ()]
            frame_levels = self.levels(c)
            unknown = [lv for lv in frame_levels if lv not in declared]
            free = [lv for lv in declared if lv not in frame_levels]
            found = match_labels(unknown, free)
            if found:
                recode[c] = found
            if left := [lv for lv in unknown if lv not in found]:
                unmatched[c] = left
        return recode, unmatched

    def check_levels(
        self,
        codebook: Codebook,
        columns: Iterable[str] | None = None,
        *,
        observed: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """Check that the frame's levels agree with a survey codebook.

        For every cell column that the codebook also declares (or only ``columns``):
        frame levels the codebook does not know are an error (usually a labelling
        mismatch); so are levels observed in the survey (``observed``, e.g. the
        areas respondents live in) that the frame lacks, because those respondents
        could not be poststratified.

        Raises
        ------
        FrameError
            Listing every mismatch per column, with the fix (``recode``).
        """
        names = set(codebook.names)
        targets = [c for c in (columns if columns is not None else self.cells) if c in names]
        problems: list[str] = []
        for c in targets:
            if c not in self.cells:
                problems.append(f"column {c!r} is not a cell column of the frame")
                continue
            variable = codebook[c]
            frame_levels = self.levels(c)
            declared = [str(v) for v in variable.levels] if variable.levels else None
            if declared is not None:
                unknown = [lv for lv in frame_levels if lv not in declared]
                if unknown:
                    problems.append(
                        f"column {c!r}: frame levels {format_values(unknown)} are not in the "
                        f"survey codebook's levels {format_values(declared)}"
                    )
            if observed is not None and c in observed:
                lacking = sorted({str(v) for v in observed[c]} - set(frame_levels))
                if lacking:
                    problems.append(
                        f"column {c!r}: survey levels {format_values(lacking)} have no cells in "
                        "the frame, so those respondents' areas or groups cannot be poststratified"
                    )
        if problems:
            raise FrameError(
                f"{self._where} does not match the survey codebook"
                + (f" {codebook.source}" if getattr(codebook, "source", None) else "")
                + ":\n  - "
                + "\n  - ".join(problems)
                + "\nMap frame labels onto the survey's with a [recode.<column>] table in the "
                "codebook (frame label = survey label; applied by opinionmap run and frame "
                "check), or read_frame(..., recode={column: {frame_label: survey_label}})."
                + _suggestion(*self.suggest_recode(codebook))
            )

    # -- output ---------------------------------------------------------------------
    def to_file(self, path: str | os.PathLike[str]) -> Path:
        """Write the frame as CSV or Parquet (by suffix), atomically."""
        return write_table(self.data, path, FrameError)


def read_frame(
    path: str | os.PathLike[str],
    *,
    weight: str = "population",
    cells: Sequence[str] | None = None,
    recode: Mapping[str, Mapping[str, str]] | None = None,
    codebook: Codebook | None = None,
) -> Frame:
    """Read and validate a poststratification frame from CSV or Parquet.

    Parameters
    ----------
    path
        A ``.csv`` or ``.parquet`` file with one row per cell.
    weight
        The count column (default ``"population"``).
    cells
        Columns that identify a cell; by default every non-numeric column.
    recode
        Label mapping per column applied before validation, e.g.
        ``{"sex": {"M": "male", "F": "female"}}``.
    codebook
        The survey's codebook: its ``[recode]`` tables are applied (after ``recode``),
        and its categorical variables are cells even where the frame codes them as
        numbers (ages in years, regions numbered 1-11).

    Raises
    ------
    FrameError
        Unreadable file, missing weight column, negative, non-numeric or
        non-finite counts, duplicated cells; each message names the file, the
        column and the values.

    Examples
    --------
    >>> import opinionmap
    >>> frame = read_frame(opinionmap.datasets.kazakhstan_frame_path())
    >>> frame.cells
    ('region', 'sex', 'age', 'ethnicity', 'settlement')
    """
    source = Path(path)
    kind = TABLE_FORMATS.get(source.suffix.lower())
    if kind is None:
        raise FrameError(
            f"{source}: unsupported file type {source.suffix!r}; frames are read from "
            f"{format_values(sorted(TABLE_FORMATS))} files."
        )
    if not source.is_file():
        raise FrameError(f"{source}: no such file.")
    try:
        if kind == "csv":
            header = set(pd.read_csv(source, nrows=0).columns)
            # cell labels stay text ("01" is not 1); the counts are checked below
            labelled = _categorical(codebook)
            as_text = [c for c in (*(cells or labelled), weight) if c in header]
            df = pd.read_csv(
                source,
                dtype=dict.fromkeys(as_text, "string"),
                keep_default_na=False,
                na_values=[""],
            )
            if weight in df.columns:
                df[weight] = df[weight].astype(object)
        else:
            df = pd.read_parquet(source)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise FrameError(f"{source}: cannot be read as {kind}: {exc}") from exc
    frame = Frame.from_dataframe(
        df, weight=weight, cells=cells, recode=recode, source=source, labels=_categorical(codebook)
    )
    if codebook is not None and codebook.recode:
        frame = frame.recode({c: m for c, m in codebook.recode.items() if c in frame.cells})
    return frame


def _categorical(codebook: Codebook | None) -> list[str]:
    """The codebook's categorical variables (none without one)."""
    return [v.name for v in codebook or () if v.kind == "categorical"]


def read_margin(path: str | os.PathLike[str], *, weight: str = "population") -> pd.DataFrame:
    """Read one published margin for :meth:`Frame.from_margins` / :func:`opinionmap.rake`.

    A CSV with one or more dimension columns (labels, read as text) and the count
    column ``weight``. The table's ``attrs["source"]`` is the file, so raking
    errors name it.

    Raises
    ------
    FrameError
        The file is missing, empty or unreadable, has no dimension column or no
        ``weight`` column, or holds counts that are not finite numbers >= 0.
    """
    source = Path(path)
    if not source.is_file():
        raise FrameError(f"{source}: no such margin file.")
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise FrameError(f"{source}: the margin file is empty (no header, no rows).") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise FrameError(f"{source}: cannot be read as CSV: {exc}") from exc
    if weight not in table.columns:
        raise FrameError(
            f"{source}: no count column {weight!r} (columns: {format_values(table.columns)}); "
            "name it with --weight."
        )
    if len(table.columns) < 2:
        raise FrameError(f"{source}: only the count column {weight!r}; add dimension columns.")
    if len(table) == 0:
        raise FrameError(f"{source}: the margin has a header but no rows.")
    for column in table.columns:
        if column != weight and table[column].isna().any():
            rows = [int(i) + 2 for i in table.index[table[column].isna()]]
            raise FrameError(
                f"{source}: column {column!r} is empty in rows {format_values(rows)} (counting "
                "the header as row 1); every count needs a level in every dimension column."
            )
    table[weight] = _numeric_weight(table[weight], weight, str(source))
    table.attrs["source"] = str(source)
    return table


def _numeric_weight(column: pd.Series, weight: str, where: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    non_numeric = column[values.isna() & column.notna()]
    if len(non_numeric):
        raise FrameError(
            f"{where}: column {weight!r} holds non-numeric counts "
            f"{format_values(non_numeric.unique().tolist())} "
            f"(rows {format_values(non_numeric.index.tolist())}). Counts must be numbers."
        )
    values = values.astype(float)
    bad = values[~np.isfinite(values)]
    if len(bad):
        raise FrameError(
            f"{where}: column {weight!r} is empty or non-finite in rows "
            f"{format_values(bad.index.tolist())}. "
            "Every cell needs a finite count (0 for an empty cell)."
        )
    negative = values[values < 0]
    if len(negative):
        raise FrameError(
            f"{where}: column {weight!r} holds negative counts {format_values(negative.tolist())} "
            f"(rows {format_values(negative.index.tolist())}). Population counts must be >= 0."
        )
    return values


def _validate(data: pd.DataFrame, cells: tuple[str, ...], weight: str, where: str) -> None:
    if len(data) == 0:
        raise FrameError(f"{where}: the frame has no rows.")
    if weight not in data.columns:
        raise FrameError(f"{where}: no weight column {weight!r}.")
    values = data[weight].to_numpy(dtype=float)
    if not np.isfinite(values).all() or (values < 0).any():
        raise FrameError(f"{where}: column {weight!r} must hold finite counts >= 0.")
    with np.errstate(over="ignore"):
        total = float(values.sum())
    if not np.isfinite(total):
        raise FrameError(
            f"{where}: column {weight!r} sums to infinity (counts up to {values.max():.3g}); "
            "divide the counts by a constant (shares do not change)."
        )
    if total <= 0:
        raise FrameError(f"{where}: column {weight!r} sums to zero: the frame has no population.")
    duplicated = data.duplicated(list(cells), keep=False)
    if duplicated.any():
        dups = data.loc[duplicated, list(cells)].astype(str).drop_duplicates()
        listed = [", ".join(f"{c}={r[c]}" for c in cells) for _, r in dups.iterrows()]
        raise FrameError(
            f"{where}: {int(duplicated.sum())} rows repeat {len(dups)} cells: "
            f"{format_values(listed, limit=5)}. Each cell must appear once: sum duplicated rows, "
            "or add the column that tells them apart "
            "to cells."
        )


def match_labels(unknown: Iterable[str], available: Sequence[str]) -> dict[str, str]:
    """Map each unknown label onto the one available label it stands for, where only one fits.

    Tried in turn, each time among the labels still unmatched: the same words but for
    case, spacing and punctuation; the same words but for those that name the kind of
    area ("city", "region", "oblast", "province", "district", ...); the words of one
    contained in the other's; a spelling at least 85% alike (:mod:`difflib`). Labels that
    name different kinds of area ("Almaty city", "Almaty region") never match. A label
    two available labels fit, or an available label two unknown ones claim, is left
    unmatched: a guess there would be a coin toss.

    Examples
    --------
    >>> match_labels(["ALMATY  city", "North-Kazakhstan", "Astana", "Shymkent"],
    ...              ["Almaty", "North Kazakhstan Region", "Nur-Sultan", "Shymkent city"])
    {'ALMATY  city': 'Almaty', 'North-Kazakhstan': 'North Kazakhstan Region',
     'Shymkent': 'Shymkent city'}
    """
    left = list(dict.fromkeys(str(u) for u in unknown))
    free = list(dict.fromkeys(str(a) for a in available))
    found: dict[str, str] = {}

    def close(a: str, b: str) -> bool:
        ratio = difflib.SequenceMatcher(None, _words(a, True), _words(b, True)).ratio()
        return ratio >= _CLOSE_SPELLING

    stages: tuple[Callable[[str, str], bool], ...] = (
        lambda a, b: _words(a, False) == _words(b, False),
        lambda a, b: _words(a, True) == _words(b, True),
        lambda a, b: _contains(_words(a, True).split(), _words(b, True).split()),
        close,
    )
    for same in stages:
        fits = {u: [a for a in free if same(u, a) and not _kinds_differ(u, a)] for u in left}
        claims = Counter(a for candidates in fits.values() for a in candidates)
        for u, candidates in fits.items():
            if len(candidates) == 1 and claims[candidates[0]] == 1:
                found[u] = candidates[0]
        # a label with several fits now would have as many at a looser stage
        left = [u for u in left if u not in found and not fits[u]]
        free = [a for a in free if a not in found.values()]
    return found


def _words(label: str, drop_generic: bool) -> str:
    """A label's words in lower case without punctuation (and the generic ones dropped)."""
    words = re.sub(r"[\W_]+", " ", label.casefold()).split()
    if drop_generic:
        words = [w for w in words if w not in _GENERIC_WORDS] or words
    return " ".join(words)


def _kinds_differ(a: str, b: str) -> bool:
    """Both labels name a kind of area, and not the same one ("Almaty city", "Almaty region")."""
    kinds = [set(_words(label, False).split()) & _GENERIC_WORDS for label in (a, b)]
    return bool(kinds[0] and kinds[1]) and kinds[0] != kinds[1]


def _contains(a: list[str], b: list[str]) -> bool:
    """One non-empty list of words holds every word of the other."""
    return bool(a and b) and (set(a) <= set(b) or set(b) <= set(a))


def _suggestion(recode: Mapping[str, Mapping[str, str]], unmatched: Mapping[str, list[str]]) -> str:
    """The suggested ``[recode]`` tables and the labels left, for an error message."""
    import tomli_w

    text = ""
    if recode:
        tables = tomli_w.dumps({"recode": {c: dict(m) for c, m in recode.items()}})
        text += "\nSuggested, to add to the codebook:\n" + tables.rstrip("\n")
    if unmatched:
        text += "\nNo suggestion for " + "; ".join(
            f"{c!r}: {format_values(labels)}" for c, labels in unmatched.items()
        )
    return text


def _recode(
    data: pd.DataFrame, mapping: Mapping[str, Mapping[str, str]], where: str
) -> pd.DataFrame:
    out = data.copy()
    for column, labels in mapping.items():
        if column not in out.columns:
            raise FrameError(
                f"{where}: recode names column {column!r}, which the frame lacks "
                f"(columns: {format_values(out.columns)})."
            )
        as_text = out[column].astype(str)
        unused = [k for k in labels if k not in set(as_text)]
        if unused:
            raise FrameError(
                f"{where}: recode for {column!r} maps labels {format_values(unused)} that the "
                f"frame does not have (its labels: {format_values(sorted(set(as_text)))})."
            )
        out[column] = as_text.map(lambda v, labels=labels: labels.get(v, v))
    return out
