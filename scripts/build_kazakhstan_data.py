"""Build the Kazakhstan demo data: frame, region covariates, synthetic survey, truth, adjacency.

Usage::

    python scripts/build_kazakhstan_data.py [--out DIR] [--seed N]

Reads the official figures copied into ``data/kazakhstan/sources/`` and the 2018
boundaries in ``data/geo/kazakhstan/``; writes (atomically, byte-stable for a
given seed) into ``--out`` (default ``data/kazakhstan``):

- ``frame_2020.csv``: adults 18+ by region x sex x age x ethnicity x settlement,
  raked to margins derived from the official tables;
- ``region_covariates_2020.csv``: region-level predictors;
- ``survey_2020.csv`` + ``survey_2020.codebook.toml``: a SYNTHETIC survey drawn
  from the "true" opinion model below;
- ``truth_2020.csv``, ``truth_ethnicity_2020.csv``: the true population shares;
- ``truth_parameters_2020.csv``: every parameter of the true opinion model;
- ``region_adjacency.csv``: regions that share a border.

Every figure that is not official is an assumption stated in this file and in
``data/kazakhstan/README.md``, which says what each output is made of.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapefile
from scipy.optimize import brentq
from scipy.special import expit, logit
from shapely.geometry import shape

from opinionmap._io import atomic_path
from opinionmap.raking import rake

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "data" / "kazakhstan" / "sources"
BOUNDARIES = ROOT / "data" / "geo" / "kazakhstan" / "kaz_admbnda_adm1_2018.shp"
DEFAULT_OUT = ROOT / "data" / "kazakhstan"
DEFAULT_SEED = 20200214  # fieldwork ended around February 2020

SEXES = ("male", "female")
AGES = ("18-29", "30-44", "45-59", "60+")
ETHNICITIES = ("kazakh", "russian", "other")
SETTLEMENTS = ("urban", "rural")
EDUCATION = ("secondary", "vocational", "higher")
CELLS = ("region", "sex", "age", "ethnicity", "settlement")
CITIES = ("KZ-AST", "KZ-ALA", "KZ-SHY")

# --------------------------------------------------------------------------------------
# Assumptions for the frame (each one is in data/kazakhstan/README.md)
# --------------------------------------------------------------------------------------

#: 16- and 17-year-olds are 2 of the 16 single years of the 0-15 band (flat age profile).
TEEN_FRACTION = 2 / 16

#: Years per band in the national adult age shares (national_2020.csv) and in our bands.
YEARS_18_44, YEARS_18_29, YEARS_30_44, YEARS_45_59, YEARS_60_74 = 27, 12, 15, 15, 15

#: ASSUMED base urban shares of the 14 oblasts (rough figures from general knowledge of the
#: bureau's regional urban shares, not checked against a source). A single logit shift is
#: added to all of them so that the national adult urban share is 0.589.
URBAN_BASE = {
    "KZ-AKM": 0.48,
    "KZ-AKT": 0.65,
    "KZ-ALM": 0.23,
    "KZ-ATY": 0.56,
    "KZ-ZAP": 0.52,
    "KZ-ZHA": 0.41,
    "KZ-KAR": 0.80,
    "KZ-KUS": 0.55,
    "KZ-KZY": 0.45,
    "KZ-MAN": 0.41,
    "KZ-PAV": 0.71,
    "KZ-SEV": 0.44,
    "KZ-YUZ": 0.20,
    "KZ-VOS": 0.63,
}

#: ASSUMED relative concentration of non-Kazakh Muslim groups (1 = national average):
#: Uzbeks in Turkistan and Shymkent; Uyghurs, Turks, Kurds and Dungans in Almaty Region,
#: Almaty city and Zhambyl; the west (Atyrau, Mangystau) and Kyzylorda nearly all Kazakh.
OTHER_MUSLIM_WEIGHT = {
    "KZ-YUZ": 3.0,
    "KZ-SHY": 3.0,
    "KZ-ALM": 2.5,
    "KZ-ALA": 2.0,
    "KZ-ZHA": 2.0,
    "KZ-KZY": 0.5,
    "KZ-ATY": 0.5,
    "KZ-MAN": 0.5,
}

# --------------------------------------------------------------------------------------
# Survey design
# --------------------------------------------------------------------------------------

SAMPLE_SIZE = 1200
#: Over-representation of a cell relative to its population share (response propensity).
SETTLEMENT_FACTOR = {"urban": 1.5, "rural": 1.0}
AGE_FACTOR = {"18-29": 1.6, "30-44": 1.2, "45-59": 1.0, "60+": 0.6}

#: Education (not in the frame, not in the opinion model): multinomial logit against
#: "secondary"; coefficients by category.
EDUCATION_MODEL: dict[str, dict[str, float]] = {
    "vocational": {"intercept": 0.1, "age:60+": -0.2, "settlement:rural": -0.1},
    "higher": {
        "intercept": -0.1,
        "age:18-29": 0.1,
        "age:30-44": 0.3,
        "age:60+": -0.6,
        "settlement:rural": -0.9,
    },
}

# --------------------------------------------------------------------------------------
# The true opinion model
# --------------------------------------------------------------------------------------

PRESENCE_LEVELS = ("more", "same", "less")
DONT_KNOW = "dont_know"
NONE = "none"


@dataclass(frozen=True)
class OrdinalQuestion:
    """A 'desired presence' question: dont_know by logit, then a cumulative logit.

    ``effects`` shift the linear predictor towards "more" (a positive value makes
    "more" likelier and "less" rarer); terms are ``"variable:level"`` and
    ``"north"`` (per standard deviation of the region's 2021 Christian share).
    """

    name: str
    label: str
    target: Mapping[str, float]  # more, same, less, dont_know (shares of all adults)
    published: bool
    effects: Mapping[str, float]


@dataclass(frozen=True)
class NominalQuestion:
    """A 'which country' question: multinomial logit over the categories."""

    name: str
    label: str
    target: Mapping[str, float]  # every category, "none" and "dont_know" included
    published: Sequence[str]  # categories whose target is a published figure
    effects: Mapping[str, Mapping[str, float]]  # category -> term -> effect


#: P(dont_know) on the presence questions: logit = intercept (calibrated) + these terms.
DONT_KNOW_EFFECTS = {
    "sex:female": 0.30,
    "age:18-29": -0.40,
    "age:30-44": -0.20,
    "age:60+": 0.45,
    "settlement:rural": 0.30,
    "ethnicity:other": 0.15,
}
#: Standard deviations of the random deviations (drawn once from the seed).
SD_REGION = 0.20
SD_REGION_ETHNICITY = 0.10
SD_REGION_NOMINAL = 0.25

ORDINAL_QUESTIONS = (
    OrdinalQuestion(
        "presence_russia",
        "Desired presence of Russia in Kazakhstan",
        {"more": 0.26, "same": 0.49, "less": 0.17, DONT_KNOW: 0.08},
        True,
        {
            "ethnicity:russian": 1.20,
            "ethnicity:other": 0.50,
            "age:18-29": -0.40,
            "age:30-44": -0.15,
            "age:45-59": 0.15,
            "age:60+": 0.50,
            "settlement:rural": 0.10,
            "north": 0.35,
        },
    ),
    OrdinalQuestion(
        "presence_usa",
        "Desired presence of the USA in Kazakhstan",
        {"more": 0.04, "same": 0.23, "less": 0.65, DONT_KNOW: 0.08},
        True,
        {
            "ethnicity:russian": -0.50,
            "ethnicity:other": -0.10,
            "age:18-29": 0.70,
            "age:30-44": 0.25,
            "age:60+": -0.60,
            "settlement:rural": -0.30,
            "sex:female": -0.10,
            "north": -0.15,
        },
    ),
    OrdinalQuestion(
        "presence_china",
        "Desired presence of China in Kazakhstan",
        {"more": 0.12, "same": 0.24, "less": 0.55, DONT_KNOW: 0.09},
        True,
        {
            "ethnicity:russian": 0.40,
            "ethnicity:other": 0.30,
            "age:18-29": 0.40,
            "age:30-44": 0.10,
            "age:60+": -0.45,
            "settlement:rural": -0.35,
            "sex:female": -0.10,
            "north": 0.10,
        },
    ),
    OrdinalQuestion(
        "presence_eu",
        "Desired presence of the European Union in Kazakhstan",
        {"more": 0.08, "same": 0.37, "less": 0.42, DONT_KNOW: 0.13},
        False,
        {
            "ethnicity:russian": -0.20,
            "ethnicity:other": 0.10,
            "age:18-29": 0.50,
            "age:30-44": 0.25,
            "age:60+": -0.30,
            "settlement:rural": -0.30,
        },
    ),
    OrdinalQuestion(
        "presence_muslim",
        "Desired presence of Muslim countries in Kazakhstan",
        {"more": 0.14, "same": 0.38, "less": 0.36, DONT_KNOW: 0.12},
        False,
        {
            "ethnicity:russian": -1.50,
            "ethnicity:other": 0.60,
            "age:18-29": 0.20,
            "age:30-44": 0.10,
            "age:60+": -0.10,
            "settlement:rural": 0.25,
            "sex:female": -0.10,
            "north": -0.45,
        },
    ),
)

_DK_NOMINAL = {"sex:female": 0.30, "age:18-29": 0.10, "age:60+": 0.45, "settlement:rural": 0.30}

NOMINAL_QUESTIONS = (
    NominalQuestion(
        "main_friend",
        "Kazakhstan's main friend",
        {
            "russia": 0.51,
            "china": 0.025,
            "usa": 0.001,
            "turkey": 0.05,
            "uzbekistan": 0.03,
            "kyrgyzstan": 0.02,
            "belarus": 0.014,
            "germany": 0.01,
            NONE: 0.20,
            DONT_KNOW: 0.14,
        },
        ("russia", "china", "usa", NONE),
        {
            "russia": {
                "ethnicity:russian": 1.00,
                "ethnicity:other": 0.40,
                "age:18-29": -0.30,
                "age:45-59": 0.20,
                "age:60+": 0.40,
                "settlement:rural": 0.10,
                "north": 0.30,
            },
            "china": {"age:18-29": 0.40, "settlement:rural": -0.30, "ethnicity:other": 0.20},
            "usa": {"age:18-29": 0.80, "settlement:rural": -0.50, "ethnicity:russian": -0.50},
            "turkey": {
                "ethnicity:russian": -1.50,
                "ethnicity:other": 0.30,
                "age:18-29": 0.40,
                "age:60+": -0.30,
                "north": -0.30,
            },
            "uzbekistan": {"ethnicity:other": 1.50, "ethnicity:russian": -1.00, "north": -0.60},
            "kyrgyzstan": {"ethnicity:other": 0.30, "north": -0.30},
            "belarus": {"ethnicity:russian": 1.00, "ethnicity:other": 0.50, "age:60+": 0.30},
            "germany": {
                "ethnicity:russian": 0.40,
                "ethnicity:other": 0.60,
                "age:18-29": 0.20,
                "settlement:rural": -0.20,
            },
            NONE: {"age:18-29": 0.30, "age:30-44": 0.15, "settlement:rural": -0.20},
            DONT_KNOW: _DK_NOMINAL,
        },
    ),
    NominalQuestion(
        "main_enemy",
        "Kazakhstan's main enemy",
        {
            "china": 0.10,
            "usa": 0.074,
            "russia": 0.009,
            "uzbekistan": 0.004,
            "afghanistan": 0.003,
            "kyrgyzstan": 0.002,
            NONE: 0.50,
            DONT_KNOW: 0.308,
        },
        ("china", "usa", NONE),
        {
            "china": {
                "ethnicity:russian": -0.60,
                "ethnicity:other": -0.30,
                "settlement:rural": 0.30,
                "age:18-29": -0.10,
                "age:45-59": 0.20,
                "age:60+": 0.30,
                "north": -0.10,
            },
            "usa": {
                "ethnicity:russian": 0.80,
                "ethnicity:other": 0.20,
                "age:18-29": -0.30,
                "age:60+": 0.40,
                "north": 0.30,
            },
            "russia": {
                "ethnicity:russian": -1.50,
                "age:18-29": 0.40,
                "settlement:rural": -0.30,
                "north": -0.20,
            },
            "uzbekistan": {"ethnicity:other": -0.50, "north": -0.50},
            "afghanistan": {"age:60+": 0.30},
            "kyrgyzstan": {"north": -0.40},
            NONE: {"age:18-29": 0.20, "settlement:rural": -0.10},
            DONT_KNOW: _DK_NOMINAL,
        },
    ),
    NominalQuestion(
        "model_country",
        "Country Kazakhstan should take as a model",
        {
            "russia": 0.24,
            "usa": 0.039,
            "china": 0.032,
            "germany": 0.09,
            "japan": 0.08,
            "turkey": 0.06,
            "south_korea": 0.05,
            "uae": 0.04,
            "singapore": 0.03,
            NONE: 0.12,
            DONT_KNOW: 0.219,
        },
        ("russia", "usa", "china"),
        {
            "russia": {
                "ethnicity:russian": 1.10,
                "ethnicity:other": 0.40,
                "age:18-29": -0.30,
                "age:45-59": 0.30,
                "age:60+": 0.60,
                "settlement:rural": 0.20,
                "north": 0.35,
            },
            "usa": {
                "ethnicity:russian": -0.30,
                "age:18-29": 0.60,
                "age:30-44": 0.30,
                "age:60+": -0.40,
                "settlement:rural": -0.50,
            },
            "china": {"ethnicity:other": 0.20, "age:18-29": 0.30, "settlement:rural": -0.20},
            "germany": {
                "ethnicity:russian": 0.30,
                "ethnicity:other": 0.40,
                "age:18-29": 0.20,
                "settlement:rural": -0.30,
            },
            "japan": {"age:18-29": 0.40, "settlement:rural": -0.40},
            "turkey": {"ethnicity:russian": -1.20, "ethnicity:other": 0.40, "north": -0.30},
            "south_korea": {
                "age:18-29": 0.70,
                "age:30-44": 0.30,
                "age:60+": -0.50,
                "settlement:rural": -0.30,
            },
            "uae": {"ethnicity:russian": -0.60, "age:18-29": 0.40, "north": -0.20},
            "singapore": {"age:30-44": 0.30, "settlement:rural": -0.60},
            NONE: {"age:45-59": 0.10},
            DONT_KNOW: {**_DK_NOMINAL, "age:60+": 0.50},
        },
    ),
)

QUESTIONS: tuple[OrdinalQuestion | NominalQuestion, ...] = (*ORDINAL_QUESTIONS, *NOMINAL_QUESTIONS)


def responses(question: OrdinalQuestion | NominalQuestion) -> list[str]:
    """Every response of a question, ``dont_know`` last."""
    if isinstance(question, OrdinalQuestion):
        return [*PRESENCE_LEVELS, DONT_KNOW]
    return list(question.target)


# --------------------------------------------------------------------------------------
# Reading the official figures
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """The official tables, read from ``data/kazakhstan/sources/``."""

    sex_age: pd.DataFrame  # indexed by iso_3166_2, in file order
    religion: pd.DataFrame  # indexed by iso_3166_2
    national: pd.Series  # quantity -> value (text)

    @property
    def regions(self) -> list[str]:
        """The 17 ISO 3166-2 codes, in the official table's order."""
        return list(self.sex_age.index)

    def number(self, quantity: str) -> float:
        """A national figure from national_2020.csv."""
        return float(self.national[quantity])


def read_sources(folder: Path = SOURCES) -> Sources:
    sex_age = pd.read_csv(folder / "region_sex_age_2020.csv").set_index("iso_3166_2")
    religion = pd.read_csv(folder / "region_religion_census_2021.csv").set_index("iso_3166_2")
    national = pd.read_csv(folder / "national_2020.csv", dtype=str).set_index("quantity")["value"]
    if set(religion.index) != set(sex_age.index):
        raise SystemExit("region codes differ between the age and the religion tables")
    return Sources(sex_age, religion.loc[sex_age.index], national)


# --------------------------------------------------------------------------------------
# 1. The frame
# --------------------------------------------------------------------------------------


def adults_by_region_sex(src: Sources) -> pd.DataFrame:
    """Adults 18+: working age + pension age - (2/16) x the 0-15 band, by region x sex."""
    t = src.sex_age
    rows = []
    for sex, prefix, work, pension in (
        ("male", "men", "men_16_62", "men_63plus"),
        ("female", "women", "women_16_58", "women_59plus"),
    ):
        working_18 = t[work] - TEEN_FRACTION * t[f"{prefix}_0_15"]
        for region in src.regions:
            rows.append(
                {
                    "region": region,
                    "sex": sex,
                    "working_18": float(working_18[region]),
                    "pension": float(t.loc[region, pension]),
                }
            )
    out = pd.DataFrame(rows)
    out["adults"] = out["working_18"] + out["pension"]
    return out


def working_age_profile(src: Sources) -> dict[str, dict[str, float]]:
    """Shares of each age piece within working-age adults, by sex (national age shares).

    Within each band of national_2020.csv (18-44, 45-59, 60-74) single years are
    assumed equally numerous, so a piece of ``k`` years of a band of ``n`` years gets
    ``k / n`` of it. Men's working age 18-62 = 18-29, 30-44, 45-59 and 60-62;
    women's 18-58 = 18-29, 30-44 and 45-58.
    """
    band = {
        "18-44": src.number("adults_18_44_share"),
        "45-59": src.number("adults_45_59_share"),
        "60-74": src.number("adults_60_74_share"),
    }
    male = {
        "18-44": src.number("male_share_18_44"),
        "45-59": src.number("male_share_45_59"),
        "60-74": src.number("male_share_60_74"),
    }
    per_sex = {
        "male": {b: band[b] * male[b] for b in band},
        "female": {b: band[b] * (1 - male[b]) for b in band},
    }
    profiles = {}
    for sex, s in per_sex.items():
        pieces = {
            "18-29": s["18-44"] * YEARS_18_29 / YEARS_18_44,
            "30-44": s["18-44"] * YEARS_30_44 / YEARS_18_44,
        }
        if sex == "male":
            pieces["45-59"] = s["45-59"]
            pieces["60-62"] = s["60-74"] * 3 / YEARS_60_74
        else:
            pieces["45-58"] = s["45-59"] * 14 / YEARS_45_59
        total = sum(pieces.values())
        profiles[sex] = {k: v / total for k, v in pieces.items()}
    return profiles


def region_sex_age_margin(src: Sources) -> pd.DataFrame:
    """Region x sex x age counts that keep each region x sex's working/pension split.

    Men: 18-29, 30-44, 45-59 and 60-62 share the working-age adults by the national
    profile; 60+ = the 60-62 piece + all pension-age men (63+).
    Women: 18-29, 30-44 and 45-58 share the working-age adults; the 59-year-olds (the
    youngest pension-age year) are taken as one average year of the region's 45-58
    piece and moved to 45-59; 60+ = the rest of the pension-age women.
    """
    profile = working_age_profile(src)
    rows = []
    for rec in adults_by_region_sex(src).itertuples(index=False):
        p = profile[rec.sex]
        w = rec.working_18
        counts = {"18-29": w * p["18-29"], "30-44": w * p["30-44"]}
        if rec.sex == "male":
            counts["45-59"] = w * p["45-59"]
            counts["60+"] = w * p["60-62"] + rec.pension
        else:
            aged_59 = w * p["45-58"] / 14
            counts["45-59"] = w * p["45-58"] + aged_59
            counts["60+"] = rec.pension - aged_59
        rows += [
            {"region": rec.region, "sex": rec.sex, "age": a, "population": counts[a]} for a in AGES
        ]
    return pd.DataFrame(rows)


def ethnic_shares(src: Sources, adults: pd.Series) -> pd.DataFrame:
    """Regional ethnic shares of adults from the 2021 census religion proxies.

    With c, i the census Christian and Islam shares, p = c / (c + i):
    russian = alpha * p; kazakh = (1 - p) * (1 - gamma * w); other = the rest, where
    w is OTHER_MUSLIM_WEIGHT (1 if unlisted) and alpha, gamma make the adult-weighted
    national shares equal national_2020.csv's Russian and Kazakh shares.
    """
    c = src.religion["christian_share"]
    i = src.religion["islam_share"]
    p = c / (c + i)
    weight = adults / adults.sum()
    alpha = src.number("russian_share") / float((weight * p).sum())
    w = pd.Series([OTHER_MUSLIM_WEIGHT.get(r, 1.0) for r in p.index], index=p.index)
    kazakh_target = src.number("kazakh_share")
    gamma = (float((weight * (1 - p)).sum()) - kazakh_target) / float((weight * (1 - p) * w).sum())
    out = pd.DataFrame({"russian": alpha * p, "kazakh": (1 - p) * (1 - gamma * w)})
    out["other"] = 1 - out["russian"] - out["kazakh"]
    if not ((out >= 0) & (out <= 1)).all().all() or not 0 < alpha <= 1 or gamma < 0:
        raise SystemExit(f"ethnic shares out of range (alpha={alpha}, gamma={gamma})")
    out.attrs.update(alpha=alpha, gamma=gamma)
    return out[list(ETHNICITIES)]


def urban_shares(src: Sources, adults: pd.Series) -> pd.Series:
    """Urban share of adults: cities 1; oblasts URBAN_BASE shifted on the logit scale."""
    target = src.number("urban_share")
    oblasts = [r for r in src.regions if r not in CITIES]
    base = logit(pd.Series(URBAN_BASE)[oblasts])
    city_adults = float(adults[list(CITIES)].sum())

    def gap(shift: float) -> float:
        return (city_adults + float((adults[oblasts] * expit(base + shift)).sum())) / float(
            adults.sum()
        ) - target

    shift = brentq(gap, -5, 5, xtol=1e-14, rtol=1e-15)
    out = pd.Series(1.0, index=src.regions)
    out[oblasts] = expit(base + shift)
    out.attrs["shift"] = shift
    return out


def build_frame(src: Sources) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raked frame and the region covariates."""
    sex_age = region_sex_age_margin(src)
    adults = sex_age.groupby("region", sort=False)["population"].sum()
    eth = ethnic_shares(src, adults)
    urban = urban_shares(src, adults)
    by_ethnicity = pd.DataFrame(
        [
            {"region": r, "ethnicity": e, "population": adults[r] * eth.loc[r, e]}
            for r in src.regions
            for e in ETHNICITIES
        ]
    )
    by_settlement = pd.DataFrame(
        [
            {"region": r, "settlement": s, "population": adults[r] * share}
            for r in src.regions
            for s, share in (("urban", urban[r]), ("rural", 1 - urban[r]))
        ]
    )
    joint = rake([sex_age, by_ethnicity, by_settlement], tol=1e-13)
    frame = joint[[*CELLS, "population"]].sort_values(list(CELLS)).reset_index(drop=True)
    # Round once, here: everything downstream (truth, survey) uses the frame as written.
    frame["population"] = frame["population"].round(4)
    frame.attrs["raking"] = joint.attrs["raking"]
    covariates = pd.DataFrame(
        {
            "region": src.regions,
            "name": src.sex_age["region"].to_numpy(),
            "adult_population": adults.to_numpy(),
            "urban_share": urban.to_numpy(),
            "russian_share": eth["russian"].to_numpy(),
            "kazakh_share": eth["kazakh"].to_numpy(),
            "christian_share_2021": src.religion["christian_share"].to_numpy(),
            "islam_share_2021": src.religion["islam_share"].to_numpy(),
        }
    )
    covariates.attrs.update(
        alpha=eth.attrs["alpha"], gamma=eth.attrs["gamma"], urban_shift=urban.attrs["shift"]
    )
    return frame, covariates


# --------------------------------------------------------------------------------------
# 2. The true opinion model
# --------------------------------------------------------------------------------------


def design_terms(frame: pd.DataFrame, covariates: pd.DataFrame) -> dict[str, np.ndarray]:
    """Indicator columns ``"variable:level"`` per frame cell, plus the ``north`` index.

    ``north`` is the region's 2021 Christian share standardised over the 17 regions
    (unweighted mean and standard deviation).
    """
    terms = {
        f"{v}:{level}": (frame[v].astype(str) == level).to_numpy(dtype=float)
        for v in ("sex", "age", "ethnicity", "settlement")
        for level in frame[v].cat.categories
    }
    c = covariates.set_index("region")["christian_share_2021"]
    north = (c - c.mean()) / c.std(ddof=0)
    terms["north"] = frame["region"].astype(str).map(north).to_numpy(dtype=float)
    return terms


def linear(effects: Mapping[str, float], terms: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sum of effect x term over the cells."""
    unknown = set(effects) - set(terms)
    if unknown:
        raise SystemExit(f"unknown terms in the opinion model: {sorted(unknown)}")
    n = len(next(iter(terms.values())))
    return sum((value * terms[name] for name, value in effects.items()), np.zeros(n))


@dataclass(frozen=True)
class TrueModel:
    """Calibrated parameters and cell probabilities of every question."""

    probabilities: dict[str, np.ndarray]  # question -> cells x responses
    parameters: pd.DataFrame  # question, parameter, response, term, value


def region_deviations(
    rng: np.random.Generator, regions: list[str], sd: float, sd_eth: float
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """A random region deviation and a (small) region x ethnicity deviation."""
    region = dict(zip(regions, rng.normal(0.0, sd, len(regions)), strict=True))
    pairs = [(r, e) for r in regions for e in ETHNICITIES]
    region_eth = dict(zip(pairs, rng.normal(0.0, sd_eth, len(pairs)), strict=True))
    return region, region_eth


def deviation_per_cell(
    frame: pd.DataFrame, region: Mapping[str, float], region_eth: Mapping[tuple[str, str], float]
) -> np.ndarray:
    r = frame["region"].astype(str)
    e = frame["ethnicity"].astype(str)
    return np.array([region[a] + region_eth[(a, b)] for a, b in zip(r, e, strict=True)])


def _solve_shift(weight: np.ndarray, eta: np.ndarray, target: float, sign: float) -> float:
    """The x with ``weight @ expit(sign * (x + eta)) == target`` (brentq to 1e-14)."""

    def gap(x: float) -> float:
        return float(weight @ expit(sign * (x + eta))) - target

    return float(brentq(gap, -40.0, 40.0, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500))


def true_model(frame: pd.DataFrame, covariates: pd.DataFrame, seed: int) -> TrueModel:
    """Build and calibrate the true opinion model of every question.

    Presence questions: logit P(dont_know) = a_q + DONT_KNOW_EFFECTS + d_r; given an
    answer, eta = effects + u_r + v_re and P(less) = expit(c1 - eta),
    P(less or same) = expit(c2 - eta). Country questions: P(k) proportional to
    exp(a_k + effects_k + u_rk + v_rek). The intercepts a and cutpoints c1 < c2 are
    solved so that frame-weighted national shares equal each question's target.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    terms = design_terms(frame, covariates)
    weight = frame["population"].to_numpy(dtype=float)
    weight = weight / weight.sum()
    regions = list(frame["region"].cat.categories)
    probabilities: dict[str, np.ndarray] = {}
    params: list[dict[str, object]] = []
    for q in ORDINAL_QUESTIONS:
        probabilities[q.name] = _ordinal_truth(q, frame, terms, weight, regions, rng, params)
    for q in NOMINAL_QUESTIONS:
        probabilities[q.name] = _nominal_truth(q, frame, terms, weight, regions, rng, params)
    return TrueModel(probabilities, pd.DataFrame(params))


def _record(
    params: list[dict[str, object]], q: str, parameter: str, response: str, term: str, value: float
) -> None:
    params.append(
        {"question": q, "parameter": parameter, "response": response, "term": term, "value": value}
    )


def _ordinal_truth(
    q: OrdinalQuestion,
    frame: pd.DataFrame,
    terms: dict[str, np.ndarray],
    weight: np.ndarray,
    regions: list[str],
    rng: np.random.Generator,
    params: list[dict[str, object]],
) -> np.ndarray:
    """An ordinal question's true probabilities per frame cell; its parameters into ``params``."""
    dk_region, dk_region_eth = region_deviations(rng, regions, SD_REGION, 0.0)
    region, region_eth = region_deviations(rng, regions, SD_REGION, SD_REGION_ETHNICITY)
    dk_eta = linear(DONT_KNOW_EFFECTS, terms) + deviation_per_cell(frame, dk_region, dk_region_eth)
    a = _solve_shift(weight, dk_eta, q.target[DONT_KNOW], 1.0)
    p_dk = expit(a + dk_eta)
    eta = linear(q.effects, terms) + deviation_per_cell(frame, region, region_eth)
    answered = weight * (1 - p_dk)
    # P(less) = expit(c1 - eta); P(more) = 1 - expit(c2 - eta) = expit(-(c2 - eta))
    c1 = _solve_shift(answered, -eta, q.target["less"], 1.0)
    c2 = _solve_shift(answered, -eta, q.target["more"], -1.0)
    if not c1 < c2:
        raise SystemExit(f"{q.name}: cutpoints out of order ({c1}, {c2})")
    less = expit(c1 - eta)
    less_or_same = expit(c2 - eta)
    probs = np.column_stack(
        [
            (1 - p_dk) * (1 - less_or_same),
            (1 - p_dk) * (less_or_same - less),
            (1 - p_dk) * less,
            p_dk,
        ]
    )
    _record(params, q.name, "intercept", DONT_KNOW, "", a)
    for term, value in DONT_KNOW_EFFECTS.items():
        _record(params, q.name, "effect", DONT_KNOW, term, value)
    for r in regions:
        _record(params, q.name, "region", DONT_KNOW, r, dk_region[r])
    _record(params, q.name, "cutpoint", "less->same", "", c1)
    _record(params, q.name, "cutpoint", "same->more", "", c2)
    for term, value in q.effects.items():
        _record(params, q.name, "effect", "more", term, value)
    for r in regions:
        _record(params, q.name, "region", "more", r, region[r])
    for (r, e), value in region_eth.items():
        _record(params, q.name, "region_ethnicity", "more", f"{r}:{e}", value)
    return probs


def _nominal_truth(
    q: NominalQuestion,
    frame: pd.DataFrame,
    terms: dict[str, np.ndarray],
    weight: np.ndarray,
    regions: list[str],
    rng: np.random.Generator,
    params: list[dict[str, object]],
) -> np.ndarray:
    """A nominal question's true probabilities per frame cell; its parameters into ``params``."""
    categories = list(q.target)
    base = np.column_stack([linear(q.effects.get(k, {}), terms) for k in categories])
    deviations = [
        region_deviations(rng, regions, SD_REGION_NOMINAL, SD_REGION_ETHNICITY) for _ in categories
    ]
    base = base + np.column_stack([deviation_per_cell(frame, *d) for d in deviations])
    target = np.array([q.target[k] for k in categories])
    intercept = np.log(target)
    for _ in range(10_000):
        probs = _softmax(intercept + base)
        current = weight @ probs
        step = np.log(target / current)
        intercept = intercept + step
        if np.abs(current - target).max() < 1e-15:
            break
    intercept = intercept - intercept[categories.index(NONE)]
    probs = _softmax(intercept + base)
    for j, k in enumerate(categories):
        _record(params, q.name, "intercept", k, "", float(intercept[j]))
        for term, value in q.effects.get(k, {}).items():
            _record(params, q.name, "effect", k, term, value)
        region, region_eth = deviations[j]
        for r in regions:
            _record(params, q.name, "region", k, r, region[r])
        for (r, e), value in region_eth.items():
            _record(params, q.name, "region_ethnicity", k, f"{r}:{e}", value)
    return probs


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def truth_tables(frame: pd.DataFrame, model: TrueModel) -> tuple[pd.DataFrame, pd.DataFrame]:
    """True population shares by region and by ethnicity (nationally)."""
    by_region, by_ethnicity = [], []
    pop = frame["population"].to_numpy(dtype=float)
    for q in QUESTIONS:
        probs = model.probabilities[q.name]
        levels = responses(q)
        for column, rows in (("region", by_region), ("ethnicity", by_ethnicity)):
            group = frame[column].astype(str).to_numpy()
            for g in frame[column].cat.categories:
                mask = group == g
                shares = pop[mask] @ probs[mask] / pop[mask].sum()
                rows += [
                    {"question": q.name, column: g, "response": k, "share": float(s)}
                    for k, s in zip(levels, shares, strict=True)
                ]
    return pd.DataFrame(by_region), pd.DataFrame(by_ethnicity)


def national_shares(frame: pd.DataFrame, model: TrueModel) -> dict[str, dict[str, float]]:
    pop = frame["population"].to_numpy(dtype=float)
    pop = pop / pop.sum()
    return {
        q.name: dict(zip(responses(q), pop @ model.probabilities[q.name], strict=True))
        for q in QUESTIONS
    }


# --------------------------------------------------------------------------------------
# 3. The synthetic survey
# --------------------------------------------------------------------------------------


def allocate(sizes: pd.Series, n: int) -> pd.Series:
    """Largest-remainder allocation of ``n`` in proportion to ``sizes``."""
    quota = sizes / sizes.sum() * n
    out = np.floor(quota).astype(int)
    remainder = (quota - out).sort_values(ascending=False, kind="stable")
    out[remainder.index[: n - int(out.sum())]] += 1
    return out


def draw_survey(frame: pd.DataFrame, model: TrueModel, seed: int) -> pd.DataFrame:
    """Draw respondents by the design, then their answers from the true probabilities."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    pop = frame["population"].to_numpy(dtype=float)
    region = frame["region"].astype(str).to_numpy()
    settlement = frame["settlement"].astype(str).to_numpy()
    age = frame["age"].astype(str).to_numpy()
    propensity = (
        pop
        * np.array([SETTLEMENT_FACTOR[s] for s in settlement])
        * np.array([AGE_FACTOR[a] for a in age])
    )
    regions = list(frame["region"].cat.categories)
    adults = frame.groupby("region", observed=True, sort=False)["population"].sum()[regions]
    n_region = allocate(adults, SAMPLE_SIZE)

    chosen, weights = [], []
    for r in regions:
        idx = np.flatnonzero(region == r)
        cells = rng.choice(idx, size=int(n_region[r]), p=propensity[idx] / propensity[idx].sum())
        chosen.append(cells)
        # The firm's known inclusion probability per person: region quota x settlement
        # over-representation only (it does not know the age pattern of non-response).
        by_settlement = {s: pop[idx][settlement[idx] == s].sum() for s in SETTLEMENTS}
        denominator = sum(SETTLEMENT_FACTOR[s] * by_settlement[s] for s in SETTLEMENTS)
        inclusion = n_region[r] * np.array([SETTLEMENT_FACTOR[s] for s in settlement[cells]])
        weights.append(denominator / inclusion)
    cells = np.concatenate(chosen)
    weight = np.concatenate(weights)
    weight = weight / weight.mean()

    survey = frame.loc[cells, list(CELLS)].astype(str).reset_index(drop=True)
    survey.insert(0, "respondent_id", [f"KZ2020-{i + 1:04d}" for i in range(len(cells))])
    survey["education"] = _draw_education(rng, survey)
    survey["weight"] = weight
    for q in QUESTIONS:
        probs = model.probabilities[q.name][cells]
        survey[q.name] = _draw_categorical(rng, probs, responses(q))
    return survey


def _draw_categorical(rng: np.random.Generator, probs: np.ndarray, labels: list[str]) -> np.ndarray:
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cumulative[:, -1]
    index = (u[:, None] >= cumulative).sum(axis=1)
    return np.asarray(labels, dtype=object)[np.minimum(index, len(labels) - 1)]


def _draw_education(rng: np.random.Generator, survey: pd.DataFrame) -> np.ndarray:
    eta = np.zeros((len(survey), len(EDUCATION)))
    for j, level in enumerate(EDUCATION):
        for term, value in EDUCATION_MODEL.get(level, {}).items():
            if term == "intercept":
                eta[:, j] += value
            else:
                var, lev = term.split(":")
                eta[:, j] += value * (survey[var] == lev).to_numpy()
    return _draw_categorical(rng, _softmax(eta), list(EDUCATION))


# --------------------------------------------------------------------------------------
# 4. Adjacency
# --------------------------------------------------------------------------------------

#: Polygon parts smaller than this fraction of their region's area are stray slivers.
SLIVER_FRACTION = 1e-3
#: Regions whose (sliver-free) outlines come this close (degrees, about 10 m) are neighbours.
ADJACENCY_TOLERANCE = 1e-4


def region_adjacency(path: Path = BOUNDARIES) -> pd.DataFrame:
    """Pairs of regions whose 2018 outlines touch (within the tolerance)."""
    reader = shapefile.Reader(str(path))
    geoms = {}
    for shp, rec in zip(reader.shapes(), reader.records(), strict=True):
        geom = shape(shp.__geo_interface__)
        parts = list(getattr(geom, "geoms", [geom]))
        keep = [p for p in parts if p.area >= SLIVER_FRACTION * geom.area]
        geoms[rec["ISO_3166_2"]] = keep
    reader.close()
    pairs = []
    for a, b in itertools.combinations(sorted(geoms), 2):
        distance = min(pa.distance(pb) for pa in geoms[a] for pb in geoms[b])
        if distance <= ADJACENCY_TOLERANCE:
            pairs.append({"region_a": a, "region_b": b})
    return pd.DataFrame(pairs, columns=["region_a", "region_b"])


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_csv(df: pd.DataFrame, path: Path, float_format: str | None = None) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")
        tmp.chmod(0o644)  # readable like any checked-out file (mkstemp makes it 0600)


def write_codebook(path: Path, frame: pd.DataFrame) -> None:
    """The survey's data contract (TOML, written by hand so the bytes are stable)."""

    def strings(values: Sequence[str]) -> str:
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    lines = [
        "# Data contract of survey_2020.csv. Generated by scripts/build_kazakhstan_data.py;",
        "# see README.md. The survey is SYNTHETIC: drawn from a made-up opinion model.",
        "",
        "[survey]",
        'title = "Synthetic Kazakhstan geopolitical-attitudes survey, 2020 (opinionmap demo data)"',
        f"missing = {strings([DONT_KNOW])}",
        "",
        "[variables.respondent_id]",
        'role = "id"',
        "",
    ]
    predictors = {
        "region": ("area", "Region (ISO 3166-2, 2020 units)", list(frame["region"].cat.categories)),
        "sex": ("predictor", "Sex", list(SEXES)),
        "age": ("predictor", "Age band", list(AGES)),
        "ethnicity": ("predictor", "Ethnicity", list(ETHNICITIES)),
        "settlement": ("predictor", "Type of settlement", list(SETTLEMENTS)),
        "education": ("predictor", "Education (not in the frame)", list(EDUCATION)),
    }
    for name, (role, label, levels) in predictors.items():
        lines += [
            f"[variables.{name}]",
            f"role = {json.dumps(role)}",
            f"label = {json.dumps(label)}",
            f"levels = {strings(levels)}",
            "",
        ]
    lines += ["[variables.weight]", 'role = "weight"', 'label = "Design weight (mean 1)"', ""]
    for q in QUESTIONS:
        levels = [k for k in responses(q) if k != DONT_KNOW]
        lines += [
            f"[variables.{q.name}]",
            'role = "outcome"',
            f"label = {json.dumps(q.label)}",
            f"levels = {strings(levels)}",
            f"missing = {strings([DONT_KNOW])}",
            'missing_policy = "drop"',
            "",
        ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
        tmp.chmod(0o644)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out: Path = args.out

    src = read_sources()
    frame, covariates = build_frame(src)
    model = true_model(frame, covariates, args.seed)
    truth, truth_eth = truth_tables(frame, model)
    survey = draw_survey(frame, model, args.seed)
    adjacency = region_adjacency()

    write_csv(frame, out / "frame_2020.csv", "%.4f")
    write_csv(covariates, out / "region_covariates_2020.csv", "%.10g")
    write_csv(survey, out / "survey_2020.csv", "%.6f")
    write_codebook(out / "survey_2020.codebook.toml", frame)
    write_csv(truth, out / "truth_2020.csv", "%.10g")
    write_csv(truth_eth, out / "truth_ethnicity_2020.csv", "%.10g")
    write_csv(model.parameters, out / "truth_parameters_2020.csv", "%.10g")
    write_csv(adjacency, out / "region_adjacency.csv")

    national = national_shares(frame, model)
    worst = max(abs(national[q.name][k] - q.target[k]) for q in QUESTIONS for k in q.target)
    print(
        f"wrote {out}: {len(frame)} frame cells, {len(survey)} respondents, "
        f"{len(adjacency)} neighbour pairs; worst calibration error {worst * 100:.2g} pp; "
        f"raking error {frame.attrs['raking'].max_relative_error:.2g}; "
        f"alpha={covariates.attrs['alpha']:.6f} gamma={covariates.attrs['gamma']:.6f} "
        f"urban shift={covariates.attrs['urban_shift']:.6f}; {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
