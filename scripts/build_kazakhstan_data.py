"""Build the Kazakhstan demo data: frame, true population, synthetic survey, truth, adjacency.

Usage::

    python scripts/build_kazakhstan_data.py [--out DIR] [--seed N]

Reads the official figures copied into ``data/kazakhstan/sources/`` and the 2018
boundaries in ``data/geo/kazakhstan/``; writes (atomically, byte-stable for a
given seed) into ``--out`` (default ``data/kazakhstan``):

- ``frame_2020.csv``: adults 18+ by region x sex x age x ethnicity x settlement,
  raked to margins derived from the official tables (the approximation a user has);
- ``region_covariates_2020.csv``: region-level predictors;
- ``truth_population_2020.csv``: the TRUE adult population by district x sex x age x
  ethnicity x settlement x education, with associations the frame does not have;
- ``survey_2020.csv`` + ``survey_2020.codebook.toml``: a SYNTHETIC survey drawn by
  a stratified two-stage design from the true population and opinion model;
- ``truth_2020.csv``, ``truth_ethnicity_2020.csv``, ``truth_district_2020.csv``:
  the true shares of the true population by region, ethnicity and district;
- ``truth_joint_2020.csv``: the true cross-question shares of the presence questions;
- ``truth_parameters_2020.csv``, ``truth_correlations_2020.csv``: every parameter
  and correlation matrix of the true opinion model;
- ``region_adjacency.csv``: regions that share a border;
- ``frame_district_2020.csv``: the frame's cells split over the 2018 districts by an
  ASSUMED rule (no district populations are bundled), for district-level models;
- ``districts_2020.csv``, ``district_adjacency.csv``: the districts (code, region, name,
  kind) and the districts that share a border;
- ``published_2020.csv``: the article's national percentages as ``question,category,percent``
  in the survey's labels (the demo report shows them beside its national estimates).

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
from numpy.polynomial.hermite_e import hermegauss
from scipy.optimize import brentq
from scipy.special import expit, logit

from opinionmap._io import atomic_path
from opinionmap.raking import rake
from opinionmap.structure import adjacency_from_boundaries

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "data" / "kazakhstan" / "sources"
BOUNDARIES = ROOT / "data" / "geo" / "kazakhstan" / "kaz_admbnda_adm1_2018.shp"
DISTRICT_BOUNDARIES = ROOT / "data" / "geo" / "kazakhstan" / "kaz_admbnda_adm2_2018.shp"
DEFAULT_OUT = ROOT / "data" / "kazakhstan"
DEFAULT_SEED = 20200214  # fieldwork ended around February 2020

SEXES = ("male", "female")
AGES = ("18-29", "30-44", "45-59", "60+")
ETHNICITIES = ("kazakh", "russian", "other")
SETTLEMENTS = ("urban", "rural")
EDUCATION = ("secondary", "vocational", "higher")
CELLS = ("region", "sex", "age", "ethnicity", "settlement")
CITIES = ("KZ-AST", "KZ-ALA", "KZ-SHY")
#: The true population's cells: the frame's variables, the district and education.
TRUE_CELLS = ("region", "district", "sex", "age", "ethnicity", "settlement", "education")

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
# Assumptions for the true population (each one is in data/kazakhstan/README.md)
# --------------------------------------------------------------------------------------

#: ASSUMED national shares of adults by highest completed education: general secondary or
#: less, vocational (technical and vocational schools), higher (incomplete higher counted
#: as secondary). Rounded figures of the order the 2009 and 2021 censuses report; no
#: official table is bundled, so they are not checked against one.
EDUCATION_SHARES = {"secondary": 0.38, "vocational": 0.35, "higher": 0.27}

#: ASSUMED split of each region's urban and rural adults over its 2018 districts: a
#: Dirichlet draw with parameters DIRICHLET_CONCENTRATION x weight, so the expected
#: share of a district is its weight over the weights of the region's districts.
#: Urban adults live in the regional centre (KATO digits 3-4 = 10), the other towns of
#: regional significance (digits < 30), the towns of the rural districts ("raions") and
#: the districts of the three cities; rural adults only in the raions.
URBAN_UNIT_WEIGHT = {"regional centre": 20.0, "town": 4.0, "raion": 1.0, "city district": 1.0}
DIRICHLET_CONCENTRATION = 6.0

#: Associations of the true population that the raked frame does not have, as log
#: multipliers of a cell's size before raking (raking to the margins keeps these
#: interactions; see README). A term "a:x&b:y" applies to cells with a = x and b = y.
POPULATION_ASSOCIATIONS = {
    # ethnic Russians live more in towns, the "other" groups (Uzbeks, Uyghurs) more in villages
    "ethnicity:russian&settlement:urban": 1.0,
    "ethnicity:other&settlement:urban": -0.3,
    # ethnic Russians are older
    "ethnicity:russian&age:18-29": -0.45,
    "ethnicity:russian&age:30-44": -0.2,
    "ethnicity:russian&age:60+": 0.5,
    "ethnicity:other&age:18-29": 0.15,
    # young adults move to towns
    "age:18-29&settlement:urban": 0.25,
    "age:60+&settlement:urban": -0.1,
    # education (against general secondary): by age, settlement, sex, ethnicity
    "education:vocational&age:18-29": -0.2,
    "education:vocational&age:60+": -0.3,
    "education:vocational&settlement:rural": -0.2,
    "education:vocational&ethnicity:russian": 0.3,
    "education:higher&age:18-29": -0.1,
    "education:higher&age:30-44": 0.3,
    "education:higher&age:60+": -0.6,
    "education:higher&settlement:rural": -1.0,
    "education:higher&sex:female": 0.3,
    "education:higher&ethnicity:russian": 0.2,
    "education:higher&ethnicity:other": -0.4,
    "education:higher&metropolis": 0.6,  # Nur-Sultan and Almaty city
}
#: ASSUMED error of the frame's proxies for regional ethnic and urban shares: the true
#: region x ethnicity and region x settlement adults are the frame's times exp(N(0, SD))
#: per region and level (Kazakh and urban: no change), raked back to the official
#: regional totals and national shares.
SD_FRAME_ERROR = {"ethnicity": {"russian": 0.20, "other": 0.30}, "settlement": {"rural": 0.15}}
#: Each district's own ethnic mix: a log multiplier ~ N(0, SD) for Russians and for
#: "other" (against Kazakhs), drawn once per district.
SD_DISTRICT_ETHNICITY = 0.5
#: The two largest cities, where graduates concentrate.
METROPOLISES = ("KZ-AST", "KZ-ALA")

# --------------------------------------------------------------------------------------
# Survey design
# --------------------------------------------------------------------------------------

SAMPLE_SIZE = 1200
#: Urban strata get this many times their proportional share of a region's interviews.
URBAN_OVERSAMPLING = 1.5
#: About this many interviews per sampling point: a stratum of n interviews gets
#: max(MIN_POINTS, round(n / TAKE)) points.
TAKE = 8
MIN_POINTS = 2
#: The firm's measure of size for drawing points is an outdated count of each district
#: part's adults: the true count x exp(N(0, SD)), drawn once.
SD_MEASURE_OF_SIZE = 0.15
#: Relative response propensity of an adult in a sampling point (interviewers replace a
#: refusal by the next household until the point's interviews are done): education, with
#: a steeper gradient in towns, then age and sex.
RESPONSE_EDUCATION = {
    "urban": {"secondary": 0.55, "vocational": 0.90, "higher": 1.50},
    "rural": {"secondary": 0.80, "vocational": 1.00, "higher": 1.30},
}
RESPONSE_AGE = {"18-29": 1.25, "30-44": 1.10, "45-59": 1.00, "60+": 0.80}
RESPONSE_SEX = {"male": 1.00, "female": 1.15}

# --------------------------------------------------------------------------------------
# The true opinion model
# --------------------------------------------------------------------------------------

PRESENCE_LEVELS = ("more", "same", "less")
DONT_KNOW = "dont_know"
NONE = "none"

#: The respondent-level latent traits of the presence questions: "orientation" (positive:
#: towards the West, away from Russia) and "openness" (positive: welcomes foreign presence
#: in general and answers more often). Standard normal, with this correlation.
TRAITS = ("orientation", "openness")
TRAIT_CORRELATION = ((1.0, 0.0), (0.0, 1.0))
#: Loadings of the dont_know stage of every presence question on the traits.
DONT_KNOW_LOADING = (0.0, -0.6)
#: Share of the traits' variance that lies between sampling points (neighbourhoods): the
#: population's traits are still standard normal, so the truth does not depend on it.
TRAIT_SHARE_POINT = 0.3
#: Gauss-Hermite nodes per trait dimension for the integrals over the traits.
QUADRATURE_NODES = 10

#: Standard deviations of the random deviations (drawn once from the seed).
SD_REGION = 0.35  # presence, per region, correlated across the five powers
SD_DISTRICT = 0.30  # presence, per district, correlated across the five powers
SD_REGION_DONT_KNOW = 0.20  # presence dont_know stage, per region and question
SD_DISTRICT_DONT_KNOW = 0.30  # presence dont_know stage, per district, shared by the five
SD_REGION_ETHNICITY = 0.10
SD_REGION_NOMINAL = 0.35
SD_DISTRICT_NOMINAL = 0.30

#: Correlation of the region (and district) deviations across the five presence
#: questions, in the order of PRESENCE_QUESTIONS: regions warmer to Russia are cooler to
#: the USA and the EU.
POWER_CORRELATION = (
    (1.00, -0.50, 0.20, -0.45, -0.30),
    (-0.50, 1.00, -0.10, 0.70, 0.00),
    (0.20, -0.10, 1.00, 0.00, 0.10),
    (-0.45, 0.70, 0.00, 1.00, -0.10),
    (-0.30, 0.00, 0.10, -0.10, 1.00),
)


@dataclass(frozen=True)
class OrdinalQuestion:
    """A 'desired presence' question: dont_know by logit, then a cumulative logit.

    ``effects`` shift the linear predictor towards "more" (a positive value makes
    "more" likelier and "less" rarer); terms are ``"variable:level"``, interactions
    ``"variable:level&variable:level"`` and ``"north"`` (per standard deviation of the
    region's 2021 Christian share). ``loading`` multiplies the respondent's traits.
    """

    name: str
    label: str
    target: Mapping[str, float]  # more, same, less, dont_know (shares of all adults)
    published: bool
    effects: Mapping[str, float]
    loading: tuple[float, float]  # on TRAITS


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
    "education:vocational": -0.20,
    "education:higher": -0.50,
    "age:60+&settlement:rural": 0.25,
}

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
            "education:vocational": -0.05,
            "education:higher": -0.25,
            "age:18-29&settlement:rural": 0.35,
            "age:60+&settlement:rural": -0.15,
        },
        (-1.1, 0.5),
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
            "education:vocational": 0.15,
            "education:higher": 0.45,
            "age:18-29&settlement:rural": -0.45,
        },
        (1.2, 0.7),
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
            "education:higher": 0.10,
            "age:18-29&settlement:rural": -0.30,
        },
        (0.2, 0.8),
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
            "education:vocational": 0.15,
            "education:higher": 0.50,
            "age:18-29&settlement:rural": -0.40,
        },
        (1.1, 0.7),
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
            "education:vocational": -0.10,
            "education:higher": -0.35,
            "age:18-29&settlement:rural": 0.35,
        },
        (-0.3, 0.7),
    ),
)
PRESENCE_QUESTIONS = tuple(q.name for q in ORDINAL_QUESTIONS)

_DK_NOMINAL = {
    "sex:female": 0.30,
    "age:18-29": 0.10,
    "age:60+": 0.45,
    "settlement:rural": 0.30,
    "education:vocational": -0.15,
    "education:higher": -0.45,
    "age:60+&settlement:rural": 0.25,
}

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
                "education:higher": -0.20,
                "age:18-29&settlement:rural": 0.30,
            },
            "china": {"age:18-29": 0.40, "settlement:rural": -0.30, "ethnicity:other": 0.20},
            "usa": {
                "age:18-29": 0.80,
                "settlement:rural": -0.50,
                "ethnicity:russian": -0.50,
                "education:higher": 0.60,
            },
            "turkey": {
                "ethnicity:russian": -1.50,
                "ethnicity:other": 0.30,
                "age:18-29": 0.40,
                "age:60+": -0.30,
                "north": -0.30,
                "education:higher": 0.20,
            },
            "uzbekistan": {"ethnicity:other": 1.50, "ethnicity:russian": -1.00, "north": -0.60},
            "kyrgyzstan": {"ethnicity:other": 0.30, "north": -0.30},
            "belarus": {"ethnicity:russian": 1.00, "ethnicity:other": 0.50, "age:60+": 0.30},
            "germany": {
                "ethnicity:russian": 0.40,
                "ethnicity:other": 0.60,
                "age:18-29": 0.20,
                "settlement:rural": -0.20,
                "education:higher": 0.40,
            },
            NONE: {
                "age:18-29": 0.30,
                "age:30-44": 0.15,
                "settlement:rural": -0.20,
                "education:higher": 0.30,
            },
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
                "education:higher": 0.20,
                "age:18-29&settlement:rural": 0.25,
            },
            "usa": {
                "ethnicity:russian": 0.80,
                "ethnicity:other": 0.20,
                "age:18-29": -0.30,
                "age:60+": 0.40,
                "north": 0.30,
                "education:higher": -0.30,
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
            NONE: {"age:18-29": 0.20, "settlement:rural": -0.10, "education:higher": 0.20},
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
                "education:higher": -0.30,
                "age:18-29&settlement:rural": 0.30,
            },
            "usa": {
                "ethnicity:russian": -0.30,
                "age:18-29": 0.60,
                "age:30-44": 0.30,
                "age:60+": -0.40,
                "settlement:rural": -0.50,
                "education:higher": 0.40,
            },
            "china": {"ethnicity:other": 0.20, "age:18-29": 0.30, "settlement:rural": -0.20},
            "germany": {
                "ethnicity:russian": 0.30,
                "ethnicity:other": 0.40,
                "age:18-29": 0.20,
                "settlement:rural": -0.30,
                "education:higher": 0.40,
            },
            "japan": {"age:18-29": 0.40, "settlement:rural": -0.40, "education:higher": 0.50},
            "turkey": {"ethnicity:russian": -1.20, "ethnicity:other": 0.40, "north": -0.30},
            "south_korea": {
                "age:18-29": 0.70,
                "age:30-44": 0.30,
                "age:60+": -0.50,
                "settlement:rural": -0.30,
                "education:higher": 0.30,
                "age:18-29&settlement:rural": -0.40,
            },
            "uae": {"ethnicity:russian": -0.60, "age:18-29": 0.40, "north": -0.20},
            "singapore": {
                "age:30-44": 0.30,
                "settlement:rural": -0.60,
                "education:higher": 0.60,
            },
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
# 2. The true population
# --------------------------------------------------------------------------------------

LEVELS = {
    "sex": SEXES,
    "age": AGES,
    "ethnicity": ETHNICITIES,
    "settlement": SETTLEMENTS,
    "education": EDUCATION,
}


def read_districts(regions: Sequence[str], path: Path = DISTRICT_BOUNDARIES) -> pd.DataFrame:
    """The 216 districts of 2018: ``district`` (ADM2_PCODE), ``region``, ``name``, ``kind``.

    ``kind`` is "city district" in the three cities; in the oblasts "regional centre"
    (KATO digits 3-4 = 10), "town" (other towns of regional significance, digits < 30)
    or "raion" (a rural district). Rows in the frame's region order, then by code.
    """
    with shapefile.Reader(str(path)) as reader:
        records = [rec.as_dict() for rec in reader.records()]
    rows = []
    for rec in records:
        region, unit = rec["ISO_3166_2"], int(rec["KATO"][2:4])
        if region in CITIES:
            kind = "city district"
        elif unit == 10:
            kind = "regional centre"
        else:
            kind = "town" if unit < 30 else "raion"
        rows.append(
            {"district": rec["ADM2_PCODE"], "region": region, "name": rec["ADM2_EN"], "kind": kind}
        )
    out = pd.DataFrame(rows)
    unknown = sorted(set(out["region"]) - set(regions))
    if unknown or out["district"].duplicated().any():
        raise SystemExit(f"district boundaries: unknown regions {unknown} or duplicated codes")
    out["order"] = out["region"].map({r: i for i, r in enumerate(regions)})
    out = out.sort_values(["order", "district"], kind="stable").drop(columns="order")
    return out.reset_index(drop=True)


def true_region_margin(frame: pd.DataFrame, column: str, rng: np.random.Generator) -> pd.DataFrame:
    """The true adults by region x ``column``: the frame's, with the proxies' error.

    Each of the frame's counts is multiplied by exp(N(0, SD)) (SD_FRAME_ERROR; 0 for the
    reference level), then the table is raked back to the official regional totals and
    to the frame's national totals of ``column`` (official national shares).
    """
    table = frame.groupby(["region", column], observed=True)["population"].sum().reset_index()
    table = table.astype({"region": str, column: str})
    sd = table[column].map(SD_FRAME_ERROR[column]).fillna(0.0).to_numpy(dtype=float)
    start = table["population"].to_numpy(dtype=float) * np.exp(sd * rng.standard_normal(len(table)))
    margins = [
        _margin_codes(table, table.groupby(keys, sort=False)["population"].sum().reset_index())
        for keys in (["region"], [column])
    ]
    values, _ = rake_cells(start, margins)
    return table.assign(population=values)


def district_parts(
    districts: pd.DataFrame, by_settlement: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Adults per district x settlement, by a Dirichlet split of each region's adults.

    Each region's urban and rural adults (``by_settlement``) are split over its districts
    by a Dirichlet draw (URBAN_UNIT_WEIGHT; rural adults live in the raions only).
    """
    totals = by_settlement.groupby(["region", "settlement"])["population"].sum()
    totals = {(str(r), str(s)): float(v) for (r, s), v in totals.items()}
    rows = []
    for region, units in districts.groupby("region", sort=False):
        for settlement in SETTLEMENTS:
            if settlement == "rural":
                units = units[units["kind"] == "raion"]
            total = totals.get((str(region), settlement), 0.0)
            if total <= 0:
                continue  # the three cities have no rural adults
            weight = units["kind"].map(URBAN_UNIT_WEIGHT).to_numpy(dtype=float)
            if settlement == "rural":
                weight = np.ones(len(units))
            share = rng.dirichlet(DIRICHLET_CONCENTRATION * weight)
            rows += [
                {"region": region, "district": d, "settlement": settlement, "population": p}
                for d, p in zip(units["district"], total * share, strict=True)
            ]
    return pd.DataFrame(rows)


def indicators(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """0/1 columns ``"variable:level"`` for the cell variables present, and ``metropolis``."""
    terms = {
        f"{v}:{level}": (table[v].astype(str).to_numpy() == level).astype(float)
        for v, levels in LEVELS.items()
        if v in table.columns
        for level in levels
    }
    terms["metropolis"] = table["region"].astype(str).isin(METROPOLISES).to_numpy(dtype=float)
    return terms


def term_values(name: str, terms: Mapping[str, np.ndarray]) -> np.ndarray:
    """A term's column: an indicator, or the product of those joined by ``&``."""
    factors = name.split("&")
    unknown = [f for f in factors if f not in terms]
    if unknown:
        raise SystemExit(f"unknown terms {unknown} in {name!r}")
    out = terms[factors[0]]
    for factor in factors[1:]:
        out = out * terms[factor]
    return out


def linear(effects: Mapping[str, float], terms: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sum of effect x term over the cells."""
    n = len(next(iter(terms.values())))
    return sum((value * term_values(name, terms) for name, value in effects.items()), np.zeros(n))


def population_grid(parts: pd.DataFrame) -> pd.DataFrame:
    """Every cell of the true population: district part x sex x age x ethnicity x education."""
    inner = pd.MultiIndex.from_product(
        [SEXES, AGES, ETHNICITIES, EDUCATION], names=["sex", "age", "ethnicity", "education"]
    ).to_frame(index=False)
    grid = parts[["region", "district", "settlement"]].merge(inner, how="cross")
    return grid[list(TRUE_CELLS)]


def population_seed(
    grid: pd.DataFrame, districts: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """Relative cell sizes before raking.

    POPULATION_ASSOCIATIONS, and each district's ethnic mix: log multipliers
    ~ N(0, SD_DISTRICT_ETHNICITY) for Russians and for "other", drawn per district.
    """
    terms = indicators(grid)
    mix = rng.normal(0.0, SD_DISTRICT_ETHNICITY, (len(districts), 2))
    where = pd.Index(districts["district"]).get_indexer(grid["district"])
    log_seed = linear(POPULATION_ASSOCIATIONS, terms)
    log_seed += (
        mix[where, 0] * terms["ethnicity:russian"] + mix[where, 1] * terms["ethnicity:other"]
    )
    return np.exp(log_seed)


def _margin_codes(grid: pd.DataFrame, margin: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each grid cell's row in ``margin`` (by its key columns) and the margin's counts."""
    keys = [c for c in margin.columns if c != "population"]
    rows = pd.MultiIndex.from_frame(margin[keys].astype(str))
    code = rows.get_indexer(pd.MultiIndex.from_frame(grid[keys].astype(str)))
    if (code < 0).any():
        raise SystemExit(f"true population: cells without a margin row for {keys}")
    return code, margin["population"].to_numpy(dtype=float)


def rake_cells(
    seed: np.ndarray, margins: Sequence[tuple[np.ndarray, np.ndarray]], tol: float = 1e-10
) -> tuple[np.ndarray, int]:
    """Iterative proportional fitting of cell sizes to margins given as (cell codes, counts)."""
    x = seed.copy()
    for sweep in range(1, 10_001):
        for code, target in margins:
            current = np.bincount(code, weights=x, minlength=len(target))
            x *= np.divide(target, current, out=np.zeros_like(target), where=current > 0)[code]
        error = max(
            float(
                np.max(np.abs(np.bincount(c, weights=x, minlength=len(t)) - t) / np.maximum(t, 1))
            )
            for c, t in margins
        )
        if error < tol:
            return x, sweep
    raise SystemExit(f"true population: raking did not converge (error {error:.3g})")


def build_population(frame: pd.DataFrame, districts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The true adult population by TRUE_CELLS, raked to its margins.

    Margins: region x sex x age (official, as in the frame), region x ethnicity and
    region x settlement (the frame's with the proxies' error: true_region_margin),
    district x settlement (district_parts) and the national education shares
    (EDUCATION_SHARES). The seed carries the associations the frame lacks. Populations
    are rounded to 4 decimals, like the frame's.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    by_ethnicity = true_region_margin(frame, "ethnicity", rng)
    parts = district_parts(districts, true_region_margin(frame, "settlement", rng), rng)
    grid = population_grid(parts)
    start = population_seed(grid, districts, rng)
    total = float(frame["population"].sum())
    sums = [
        frame.groupby(["region", "sex", "age"], observed=True)["population"].sum().reset_index(),
        by_ethnicity,
    ]
    education = pd.DataFrame(
        {
            "education": list(EDUCATION),
            "population": [total * EDUCATION_SHARES[e] for e in EDUCATION],
        }
    )
    margins = [
        _margin_codes(grid, m)
        for m in (*sums, parts[["district", "settlement", "population"]], education)
    ]
    population, sweeps = rake_cells(start, margins)
    out = grid.copy()
    out["population"] = population.round(4)
    out.attrs["sweeps"] = sweeps
    return out


# --------------------------------------------------------------------------------------
# 3. The true opinion model
# --------------------------------------------------------------------------------------


def opinion_terms(cells: pd.DataFrame, covariates: pd.DataFrame) -> dict[str, np.ndarray]:
    """Indicator columns ``"variable:level"`` per cell, plus the ``north`` index.

    ``north`` is the region's 2021 Christian share standardised over the 17 regions
    (unweighted mean and standard deviation).
    """
    terms = indicators(cells)
    c = covariates.set_index("region")["christian_share_2021"]
    north = (c - c.mean()) / c.std(ddof=0)
    terms["north"] = cells["region"].astype(str).map(north).to_numpy(dtype=float)
    return terms


@dataclass(frozen=True)
class Quadrature:
    """Nodes and weights for expectations over the traits (product Gauss-Hermite rule)."""

    theta: np.ndarray  # (nodes, traits)
    weight: np.ndarray  # (nodes,), sums to 1


def trait_quadrature(n: int = QUADRATURE_NODES) -> Quadrature:
    """``n`` probabilists' Gauss-Hermite nodes per trait, correlated by TRAIT_CORRELATION."""
    x, w = hermegauss(n)
    w = w / w.sum()
    grid = np.array(list(itertools.product(x, repeat=len(TRAITS))))
    weight = np.prod(np.array(list(itertools.product(w, repeat=len(TRAITS)))), axis=1)
    return Quadrature(grid @ np.linalg.cholesky(np.array(TRAIT_CORRELATION)).T, weight)


def draw_traits(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` respondents' traits: standard normal with TRAIT_CORRELATION."""
    return rng.standard_normal((n, len(TRAITS))) @ np.linalg.cholesky(np.array(TRAIT_CORRELATION)).T


def correlated(rng: np.random.Generator, n: int, sd: float, corr: Sequence) -> np.ndarray:
    """``n`` draws of a normal vector with standard deviation ``sd`` and correlation ``corr``."""
    return sd * rng.standard_normal((n, len(corr))) @ np.linalg.cholesky(np.array(corr)).T


@dataclass(frozen=True)
class CellIndex:
    """Integer codes of each true-population cell's region, district and ethnicity."""

    region: np.ndarray
    district: np.ndarray
    ethnicity: np.ndarray
    regions: list[str]
    districts: list[str]


def cell_index(cells: pd.DataFrame, regions: list[str], districts: list[str]) -> CellIndex:
    """Codes of the cells' region, district and ethnicity in the given level orders."""
    return CellIndex(
        pd.Index(regions).get_indexer(cells["region"].astype(str)),
        pd.Index(districts).get_indexer(cells["district"].astype(str)),
        pd.Index(ETHNICITIES).get_indexer(cells["ethnicity"].astype(str)),
        regions,
        districts,
    )


@dataclass(frozen=True)
class PresenceModel:
    """A calibrated presence question: response probabilities given a cell and traits.

    logit P(dont_know) = intercept + dk_eta[cell] + dk_loading . theta; given an answer,
    eta = eta[cell] + loading . theta, P(less) = expit(c1 - eta),
    P(less or same) = expit(c2 - eta).
    """

    name: str
    dk_eta: np.ndarray  # (cells,) dont_know stage without intercept and traits
    eta: np.ndarray  # (cells,) ordinal stage without traits
    intercept: float
    cutpoints: tuple[float, float]
    loading: np.ndarray  # (traits,)
    dk_loading: np.ndarray  # (traits,)

    def probabilities(self, cells: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """P(more, same, less, dont_know) for cells (codes) and traits (..., traits).

        ``cells`` and ``theta`` broadcast against each other; responses are the last axis.
        """
        dk = expit(self.intercept + self.dk_eta[cells] + theta @ self.dk_loading)
        eta = self.eta[cells] + theta @ self.loading
        less = expit(self.cutpoints[0] - eta)
        less_or_same = expit(self.cutpoints[1] - eta)
        answered = 1 - dk
        return np.stack(
            [answered * (1 - less_or_same), answered * (less_or_same - less), answered * less, dk],
            axis=-1,
        )


@dataclass(frozen=True)
class SharedEffects:
    """Random deviations shared by the five presence questions (columns: PRESENCE_QUESTIONS)."""

    region: np.ndarray  # (regions, 5)
    district: np.ndarray  # (districts, 5)
    dk_district: np.ndarray  # (districts,) the dont_know stage, same for all five


#: Cells per block when integrating over the traits (bounds memory).
_BLOCK = 4096


@dataclass(frozen=True)
class TrueModel:
    """Calibrated true opinion model of every question on the true population's cells."""

    presence: dict[str, PresenceModel]
    nominal: dict[str, np.ndarray]  # question -> cells x categories
    quadrature: Quadrature
    parameters: pd.DataFrame  # question, parameter, response, term, value
    correlations: pd.DataFrame  # matrix, row, column, value

    def cell_probabilities(self, question: str) -> np.ndarray:
        """P(response | cell), averaged over the traits: cells x responses."""
        if question in self.nominal:
            return self.nominal[question]
        model, quad = self.presence[question], self.quadrature
        n = len(model.eta)
        out = np.empty((n, len(PRESENCE_LEVELS) + 1))
        for start in range(0, n, _BLOCK):
            cells = np.arange(start, min(start + _BLOCK, n))
            probs = model.probabilities(cells[:, None], quad.theta)
            out[cells] = np.einsum("cnk,n->ck", probs, quad.weight)
        return out


def _solve_shift(weight: np.ndarray, eta: np.ndarray, target: float, sign: float) -> float:
    """The x with ``weight @ expit(sign * (x + eta)) == target``.

    Newton's method kept inside a shrinking bracket (a step that leaves the bracket
    bisects it instead), until a step is shorter than 1e-14.
    """
    low, high = -40.0, 40.0
    x = float(np.clip(sign * logit(target) - (weight @ eta) / weight.sum(), low, high))
    for _ in range(500):
        p = 1.0 / (1.0 + np.exp(-sign * (x + eta)))  # expit, faster on large arrays
        gap = float(weight @ p) - target
        slope = sign * float(weight @ (p * (1 - p)))
        if gap == 0:
            return x
        if gap * sign > 0:  # the root lies below x
            high = x
        else:
            low = x
        new = x - gap / slope if slope != 0 else low - 1.0
        if not low < new < high:
            new = (low + high) / 2
        if abs(new - x) < 1e-14:
            return new
        x = new
    raise SystemExit(f"no shift reaches the target {target}")


def calibrate_presence(
    q: OrdinalQuestion, dk_eta: np.ndarray, eta: np.ndarray, weight: np.ndarray, quad: Quadrature
) -> PresenceModel:
    """Solve the dont_know intercept and the cutpoints for the national targets.

    The national shares are those of the true population, averaged over the traits.
    """
    dk_loading, loading = np.array(DONT_KNOW_LOADING), np.array(q.loading)
    mass = np.outer(weight, quad.weight)
    dk_linear = dk_eta[:, None] + quad.theta @ dk_loading
    a = _solve_shift(mass.ravel(), dk_linear.ravel(), q.target[DONT_KNOW], 1.0)
    answered = (mass * (1 - expit(a + dk_linear))).ravel()
    # P(less) = expit(c1 - eta); P(more) = 1 - expit(c2 - eta) = expit(-(c2 - eta))
    minus_eta = -(eta[:, None] + quad.theta @ loading).ravel()
    c1 = _solve_shift(answered, minus_eta, q.target["less"], 1.0)
    c2 = _solve_shift(answered, minus_eta, q.target["more"], -1.0)
    if not c1 < c2:
        raise SystemExit(f"{q.name}: cutpoints out of order ({c1}, {c2})")
    return PresenceModel(q.name, dk_eta, eta, a, (c1, c2), loading, dk_loading)


def true_model(
    population: pd.DataFrame, covariates: pd.DataFrame, districts: pd.DataFrame, seed: int
) -> TrueModel:
    """Build and calibrate the true opinion model of every question.

    Presence questions: logit P(dont_know) = a_q + DONT_KNOW_EFFECTS + d_r + g_d +
    DONT_KNOW_LOADING . theta; given an answer, eta = effects + u_rq + v_req + w_dq +
    loading_q . theta, with (u_r1..u_r5) and (w_d1..w_d5) correlated by
    POWER_CORRELATION. Country questions: P(k) proportional to
    exp(a_k + effects_k + u_rk + v_rek + w_dk). The intercepts a and cutpoints c1 < c2
    are solved so that the true population's national shares equal each target.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    terms = opinion_terms(population, covariates)
    weight = population["population"].to_numpy(dtype=float)
    weight = weight / weight.sum()
    index = cell_index(population, list(covariates["region"]), list(districts["district"]))
    quad = trait_quadrature()
    shared = SharedEffects(
        correlated(rng, len(index.regions), SD_REGION, POWER_CORRELATION),
        correlated(rng, len(index.districts), SD_DISTRICT, POWER_CORRELATION),
        rng.normal(0.0, SD_DISTRICT_DONT_KNOW, len(index.districts)),
    )
    params: list[dict[str, object]] = []
    presence = {
        q.name: _presence_truth(q, j, terms, weight, index, quad, shared, rng, params)
        for j, q in enumerate(ORDINAL_QUESTIONS)
    }
    nominal = {
        q.name: _nominal_truth(q, terms, weight, index, rng, params) for q in NOMINAL_QUESTIONS
    }
    return TrueModel(presence, nominal, quad, pd.DataFrame(params), correlation_table(shared))


def _record(
    params: list[dict[str, object]], q: str, parameter: str, response: str, term: str, value: float
) -> None:
    params.append(
        {"question": q, "parameter": parameter, "response": response, "term": term, "value": value}
    )


def _record_deviations(
    params: list[dict[str, object]],
    q: str,
    response: str,
    index: CellIndex,
    region: np.ndarray,
    region_eth: np.ndarray | None,
    district: np.ndarray,
) -> None:
    """The region, region x ethnicity and district deviations of one linear predictor."""
    for r, value in zip(index.regions, region, strict=True):
        _record(params, q, "region", response, r, float(value))
    if region_eth is not None:
        for (i, r), (k, e) in itertools.product(enumerate(index.regions), enumerate(ETHNICITIES)):
            _record(params, q, "region_ethnicity", response, f"{r}:{e}", float(region_eth[i, k]))
    for d, value in zip(index.districts, district, strict=True):
        _record(params, q, "district", response, d, float(value))


def _presence_truth(
    q: OrdinalQuestion,
    j: int,
    terms: dict[str, np.ndarray],
    weight: np.ndarray,
    index: CellIndex,
    quad: Quadrature,
    shared: SharedEffects,
    rng: np.random.Generator,
    params: list[dict[str, object]],
) -> PresenceModel:
    """A presence question's calibrated model (the ``j``-th); its parameters into ``params``."""
    dk_region = rng.normal(0.0, SD_REGION_DONT_KNOW, len(index.regions))
    region_eth = rng.normal(0.0, SD_REGION_ETHNICITY, (len(index.regions), len(ETHNICITIES)))
    dk_eta = (
        linear(DONT_KNOW_EFFECTS, terms)
        + dk_region[index.region]
        + shared.dk_district[index.district]
    )
    eta = (
        linear(q.effects, terms)
        + shared.region[index.region, j]
        + region_eth[index.region, index.ethnicity]
        + shared.district[index.district, j]
    )
    model = calibrate_presence(q, dk_eta, eta, weight, quad)
    _record(params, q.name, "intercept", DONT_KNOW, "", model.intercept)
    for term, value in DONT_KNOW_EFFECTS.items():
        _record(params, q.name, "effect", DONT_KNOW, term, value)
    for trait, value in zip(TRAITS, DONT_KNOW_LOADING, strict=True):
        _record(params, q.name, "loading", DONT_KNOW, f"trait:{trait}", value)
    _record_deviations(params, q.name, DONT_KNOW, index, dk_region, None, shared.dk_district)
    _record(params, q.name, "cutpoint", "less->same", "", model.cutpoints[0])
    _record(params, q.name, "cutpoint", "same->more", "", model.cutpoints[1])
    for term, value in q.effects.items():
        _record(params, q.name, "effect", "more", term, value)
    for trait, value in zip(TRAITS, q.loading, strict=True):
        _record(params, q.name, "loading", "more", f"trait:{trait}", value)
    _record_deviations(
        params, q.name, "more", index, shared.region[:, j], region_eth, shared.district[:, j]
    )
    return model


def _nominal_truth(
    q: NominalQuestion,
    terms: dict[str, np.ndarray],
    weight: np.ndarray,
    index: CellIndex,
    rng: np.random.Generator,
    params: list[dict[str, object]],
) -> np.ndarray:
    """A country question's true probabilities per cell; its parameters into ``params``."""
    categories = list(q.target)
    k = len(categories)
    region = rng.normal(0.0, SD_REGION_NOMINAL, (len(index.regions), k))
    region_eth = rng.normal(0.0, SD_REGION_ETHNICITY, (len(index.regions), len(ETHNICITIES), k))
    district = rng.normal(0.0, SD_DISTRICT_NOMINAL, (len(index.districts), k))
    base = np.column_stack([linear(q.effects.get(c, {}), terms) for c in categories])
    base += region[index.region] + region_eth[index.region, index.ethnicity]
    base += district[index.district]
    intercept = _calibrate_nominal(base, weight, np.array([q.target[c] for c in categories]))
    intercept = intercept - intercept[categories.index(NONE)]
    for j, c in enumerate(categories):
        _record(params, q.name, "intercept", c, "", float(intercept[j]))
        for term, value in q.effects.get(c, {}).items():
            _record(params, q.name, "effect", c, term, value)
        _record_deviations(
            params, q.name, c, index, region[:, j], region_eth[:, :, j], district[:, j]
        )
    return _softmax(intercept + base)


def _calibrate_nominal(base: np.ndarray, weight: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Intercepts with ``weight @ softmax(intercept + base) == target`` (fixed point)."""
    intercept = np.log(target)
    for _ in range(10_000):
        current = weight @ _softmax(intercept + base)
        if np.abs(current - target).max() < 1e-15:
            return intercept
        intercept = intercept + np.log(target / current)
    raise SystemExit(f"country question: intercepts did not converge ({current} vs {target})")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def correlation_table(shared: SharedEffects) -> pd.DataFrame:
    """The true model's correlation matrices and trait loadings, one row per entry.

    ``region_effect`` / ``district_effect``: the correlation the deviations are drawn
    with (POWER_CORRELATION); ``*_drawn``: the correlation of the values drawn;
    ``trait``: TRAIT_CORRELATION; ``trait_loading``: loadings of each presence question
    (and of the dont_know stage) on the traits; ``latent_response``: the correlation of
    two presence questions' latent responses (eta + loading . theta + a standard
    logistic error) among adults of one cell.
    """
    loadings = np.array([q.loading for q in ORDINAL_QUESTIONS])
    cov = loadings @ np.array(TRAIT_CORRELATION) @ loadings.T
    sd = np.sqrt(np.diag(cov) + np.pi**2 / 3)
    latent = cov / np.outer(sd, sd)
    np.fill_diagonal(latent, 1.0)
    matrices = {
        "region_effect": (PRESENCE_QUESTIONS, PRESENCE_QUESTIONS, np.array(POWER_CORRELATION)),
        "region_effect_drawn": (
            PRESENCE_QUESTIONS,
            PRESENCE_QUESTIONS,
            np.corrcoef(shared.region.T),
        ),
        "district_effect": (PRESENCE_QUESTIONS, PRESENCE_QUESTIONS, np.array(POWER_CORRELATION)),
        "district_effect_drawn": (
            PRESENCE_QUESTIONS,
            PRESENCE_QUESTIONS,
            np.corrcoef(shared.district.T),
        ),
        "trait": (TRAITS, TRAITS, np.array(TRAIT_CORRELATION)),
        "trait_loading": (
            (*PRESENCE_QUESTIONS, DONT_KNOW),
            TRAITS,
            np.vstack([loadings, DONT_KNOW_LOADING]),
        ),
        "latent_response": (PRESENCE_QUESTIONS, PRESENCE_QUESTIONS, latent),
    }
    return pd.DataFrame(
        [
            {"matrix": name, "row": r, "column": c, "value": float(values[i, j])}
            for name, (rows, columns, values) in matrices.items()
            for (i, r), (j, c) in itertools.product(enumerate(rows), enumerate(columns))
        ]
    )


# --------------------------------------------------------------------------------------
# 4. The truth
# --------------------------------------------------------------------------------------


def truth_tables(
    population: pd.DataFrame, probabilities: Mapping[str, np.ndarray]
) -> dict[str, pd.DataFrame]:
    """True shares of every response by region, by ethnicity (nationally) and by district."""
    pop = population["population"].to_numpy(dtype=float)
    district_region = dict(zip(population["district"], population["region"], strict=False))
    out: dict[str, list[dict[str, object]]] = {"region": [], "ethnicity": [], "district": []}
    for q in QUESTIONS:
        probs, levels = probabilities[q.name], responses(q)
        for column, rows in out.items():
            codes, groups = pd.factorize(population[column].astype(str))
            totals = np.bincount(codes, weights=pop)
            shares = np.column_stack(
                [np.bincount(codes, weights=pop * probs[:, k]) for k in range(len(levels))]
            )
            shares = shares / totals[:, None]
            rows += [
                {"question": q.name, column: g, "response": k, "share": float(s)}
                for g, row in zip(groups, shares, strict=True)
                for k, s in zip(levels, row, strict=True)
            ]
    tables = {column: pd.DataFrame(rows) for column, rows in out.items()}
    tables["district"].insert(1, "region", tables["district"]["district"].map(district_region))
    return tables


def truth_joint(population: pd.DataFrame, model: TrueModel) -> pd.DataFrame:
    """True share of every pair of answers to two presence questions, by region.

    ``share`` is the share of the region's adults who give ``response_a`` to
    ``question_a`` and ``response_b`` to ``question_b`` (dont_know included): the
    average over cells and traits of the product of the two questions' probabilities.
    """
    pop = population["population"].to_numpy(dtype=float)
    codes, regions = pd.factorize(population["region"].astype(str))
    quad = model.quadrature
    levels = [*PRESENCE_LEVELS, DONT_KNOW]
    rows = []
    for r, region in enumerate(regions):
        cells = np.flatnonzero(codes == r)
        mass = np.outer(pop[cells], quad.weight) / pop[cells].sum()
        probs = {
            name: m.probabilities(cells[:, None], quad.theta) for name, m in model.presence.items()
        }
        for a, b in itertools.combinations(PRESENCE_QUESTIONS, 2):
            weighted = (mass[:, :, None] * probs[a]).reshape(-1, len(levels))
            joint = weighted.T @ probs[b].reshape(-1, len(levels))
            rows += [
                {
                    "region": region,
                    "question_a": a,
                    "response_a": ra,
                    "question_b": b,
                    "response_b": rb,
                    "share": float(joint[i, k]),
                }
                for (i, ra), (k, rb) in itertools.product(enumerate(levels), enumerate(levels))
            ]
    return pd.DataFrame(rows)


def national_shares(
    population: pd.DataFrame, probabilities: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """The true population's national share of every response."""
    pop = population["population"].to_numpy(dtype=float)
    pop = pop / pop.sum()
    return {
        q.name: dict(zip(responses(q), pop @ probabilities[q.name], strict=True)) for q in QUESTIONS
    }


# --------------------------------------------------------------------------------------
# 5. The synthetic survey
# --------------------------------------------------------------------------------------


def allocate(sizes: pd.Series, n: int) -> pd.Series:
    """Largest-remainder allocation of ``n`` in proportion to ``sizes``."""
    quota = sizes / sizes.sum() * n
    out = np.floor(quota).astype(int)
    remainder = (quota - out).sort_values(ascending=False, kind="stable")
    out[remainder.index[: n - int(out.sum())]] += 1
    return out


def _half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def stratum_allocation(frame: pd.DataFrame) -> pd.DataFrame:
    """Interviews and sampling points per stratum (region x settlement).

    Regions get interviews in proportion to their adults (largest remainder); within a
    region the urban stratum gets URBAN_OVERSAMPLING times its proportional share
    (rounded half up), and a stratum of n interviews max(MIN_POINTS, round(n / TAKE))
    sampling points.
    """
    regions = list(frame["region"].cat.categories)
    sizes = frame.groupby(["region", "settlement"], observed=True)["population"].sum()
    sizes = {(str(r), str(s)): float(v) for (r, s), v in sizes.items()}
    adults = pd.Series({r: sizes[(r, "urban")] + sizes.get((r, "rural"), 0.0) for r in regions})
    n_region = allocate(adults, SAMPLE_SIZE)
    rows = []
    for region in regions:
        urban = URBAN_OVERSAMPLING * sizes[(region, "urban")]
        n = int(n_region[region])
        n_urban = _half_up(n * urban / (urban + sizes.get((region, "rural"), 0.0)))
        for settlement, interviews in (("urban", n_urban), ("rural", n - n_urban)):
            if interviews == 0:
                continue
            points = max(MIN_POINTS, _half_up(interviews / TAKE))
            if interviews < 2 * points:
                raise SystemExit(f"{region} {settlement}: {interviews} interviews are too few")
            rows.append(
                {
                    "region": region,
                    "settlement": settlement,
                    "stratum": f"{region}-{settlement}",
                    "interviews": interviews,
                    "points": points,
                }
            )
    return pd.DataFrame(rows)


def district_part_sizes(population: pd.DataFrame) -> pd.DataFrame:
    """Adults per district x settlement (the firm's listing), in the population's order."""
    return (
        population.groupby(["region", "district", "settlement"], sort=False)["population"]
        .sum()
        .reset_index()
    )


def draw_points(
    allocation: pd.DataFrame, parts: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Sampling points (the PSUs), drawn with replacement, with PPS, per stratum.

    Each stratum's ``points`` are draws with replacement from its district parts, with
    probability proportional to the firm's measure of size. Each point gets an equal
    share of the stratum's interviews (the first ones one more). ``design_weight`` is
    the inverse of the expected number of times an adult of the part is interviewed:
    points x P(part) x take / adults of the part.
    """
    adults = parts["population"].to_numpy(dtype=float)
    size = adults * np.exp(rng.normal(0.0, SD_MEASURE_OF_SIZE, len(parts)))
    rows = []
    for h in allocation.itertuples(index=False):
        candidates = np.flatnonzero(
            (parts["region"] == h.region).to_numpy()
            & (parts["settlement"] == h.settlement).to_numpy()
        )
        p = size[candidates] / size[candidates].sum()
        drawn = np.sort(rng.choice(len(candidates), size=h.points, replace=True, p=p))
        takes = np.full(h.points, h.interviews // h.points)
        takes[: h.interviews % h.points] += 1
        times: dict[int, int] = {}
        for c, take in zip(drawn, takes, strict=True):
            part = int(candidates[c])
            times[part] = times.get(part, 0) + 1
            rows.append(
                {
                    "stratum": h.stratum,
                    "psu": f"{parts['district'].iat[part]}-{h.settlement}-{times[part]}",
                    "part": part,
                    "take": int(take),
                    "design_weight": adults[part] / (h.points * p[c] * take),
                }
            )
    return pd.DataFrame(rows)


def response_propensity(cells: pd.DataFrame) -> np.ndarray:
    """Relative willingness to be interviewed: RESPONSE_EDUCATION x RESPONSE_AGE x RESPONSE_SEX."""
    settlement, education = cells["settlement"].astype(str), cells["education"].astype(str)
    by_education = [RESPONSE_EDUCATION[s][e] for s, e in zip(settlement, education, strict=True)]
    return (
        np.array(by_education)
        * cells["age"].astype(str).map(RESPONSE_AGE).to_numpy(dtype=float)
        * cells["sex"].astype(str).map(RESPONSE_SEX).to_numpy(dtype=float)
    )


def draw_respondents(
    points: pd.DataFrame, population: pd.DataFrame, parts: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """The cell of every respondent, point by point.

    Each point's ``take`` adults are drawn from its district part in proportion to
    population x response propensity (interviewers replace refusals).
    """
    keys = ["district", "settlement"]
    part_of_cell = pd.MultiIndex.from_frame(parts[keys]).get_indexer(
        pd.MultiIndex.from_frame(population[keys])
    )
    mass = population["population"].to_numpy(dtype=float) * response_propensity(population)
    chosen = []
    for point in points.itertuples(index=False):
        cells = np.flatnonzero(part_of_cell == point.part)
        chosen.append(rng.choice(cells, size=point.take, p=mass[cells] / mass[cells].sum()))
    return np.concatenate(chosen)


def calibrate_weights(
    respondents: pd.DataFrame, design_weight: np.ndarray, frame: pd.DataFrame
) -> np.ndarray:
    """The firm's weights: design weights raked to frame margins, scaled to mean 1.

    The margins are the frame's region x settlement and national sex x age adults (the
    firm's non-response adjustment; it knows nothing of education).
    """
    margins = []
    for keys in (["region", "settlement"], ["sex", "age"]):
        target = frame.groupby(keys, observed=True)["population"].sum().reset_index()
        target = target[target["population"] > 0]
        margins.append(_margin_codes(respondents, target))
    weight, _ = rake_cells(design_weight, margins)
    return weight / weight.mean()


def draw_answers(
    model: TrueModel, cells: np.ndarray, point: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every respondent's answers: traits, then each question's answer.

    A respondent's traits are their sampling point's mean traits (share
    TRAIT_SHARE_POINT of the variance) plus their own deviation, so they are standard
    normal with TRAIT_CORRELATION, as in the truth, and alike within a point.
    """
    local = draw_traits(rng, int(point.max()) + 1)[point]
    own = draw_traits(rng, len(cells))
    theta = np.sqrt(TRAIT_SHARE_POINT) * local + np.sqrt(1 - TRAIT_SHARE_POINT) * own
    out = {}
    for q in QUESTIONS:
        if isinstance(q, OrdinalQuestion):
            probs = model.presence[q.name].probabilities(cells, theta)
        else:
            probs = model.nominal[q.name][cells]
        out[q.name] = _draw_categorical(rng, probs, responses(q))
    return out


def draw_survey(
    frame: pd.DataFrame, population: pd.DataFrame, model: TrueModel, seed: int
) -> pd.DataFrame:
    """Draw sampling points, respondents and their answers; weight the respondents."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    parts = district_part_sizes(population)
    points = draw_points(stratum_allocation(frame), parts, rng)
    cells = draw_respondents(points, population, parts, rng)
    point = np.repeat(np.arange(len(points)), points["take"].to_numpy())

    survey = population.loc[cells, list(TRUE_CELLS)].astype(str).reset_index(drop=True)
    design_weight = points["design_weight"].to_numpy()[point]
    weight = calibrate_weights(survey, design_weight, frame)
    survey = survey[[*CELLS, "education"]].assign(
        weight=weight,
        district=survey["district"],
        stratum=points["stratum"].to_numpy()[point],
        psu=points["psu"].to_numpy()[point],
    )
    survey.insert(0, "respondent_id", [f"KZ2020-{i + 1:04d}" for i in range(len(cells))])
    for name, answers in draw_answers(model, cells, point, rng).items():
        survey[name] = answers
    return survey


def _draw_categorical(rng: np.random.Generator, probs: np.ndarray, labels: list[str]) -> np.ndarray:
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cumulative[:, -1]
    index = (u[:, None] >= cumulative).sum(axis=1)
    return np.asarray(labels, dtype=object)[np.minimum(index, len(labels) - 1)]


# --------------------------------------------------------------------------------------
# 6. Adjacency
# --------------------------------------------------------------------------------------

#: Polygon parts smaller than this fraction of their region's area are stray slivers.
SLIVER_FRACTION = 1e-3
#: Regions whose (sliver-free) outlines come this close (degrees, about 10 m) are neighbours.
ADJACENCY_TOLERANCE = 1e-4


def district_frame(frame: pd.DataFrame, districts: pd.DataFrame) -> pd.DataFrame:
    """The frame's cells split over the districts of their region, by an ASSUMED rule.

    No district populations are bundled, so each region's urban adults are split over its
    districts in proportion to URBAN_UNIT_WEIGHT (the regional centre 20, another town of
    regional significance 4, a raion's towns 1, a city district 1) and its rural adults
    equally over its raions; within a district and settlement, the mix of sex, age and
    ethnicity is the region's. Summed over districts, every cell is the frame's cell.
    (The true population's split is a Dirichlet draw around these shares, and each
    district has its own ethnic mix: the district frame errs as a real assumed one would.)
    """
    shares = []
    for region, units in districts.groupby("region", sort=False):
        for settlement in SETTLEMENTS:
            if settlement == "rural":
                units = units[units["kind"] == "raion"]
                weight = np.ones(len(units))
            else:
                weight = units["kind"].map(URBAN_UNIT_WEIGHT).to_numpy(dtype=float)
            shares.append(
                pd.DataFrame(
                    {
                        "region": region,
                        "settlement": settlement,
                        "district": units["district"].to_numpy(),
                        "share": weight / weight.sum(),
                    }
                )
            )
    split = frame.merge(pd.concat(shares), on=["region", "settlement"], how="inner")
    split["population"] = (split["population"] * split["share"]).round(4)
    split = split[split["population"] > 0]
    order = {d: i for i, d in enumerate(districts["district"])}
    split = split.sort_values(
        [*CELLS, "district"], key=lambda c: c.map(order) if c.name == "district" else c
    )
    return split[["region", "district", *CELLS[1:], "population"]].reset_index(drop=True)


def district_adjacency(path: Path = DISTRICT_BOUNDARIES) -> pd.DataFrame:
    """Pairs of districts whose 2018 outlines touch (within the tolerance), slivers dropped."""
    pairs = adjacency_from_boundaries(
        path, key="ADM2_PCODE", sliver_fraction=SLIVER_FRACTION, tolerance=ADJACENCY_TOLERANCE
    )
    assert (pairs["neighbour"] != "").all(), "every district has a neighbour"
    return pairs.rename(columns={"area": "district_a", "neighbour": "district_b"})


def region_adjacency(path: Path = BOUNDARIES) -> pd.DataFrame:
    """Pairs of regions whose 2018 outlines touch (within the tolerance), slivers dropped."""
    pairs = adjacency_from_boundaries(
        path, key="ISO_3166_2", sliver_fraction=SLIVER_FRACTION, tolerance=ADJACENCY_TOLERANCE
    )
    assert (pairs["neighbour"] != "").all(), "every region has a neighbour"
    return pairs.rename(columns={"area": "region_a", "neighbour": "region_b"})


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


# published_survey_2020.csv rows (question, target) -> survey column, or (column, category)
PUBLISHED = {
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


def published_figures(folder: Path = SOURCES) -> pd.DataFrame:
    """The percentages the 2020 article printed, as ``question, category, percent``.

    Shares of all respondents ("don't know" included), in the survey's labels; rows the
    article gives only in a chart (EU, Muslim countries) or as "under 1%" are left out.
    """
    raw = pd.read_csv(folder / "published_survey_2020.csv")
    rows = []
    for question, target, response, percent in raw[
        ["question", "target", "response", "percent"]
    ].itertuples(index=False):
        column = PUBLISHED.get((str(question), str(target)))
        value = pd.to_numeric(pd.Series([percent]), errors="coerce").iloc[0]
        if column is None or pd.isna(value):
            continue
        name, category = column if isinstance(column, tuple) else (column, str(response))
        rows.append((name, category, float(value)))
    return pd.DataFrame(rows, columns=["question", "category", "percent"])


def write_csv(df: pd.DataFrame, path: Path, float_format: str | None = None) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")
        tmp.chmod(0o644)  # readable like any checked-out file (mkstemp makes it 0600)


def _toml_strings(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _codebook_variables(regions: Sequence[str], districts: Sequence[str]) -> dict[str, dict]:
    """Role, label and levels of every survey column except the questions, in column order."""
    categorical = {
        "region": ("area", "Region (ISO 3166-2, 2020 units)", list(regions)),
        "sex": ("predictor", "Sex", list(SEXES)),
        "age": ("predictor", "Age band", list(AGES)),
        "ethnicity": ("predictor", "Ethnicity", list(ETHNICITIES)),
        "settlement": ("predictor", "Type of settlement", list(SETTLEMENTS)),
        "education": (
            "predictor",
            "Highest education, ordered (not in the frame)",
            list(EDUCATION),
        ),
    }
    out: dict[str, dict] = {"respondent_id": {"role": "id"}}
    for name, (role, label, levels) in categorical.items():
        out[name] = {"role": role, "label": label, "levels": levels}
    for name in ("age", "education"):
        out[name]["ordered"] = True
    out["weight"] = {
        "role": "weight",
        "label": "Design weight (mean 1): inverse selection probability, raked to region x "
        "settlement and sex x age",
    }
    out["district"] = {
        "role": "predictor",
        "label": "District (ADM2_PCODE of the 2018 boundaries; not in the frame)",
        "levels": list(districts),
    }
    out["stratum"] = {"role": "strata", "label": "Stratum: region x settlement"}
    out["psu"] = {
        "role": "cluster",
        "label": "Primary sampling unit: a sampling point (district-settlement-draw)",
    }
    return out


def write_codebook(path: Path, regions: Sequence[str], districts: Sequence[str]) -> None:
    """The survey's data contract (TOML, written by hand so the bytes are stable)."""
    lines = [
        "# Data contract of survey_2020.csv. Generated by scripts/build_kazakhstan_data.py;",
        "# see README.md. The survey is SYNTHETIC: drawn from a made-up opinion model.",
        "",
        "[survey]",
        'title = "Synthetic Kazakhstan geopolitical-attitudes survey, 2020 (opinionmap demo data)"',
        f"missing = {_toml_strings([DONT_KNOW])}",
        "",
    ]
    for name, spec in _codebook_variables(regions, districts).items():
        lines.append(f"[variables.{name}]")
        lines += [f"{key} = {json.dumps(spec[key])}" for key in ("role", "label") if key in spec]
        if "levels" in spec:
            lines.append(f"levels = {_toml_strings(spec['levels'])}")
        if spec.get("ordered"):
            lines.append("ordered = true")
        lines.append("")
    for q in QUESTIONS:
        levels = [k for k in responses(q) if k != DONT_KNOW]
        lines += [
            f"[variables.{q.name}]",
            'role = "outcome"',
            f"label = {json.dumps(q.label)}",
            f"levels = {_toml_strings(levels)}",
            f"missing = {_toml_strings([DONT_KNOW])}",
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
    districts = read_districts(src.regions)
    population = build_population(frame, districts, args.seed)
    model = true_model(population, covariates, districts, args.seed)
    probabilities = {q.name: model.cell_probabilities(q.name) for q in QUESTIONS}
    truth = truth_tables(population, probabilities)
    joint = truth_joint(population, model)
    survey = draw_survey(frame, population, model, args.seed)
    adjacency = region_adjacency()
    by_district = district_frame(frame, districts)
    district_pairs = district_adjacency()

    write_csv(frame, out / "frame_2020.csv", "%.4f")
    write_csv(covariates, out / "region_covariates_2020.csv", "%.10g")
    write_csv(population, out / "truth_population_2020.csv", "%.4f")
    write_csv(survey, out / "survey_2020.csv", "%.6f")
    write_codebook(out / "survey_2020.codebook.toml", src.regions, list(districts["district"]))
    write_csv(truth["region"], out / "truth_2020.csv", "%.10g")
    write_csv(truth["ethnicity"], out / "truth_ethnicity_2020.csv", "%.10g")
    write_csv(truth["district"], out / "truth_district_2020.csv", "%.10g")
    write_csv(joint, out / "truth_joint_2020.csv", "%.10g")
    write_csv(model.parameters, out / "truth_parameters_2020.csv", "%.10g")
    write_csv(model.correlations, out / "truth_correlations_2020.csv", "%.10g")
    write_csv(adjacency, out / "region_adjacency.csv")
    write_csv(published_figures(), out / "published_2020.csv", "%.10g")
    write_csv(by_district, out / "frame_district_2020.csv", "%.4f")
    write_csv(districts, out / "districts_2020.csv")
    write_csv(district_pairs, out / "district_adjacency.csv")

    national = national_shares(population, probabilities)
    worst = max(abs(national[q.name][k] - q.target[k]) for q in QUESTIONS for k in q.target)
    print(
        f"wrote {out}: {len(frame)} frame cells, {len(survey)} respondents, "
        f"{survey['psu'].nunique()} sampling points in {survey['stratum'].nunique()} strata, "
        f"{len(population)} true cells in {population['district'].nunique()} districts, "
        f"{len(adjacency)} neighbour pairs; {len(by_district)} district frame cells, "
        f"{len(district_pairs)} district neighbour pairs; "
        f"worst calibration error {worst * 100:.2g} pp; "
        f"raking error {frame.attrs['raking'].max_relative_error:.2g}; "
        f"alpha={covariates.attrs['alpha']:.6f} gamma={covariates.attrs['gamma']:.6f} "
        f"urban shift={covariates.attrs['urban_shift']:.6f}; {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
