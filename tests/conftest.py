"""Shared fixtures: a small, valid survey and its codebook."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from opinionmap.codebook import Codebook

CODEBOOK_TOML = """\
[survey]
title = "Small test survey"
missing = ["dont_know"]

[variables.respondent_id]
role = "id"

[variables.region]
role = "area"
levels = ["KZ-AKM", "KZ-AST", "KZ-ALA"]

[variables.sex]
role = "predictor"
levels = ["male", "female"]

[variables.age]
role = "predictor"
kind = "numeric"

[variables.weight]
role = "weight"

[variables.presence]
role = "outcome"
label = "Desired presence of Russia"
levels = ["more", "same", "less"]

[variables.trust]
role = "outcome"
levels = ["yes", "no"]
missing = ["refused"]
missing_policy = "keep"
"""


@pytest.fixture
def survey_df() -> pd.DataFrame:
    """Eight respondents, text everywhere as a CSV would give them (age and weight included)."""
    return pd.DataFrame(
        {
            "respondent_id": ["001", "002", "003", "004", "005", "006", "007", "008"],
            "region": [
                "KZ-AKM",
                "KZ-AST",
                "KZ-AST",
                "KZ-AKM",
                "KZ-ALA",
                "KZ-AKM",
                "KZ-AST",
                "KZ-ALA",
            ],
            "sex": ["male", "female", "female", "male", "female", "male", "male", "female"],
            "age": ["23", "35", "41", "52", "67", "19", "30", "44"],
            "weight": ["1.0", "0.5", "2", "1.5", "1", "1", "0.8", "1.2"],
            "presence": ["more", "same", "dont_know", "less", "more", "more", "dont_know", "same"],
            "trust": ["yes", "no", "refused", "yes", "yes", "no", "no", "refused"],
            "note": ["a", "b", "c", "d", "e", "f", "g", "h"],
        }
    )


@pytest.fixture
def codebook_path(tmp_path: Path) -> Path:
    """The codebook of ``survey_df`` as a TOML file."""
    path = tmp_path / "survey.codebook.toml"
    path.write_text(CODEBOOK_TOML)
    return path


@pytest.fixture
def codebook(codebook_path: Path) -> Codebook:
    """The codebook of ``survey_df``."""
    return Codebook.from_toml(codebook_path)
