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
    "kazakhstan_district_adjacency_path",
    "kazakhstan_district_boundaries_path",
    "kazakhstan_district_frame_path",
    "kazakhstan_district_names",
    "kazakhstan_districts",
    "kazakhstan_frame_path",
    "kazakhstan_published",
    "kazakhstan_region_names",
    "kazakhstan_regions",
    "kazakhstan_survey_path",
    "kazakhstan_truth_path",
    "models_dir",
    "project_dir",
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


def kazakhstan_district_frame_path() -> Path:
    """``frame_district_2020.csv``: the frame's cells split over the 216 districts of 2018.

    Columns region, district, sex, age, ethnicity, settlement, population. No district
    populations are bundled: the split is an ASSUMED rule (``data/kazakhstan/README.md``).
    """
    return _kz("frame_district_2020.csv")


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


def kazakhstan_district_adjacency_path() -> Path:
    """``district_adjacency.csv``: pairs of districts that share a border (517 pairs)."""
    return _kz("district_adjacency.csv")


def _geo(name: str) -> Path:
    path = data_dir() / "geo" / "kazakhstan" / name
    if not path.exists():
        raise OpinionmapError(f"bundled boundary file {path} is missing.")
    return path


def kazakhstan_boundaries_path() -> Path:
    """The 2018 first-level boundary shapefile (17 units, matching the 2020 frame)."""
    return _geo("kaz_admbnda_adm1_2018.shp")


def kazakhstan_district_boundaries_path() -> Path:
    """The 2018 second-level boundary shapefile (216 districts, key ``ADM2_PCODE``)."""
    return _geo("kaz_admbnda_adm2_2018.shp")


def project_dir() -> Path:
    """The bundled project folder: ``opinionmap.toml`` naming the models, frame and report.

    ``opinionmap demo`` is ``opinionmap run`` on this folder (the repository's root).
    """
    path = data_dir().parent
    if not (path / "opinionmap.toml").is_file():
        raise OpinionmapError(f"the bundled project file {path / 'opinionmap.toml'} is missing.")
    return path


def models_dir() -> Path:
    """The folder of model specs for the bundled survey (the repository's ``models/``)."""
    path = data_dir().parent / "models"
    if not path.is_dir():
        raise OpinionmapError(f"model specs folder {path} is missing.")
    return path


def kazakhstan_published() -> pd.DataFrame:
    """The percentages the 2020 article printed, as ``question, category, percent``.

    ``published_2020.csv``: shares of all respondents ("don't know" included), in the
    survey's labels; rows the article gives only in a chart (EU, Muslim countries) or
    as "under 1%" are left out (``scripts/build_kazakhstan_data.py`` derives it from
    ``sources/published_survey_2020.csv``).
    """
    from opinionmap.report import read_published

    return read_published(_kz("published_2020.csv"))


def kazakhstan_region_names() -> dict[str, str]:
    """Region code -> English name, from ``region_covariates_2020.csv``."""
    import pandas as pd

    table = pd.read_csv(_kz("region_covariates_2020.csv"))
    return dict(zip(table["region"], table["name"], strict=True))


def kazakhstan_district_names() -> dict[str, str]:
    """District code (ADM2_PCODE) -> English name, from ``districts_2020.csv``."""
    import pandas as pd

    table = pd.read_csv(_kz("districts_2020.csv"))
    return dict(zip(table["district"], table["name"], strict=True))


def kazakhstan_districts() -> list[Area]:
    """The outlines of the 216 districts of 2018 (the district frame's areas), for maps."""
    from opinionmap.maps import read_boundaries

    return read_boundaries(kazakhstan_district_boundaries_path(), key="ADM2_PCODE", name="ADM2_EN")


def kazakhstan_regions() -> list[Area]:
    """The outlines of the 17 regions of 2018-2022 (the frame's areas), for maps."""
    from opinionmap.maps import read_boundaries

    return read_boundaries(kazakhstan_boundaries_path(), key="ISO_3166_2", name="ADM1_EN")
