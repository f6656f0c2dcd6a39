"""Codebooks: the TOML contract, its round trip, and errors that name file, variable and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opinionmap.codebook import Codebook, Variable, read_codebook
from opinionmap.errors import CodebookError


def _write(tmp_path: Path, text: str, name: str = "bad.codebook.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_roles_levels_and_missing_codes(codebook: Codebook, codebook_path: Path) -> None:
    assert codebook.source == codebook_path
    assert codebook.title == "Small test survey"
    assert codebook.names == (
        "respondent_id",
        "region",
        "sex",
        "age",
        "weight",
        "presence",
        "trust",
    )
    assert [v.name for v in codebook.outcomes] == ["presence", "trust"]
    assert [v.name for v in codebook.predictors] == ["sex", "age"]
    assert codebook.area is not None and codebook.area.name == "region"
    assert codebook.weight is not None and codebook.weight.kind == "numeric"
    assert codebook.id is not None and codebook.id.kind == "any"
    presence = codebook["presence"]
    assert presence.levels == ("more", "same", "less")
    assert presence.missing == ("dont_know",)  # from [survey].missing
    assert presence.missing_policy == "drop"
    assert presence.label == "Desired presence of Russia"
    trust = codebook["trust"]
    assert trust.missing == ("refused",)  # its own list overrides the default
    assert trust.missing_policy == "keep"
    assert trust.categories == ("yes", "no", "refused")
    assert codebook["age"].kind == "numeric" and codebook["age"].levels is None
    assert "sex" in codebook and "nope" not in codebook


def test_toml_round_trip(codebook: Codebook, tmp_path: Path) -> None:
    out = codebook.to_toml(tmp_path / "copy.codebook.toml")
    again = read_codebook(out)
    assert again == codebook
    assert again.source == out
    assert Codebook.from_dict(codebook.to_dict()) == codebook


def test_integer_levels_are_read_as_text(tmp_path: Path) -> None:
    path = _write(tmp_path, '[variables.q]\nrole = "outcome"\nlevels = [1, 2, 3]\nmissing = [9]\n')
    q = read_codebook(path)["q"]
    assert q.levels == ("1", "2", "3")
    assert q.missing == ("9",)


def test_from_roles_builds_the_same_codebook_as_a_file() -> None:
    cb = Codebook.from_roles(
        outcomes={"q": {"levels": ["yes", "no"], "missing_policy": "keep"}, "r": ["a", "b"]},
        predictors={"sex": ["male", "female"], "age": {"kind": "numeric"}, "edu": None},
        area="region",
        weight="w",
        id="pid",
        missing=["dont_know"],
    )
    assert cb["q"].missing == ("dont_know",) and cb["q"].missing_policy == "keep"
    assert cb["r"].missing == ("dont_know",)
    assert cb["age"].kind == "numeric"
    assert cb["edu"].levels is None
    assert cb.area is not None and cb.area.name == "region"
    assert Codebook.from_dict(cb.to_dict()) == cb


def test_from_roles_rejects_a_column_with_two_roles() -> None:
    with pytest.raises(CodebookError, match=r"'sex' is given two roles \(predictor and area\)"):
        Codebook.from_roles(outcomes={"q": ["a", "b"]}, predictors=["sex"], area="sex")


def test_unknown_variable_lists_the_declared_ones(codebook: Codebook) -> None:
    with pytest.raises(CodebookError, match=r"no variable 'sexx'; declared: .*'sex'"):
        codebook["sexx"]


def test_variables_accept_lists_and_store_tuples() -> None:
    v = Variable("q", "outcome", levels=["a", "b"], missing=["dk"])  # type: ignore[arg-type]
    assert v.levels == ("a", "b") and v.missing == ("dk",)
    assert Variable("sex", "predictor").kind == "categorical"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        pytest.param(
            'colour = "red"\n[variables.q]\nrole = "outcome"\nlevels = ["a"]\n',
            r"unknown key\(s\) 'colour' at the top level; allowed keys: 'survey', 'variables'",
            id="unknown-top-level-key",
        ),
        pytest.param(
            '[survey]\nyear = 2020\n[variables.q]\nrole = "outcome"\nlevels = ["a"]\n',
            r"unknown key\(s\) 'year' in \[survey\]; allowed keys: 'title', 'missing'",
            id="unknown-survey-key",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcome"\nlevels = ["a"]\nlevles = ["b"]\n',
            r"unknown key\(s\) 'levles' in \[variables.q\]; allowed keys: 'role', 'label'",
            id="unknown-variable-key",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcom"\n',
            r"variable 'q': unknown role 'outcom' \(key 'role'\); allowed roles: 'outcome', "
            r"'predictor', 'area', 'weight', 'id'",
            id="unknown-role",
        ),
        pytest.param(
            '[variables.q]\nlevels = ["a"]\n',
            r"\[variables.q\] has no key 'role'; allowed roles: 'outcome'",
            id="no-role",
        ),
        pytest.param(
            '[variables.age]\nrole = "predictor"\nkind = "integer"\n',
            r"variable 'age': kind 'integer' \(key 'kind'\) is not allowed for role "
            r"'predictor'; allowed kinds: 'categorical', 'numeric'",
            id="unknown-kind",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcome"\nlevels = ["a", "b"]\nmissing_policy = "skip"\n',
            r"variable 'q': unknown missing_policy 'skip' \(key 'missing_policy'\); "
            r"allowed: 'drop', 'keep'",
            id="unknown-policy",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcome"\n',
            r"variable 'q': an outcome needs its levels in response order \(key 'levels'\)",
            id="outcome-without-levels",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcome"\nlevels = ["a", "b", "a"]\n',
            r"variable 'q': key 'levels' lists 'a' twice",
            id="level-twice",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcome"\nlevels = ["a", "dk"]\nmissing = ["dk"]\n',
            r"variable 'q': 'dk' listed both under 'levels' and under 'missing'",
            id="level-and-missing",
        ),
        pytest.param(
            '[variables.r1]\nrole = "area"\n[variables.r2]\nrole = "area"\n',
            r"more than one area variable \('r1', 'r2', key 'role'\)",
            id="two-areas",
        ),
        pytest.param(
            '[variables.w1]\nrole = "weight"\n[variables.w2]\nrole = "weight"\n',
            r"more than one weight variable \('w1', 'w2'",
            id="two-weights",
        ),
        pytest.param(
            '[variables.a]\nrole = "id"\n[variables.b]\nrole = "id"\n',
            r"more than one id variable \('a', 'b'",
            id="two-ids",
        ),
        pytest.param(
            '[variables.sex]\nrole = "predictor"\nmissing = ["dk"]\n',
            r"\[variables.sex\]: key\(s\) 'missing' do not apply to role 'predictor'; "
            r"keys for a predictor: 'role', 'label', 'kind', 'levels'",
            id="missing-on-predictor",
        ),
        pytest.param(
            '[variables.age]\nrole = "predictor"\nkind = "numeric"\nlevels = ["1"]\n',
            r"variable 'age': key 'levels' applies to categorical variables only",
            id="levels-on-numeric",
        ),
        pytest.param(
            '[variables.q]\nrole = "outcome"\nlevels = [1.5]\n',
            r"variable 'q': key 'levels' holds 1.5; labels must be text",
            id="float-level",
        ),
        pytest.param(
            '[survey]\nmissing = "dk"\n[variables.q]\nrole = "outcome"\nlevels = ["a"]\n',
            r"\[survey\]: key 'missing' must be a list of labels",
            id="survey-missing-not-a-list",
        ),
        pytest.param("[survey]\n", r"no variables declared", id="no-variables"),
        pytest.param("[variables.q\n", r"not valid TOML", id="bad-toml"),
    ],
)
def test_codebook_errors_name_file_variable_and_key(
    tmp_path: Path, text: str, pattern: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CodebookError, match=re.escape(str(path)) + ".*" + pattern):
        read_codebook(path)


def test_missing_codebook_file_is_a_codebook_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.codebook.toml"
    with pytest.raises(CodebookError, match=re.escape(str(path)) + ": codebook file not found"):
        read_codebook(path)


def test_nothing_in_the_file_is_evaluated(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '[variables.q]\nrole = "outcome"\nlevels = ["__import__(\'os\')", "b"]\n'
    )
    assert read_codebook(path)["q"].levels == ("__import__('os')", "b")


def test_codebook_is_immutable(codebook: Codebook) -> None:
    with pytest.raises(AttributeError):
        codebook.variables = ()  # type: ignore[misc]
    assert isinstance(codebook.variables, tuple)
    assert isinstance(codebook["presence"].levels, tuple)


def test_design_roles_read_and_round_trip(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[variables.q]\nrole = "outcome"\nlevels = ["a", "b"]\n'
        '[variables.district]\nrole = "strata"\nlabel = "Sampling stratum"\n'
        '[variables.village]\nrole = "cluster"\n'
        '[variables.villages]\nrole = "fpc"\n',
        "design.codebook.toml",
    )
    cb = read_codebook(path)
    assert cb.strata is not None and cb.strata.name == "district"
    assert cb.strata.kind == "categorical" and cb.strata.levels is None
    assert cb.cluster is not None and cb.cluster.name == "village"
    assert cb.fpc is not None and cb.fpc.kind == "numeric"
    assert Codebook.from_dict(cb.to_dict()) == cb
    by_roles = Codebook.from_roles(
        outcomes={"q": ["a", "b"]}, strata="district", cluster="village", fpc="villages"
    )
    assert [(v.name, v.role, v.kind) for v in by_roles] == [(v.name, v.role, v.kind) for v in cb]
    plain = Codebook.from_roles(outcomes={"q": ["a", "b"]})
    assert (plain.strata, plain.cluster, plain.fpc) == (None, None, None)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        pytest.param(
            '[variables.s1]\nrole = "strata"\n[variables.s2]\nrole = "strata"\n',
            r"more than one strata variable \('s1', 's2'",
            id="two-strata",
        ),
        pytest.param(
            '[variables.c1]\nrole = "cluster"\n[variables.c2]\nrole = "cluster"\n',
            r"more than one cluster variable \('c1', 'c2'",
            id="two-clusters",
        ),
        pytest.param(
            '[variables.s]\nrole = "strata"\nlevels = ["a", "b"]\n',
            r"\[variables.s\]: key\(s\) 'levels' do not apply to role 'strata'; keys for a "
            r"strata: 'role', 'label', 'kind'",
            id="levels-on-strata",
        ),
        pytest.param(
            '[variables.f]\nrole = "fpc"\nkind = "categorical"\n',
            r"variable 'f': kind 'categorical' \(key 'kind'\) is not allowed for role 'fpc'; "
            r"allowed kinds: 'numeric'",
            id="categorical-fpc",
        ),
    ],
)
def test_design_role_errors(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CodebookError, match=re.escape(str(path)) + ".*" + pattern):
        read_codebook(path)


def test_strata_and_clusters_take_no_declared_levels() -> None:
    with pytest.raises(CodebookError, match=r"key 'levels' does not apply to a cluster column"):
        Variable("village", "cluster", levels=("1", "2"))


def test_a_recode_table_maps_frame_labels_and_round_trips(tmp_path: Path) -> None:
    text = (
        '[variables.region]\nrole = "area"\nlevels = ["Almaty", "Astana"]\n'
        '[variables.q]\nrole = "outcome"\nlevels = ["yes", "no"]\n'
        '[recode.region]\n"Almaty city" = "Almaty"\n"Nur-Sultan" = "Astana"\n'
    )
    codebook = read_codebook(_write(tmp_path, text))
    assert codebook.recode == {"region": {"Almaty city": "Almaty", "Nur-Sultan": "Astana"}}
    again = read_codebook(codebook.to_toml(tmp_path / "again.codebook.toml"))
    assert again == codebook and again.recode == codebook.recode
    bad = {
        '[recode.province]\nA = "Almaty"\n': (
            r"\[recode.province\] names a column the codebook does not declare"
        ),
        "[recode.region]\nA = 1\n": (
            r'\[recode.region\] must map text to text: "frame label" = "survey label"'
        ),
        '[recode.region]\nA = "Almati"\n': (
            r"maps onto 'Almati', not among 'region''s levels 'Almaty', 'Astana'; the "
            r"right-hand side is the survey's label"
        ),
        'recode = ["region"]\n': r"\[recode\] must hold one table per column",
    }
    base = '[variables.region]\nrole = "area"\nlevels = ["Almaty", "Astana"]\n'
    for table, pattern in bad.items():
        path = _write(tmp_path, table + base if table.startswith("recode =") else base + table)
        with pytest.raises(CodebookError, match=r"bad.codebook.toml: .*" + pattern):
            read_codebook(path)
