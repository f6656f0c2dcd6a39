"""Frames: reading, validation errors that name the problem, label mapping, margins."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from opinionmap.errors import FrameError
from opinionmap.frame import Frame, read_frame


def _write(tmp_path: Path, text: str, name: str = "frame.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """region,sex,age,population
KZ-AKM,male,18-29,100
KZ-AKM,female,18-29,120
KZ-AST,male,18-29,300
KZ-AST,female,18-29,310.5
"""


def test_reads_a_valid_frame(tmp_path: Path) -> None:
    frame = read_frame(_write(tmp_path, GOOD))
    assert frame.cells == ("region", "sex", "age")
    assert frame.total == pytest.approx(830.5)
    assert frame.levels("region") == ["KZ-AKM", "KZ-AST"]
    assert frame.collapse(["region"]).set_index("region")["population"].to_dict() == {
        "KZ-AKM": 220.0,
        "KZ-AST": 610.5,
    }


def test_codes_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "district,population\n01,5\n10,7\n")
    frame = read_frame(path, cells=["district"])
    assert frame.levels("district") == ["01", "10"]


def test_parquet_round_trip(tmp_path: Path) -> None:
    frame = read_frame(_write(tmp_path, GOOD))
    out = frame.to_file(tmp_path / "frame.parquet")
    again = read_frame(out)
    pd.testing.assert_frame_equal(again.data, frame.data)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "region,sex,population\nA,male,-5\nA,female,3\n",
            r"frame\.csv.*'population'.*negative.*-5",
        ),
        ("region,sex,population\nA,male,lots\nA,female,3\n", r"frame\.csv.*non-numeric.*'lots'"),
        (
            "region,sex,population\nA,male,\nA,female,3\n",
            r"frame\.csv.*'population' is empty or non-finite",
        ),
        ("region,sex,population\nA,male,inf\nA,female,3\n", r"non-finite"),
        ("region,sex,pop\nA,male,1\n", r"frame\.csv: no weight column 'population'.*--weight"),
        (
            "region,sex,population\nA,male,1\nA,male,2\nA,female,3\n",
            r"frame\.csv: 2 rows repeat 1 cells: 'region=A, sex=male'",
        ),
        ("region,sex,population\nA,,1\nA,female,3\n", r"column 'sex' is empty in rows 0"),
    ],
)
def test_bad_frames_say_what_and_where(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(FrameError, match=pattern):
        read_frame(_write(tmp_path, text))


def test_unsupported_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match=r"unsupported file type '\.xlsx'"):
        read_frame(tmp_path / "frame.xlsx")
    with pytest.raises(FrameError, match=r"nope\.csv: no such file"):
        read_frame(tmp_path / "nope.csv")


def test_recode_maps_labels_and_merges_cells(tmp_path: Path) -> None:
    path = _write(tmp_path, "region,sex,population\nA,M,1\nA,F,2\nA,Male,4\n")
    frame = read_frame(path, recode={"sex": {"M": "male", "Male": "male", "F": "female"}})
    assert frame.n_cells == 2
    assert frame.collapse(["sex"]).set_index("sex")["population"].to_dict() == {
        "female": 2.0,
        "male": 5.0,
    }
    with pytest.raises(FrameError, match=r"recode for 'sex' maps labels 'X'"):
        frame.recode({"sex": {"X": "male"}})
    with pytest.raises(FrameError, match=r"recode names column 'age'"):
        frame.recode({"age": {"1": "2"}})


def test_from_margins_matches_each_margin() -> None:
    by_sex = pd.DataFrame(
        {
            "region": ["A", "A", "B", "B"],
            "sex": ["male", "female"] * 2,
            "population": [40.0, 60.0, 30.0, 70.0],
        }
    )
    by_urban = pd.DataFrame(
        {
            "region": ["A", "A", "B", "B"],
            "settlement": ["urban", "rural"] * 2,
            "population": [50.0, 50.0, 80.0, 20.0],
        }
    )
    frame = Frame.from_margins([by_sex, by_urban])
    got = frame.collapse(["region", "settlement"])["population"].tolist()
    assert got == pytest.approx([50.0, 50.0, 80.0, 20.0], rel=1e-9)
    # within region B: urban and sex independent given the region
    b = frame.data[frame.data["region"] == "B"].set_index(["sex", "settlement"])["population"]
    assert b[("female", "urban")] == pytest.approx(70.0 * 0.8)


def test_atomic_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = read_frame(_write(tmp_path, GOOD))
    target = tmp_path / "out.csv"
    target.write_text("previous")

    def explode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(OSError, match="disk full"):
        frame.to_file(target)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_labels_that_differ_in_spelling_are_matched_only_where_one_fits() -> None:
    from opinionmap.frame import match_labels

    frame = ["almaty city", "North-Kazakhstan", "Akmola Oblast", "Shymkent", "Abai"]
    survey = ["Almaty", "Almaty Region", "North Kazakhstan Region", "Akmola", "Shymkent city",
              "Astana"]  # fmt: skip
    assert match_labels(frame, survey) == {
        "almaty city": "Almaty",  # not "Almaty Region": the words but "city" are "Almaty"'s
        "North-Kazakhstan": "North Kazakhstan Region",
        "Akmola Oblast": "Akmola",
        "Shymkent": "Shymkent city",
    }
    # "Almaty" fits both Almaty labels once "city" and "region" are set aside: no guess
    assert match_labels(["Almaty"], ["Almaty city", "Almaty region"]) == {}
    # two frame labels claiming one survey label alike: neither is mapped
    assert match_labels(["Kostanai", "Kostanaj"], ["Kostanay"]) == {}
    # unless one fits it more closely
    assert match_labels(["Kostanay", "Kostanai"], ["Kostanay region"]) == {
        "Kostanay": "Kostanay region"
    }
    # close spellings, but not a different word
    assert match_labels(["Kyzylorda", "male"], ["Qyzylorda", "female"]) == {
        "Kyzylorda": "Qyzylorda"
    }


def test_a_frame_check_suggests_the_recode_table_for_the_codebook() -> None:
    from opinionmap.codebook import Codebook

    frame = Frame.from_dataframe(
        pd.DataFrame({
            "region": ["Almaty city", "Almaty city", "Turkistan", "Turkistan"],
            "sex": ["Male", "Female", "Male", "Female"], "population": [1, 2, 3, 4]})
    )  # fmt: skip
    codebook = Codebook.from_dict({"variables": {
        "region": {"role": "area", "levels": ["Almaty", "Turkestan region"]},
        "sex": {"role": "predictor", "levels": ["male", "female"]}}})  # fmt: skip
    recode, unmatched = frame.suggest_recode(codebook)
    assert recode == {
        "region": {"Almaty city": "Almaty", "Turkistan": "Turkestan region"},
        "sex": {"Male": "male", "Female": "female"},
    }
    assert unmatched == {}
    with pytest.raises(FrameError) as error:
        frame.check_levels(codebook)
    message = str(error.value)
    assert "frame levels 'Almaty city', 'Turkistan' are not in the survey codebook's" in message
    assert (
        'Suggested, to add to the codebook:\n[recode.region]\n"Almaty city" = "Almaty"\n'
        'Turkistan = "Turkestan region"\n\n[recode.sex]\nMale = "male"\nFemale = "female"'
    ) in message
    # the suggestion, applied as the codebook applies it, leaves nothing to check
    with_recode = Codebook.from_dict({**codebook.to_dict(), "recode": recode})
    frame.recode(with_recode.recode).check_levels(with_recode)
