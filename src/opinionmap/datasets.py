"""Paths to the data bundled with opinionmap (the Kazakhstan demo data).

The files live in the repository's ``data/`` folder; see
``data/kazakhstan/README.md`` for what is official, derived and assumed, and
``data/geo/kazakhstan/`` for the boundary files and their licence (CC BY 4.0).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from opinionmap.errors import OpinionmapError

if TYPE_CHECKING:
    import pandas as pd

    from opinionmap.maps import Area

__all__ = [
    "data_dir",
    "kazakhstan_adjacency_path",
    "kazakhstan_boundaries_path",
    "kazakhstan_codebook_path",
    "kazakhstan_frame_path",
    "kazakhstan_published",
    "kazakhstan_region_names",
    "kazakhstan_regions",
    "kazakhstan_survey_path",
    "kazakhstan_truth_path",
    "models_dir",
]


def data_dir() -> Path:
    """The folder holding the bundled data.

    ``$OPINIONMAP_DATA`` wins when set; otherwise the ``data/`` folder of the
    source tree this package was installed from (editable install) is used.
    """
    env = os.environ.get("OPINIONMAP_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parent / "_data", here.parents[2] / "data"]
    for candidate in candidates:
        if (candidate / "kazakhstan").is_dir():
            return candidate
    raise OpinionmapError(
        "cannot find opinionmap's bundled data (looked in "
        + ", ".join(str(c) for c in candidates)
        + "). Install opinionmap from its source tree with `pip install -e .`, or set "
        "OPINIONMAP_DATA to the folder that holds kazakhstan/."
    )


def _kz(name: str) -> Path:
    path = data_dir() / "kazakhstan" / name
    if not path.exists():
        raise OpinionmapError(
            f"bundled data file {path} is missing; run `make data` to rebuild it."
        )
    return path


def kazakhstan_frame_path() -> Path:
    """``frame_2020.csv``: adults 18+ by region x sex x age x ethnicity x settlement."""
    return _kz("frame_2020.csv")


def kazakhstan_survey_path() -> Path:
    """``survey_2020.csv``: the synthetic 1,200-respondent survey (see its README)."""
    return _kz("survey_2020.csv")


def kazakhstan_codebook_path() -> Path:
    """``survey_2020.codebook.toml``: roles, levels and missing codes of the survey."""
    return _kz("survey_2020.codebook.toml")


def kazakhstan_truth_path() -> Path:
    """``truth_2020.csv``: the true population share of every response by region."""
    return _kz("truth_2020.csv")


def kazakhstan_adjacency_path() -> Path:
    """``region_adjacency.csv``: pairs of regions that share a border."""
    return _kz("region_adjacency.csv")


def kazakhstan_boundaries_path() -> Path:
    """The 2018 first-level boundary shapefile (17 units, matching the 2020 frame)."""
    path = data_dir() / "geo" / "kazakhstan" / "kaz_admbnda_adm1_2018.shp"
    if not path.exists():
        raise OpinionmapError(f"bundled boundary file {path} is missing.")
    return path


def models_dir() -> Path:
    """The folder of model specs for the bundled survey (the repository's ``models/``)."""
    path = data_dir().parent / "models"
    if not path.is_dir():
        raise OpinionmapError(f"model specs folder {path} is missing.")
    return path


# published_survey_2020.csv rows -> (survey column, category)
_PUBLISHED = {
    ("presence", "Russia"): "presence_russia",
    ("presence", "USA"): "presence_usa",
    ("presence", "China"): "presence_china",
    ("presence", "EU"): "presence_eu",
    ("presence", "Muslim countries"): "presence_muslim",
    ("model_to_emulate", "Russia"): ("model_country", "russia"),
    ("model_to_emulate", "USA"): ("model_country", "usa"),
    ("model_to_emulate", "China"): ("model_country", "china"),
    ("main_enemy", "China"): ("main_enemy", "china"),
    ("main_enemy", "USA"): ("main_enemy", "usa"),
    ("main_enemy", "no enemy"): ("main_enemy", "none"),
    ("main_friend", "Russia"): ("main_friend", "russia"),
    ("main_friend", "China"): ("main_friend", "china"),
    ("main_friend", "USA"): ("main_friend", "usa"),
    ("main_friend", "no single best friend"): ("main_friend", "none"),
}


def kazakhstan_published() -> pd.DataFrame:
    """The percentages the 2020 article printed, as ``question, category, percent``.

    Shares of all respondents ("don't know" included); rows the article gives
    only in a chart (EU, Muslim countries) or as "under 1%" are left out.
    """
    import pandas as pd

    raw = pd.read_csv(data_dir() / "kazakhstan" / "sources" / "published_survey_2020.csv")
    rows = []
    for question_raw, target_raw, response, percent in raw[
        ["question", "target", "response", "percent"]
    ].itertuples(index=False):
        target = _PUBLISHED.get((str(question_raw), str(target_raw)))
        value = pd.to_numeric(pd.Series([percent]), errors="coerce").iloc[0]
        if target is None or pd.isna(value):
            continue
        if isinstance(target, tuple):
            question, category = target
        else:
            question, category = target, str(response)
        rows.append((question, category, float(value)))
    return pd.DataFrame(rows, columns=["question", "category", "percent"])


def kazakhstan_region_names() -> dict[str, str]:
    """Region code -> English name, from ``region_covariates_2020.csv``."""
    import pandas as pd

    table = pd.read_csv(_kz("region_covariates_2020.csv"))
    return dict(zip(table["region"], table["name"], strict=True))


def kazakhstan_regions() -> list[Area]:
    """The outlines of the 17 regions of 2018-2022 (the frame's areas), for maps."""
    from opinionmap.maps import read_boundaries

    return read_boundaries(kazakhstan_boundaries_path(), key="ISO_3166_2", name="ADM1_EN")
