"""Projects files (TOML, YAML) into core objects; bad files name the field and give nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.core import Cluster, Factory, JobState, SpecError, Submit
from aifactory.projects_file import MAX_BYTES, load_projects, parse_projects

from .helpers import spec

TOML = """
[[departments]]
name = "research"
quota = 6
weight = 2
limit = 8

[[projects]]
name = "vision"
department = "research"
quota = 4
limit = 6
quota_by_model = { H100 = 2 }

[[projects]]
name = "nlp"
department = "research"
quota = 2
weight = 3
"""

YAML = """
departments:
  - {name: research, quota: 6, weight: 2, limit: 8}
projects:
  - {name: vision, department: research, quota: 4, limit: 6, quota_by_model: {H100: 2}}
  - {name: nlp, department: research, quota: 2, weight: 3}
"""


def test_toml_and_yaml_give_the_same_projects(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(TOML)
    (tmp_path / "p.yaml").write_text(YAML)
    assert load_projects(tmp_path / "p.toml") == load_projects(tmp_path / "p.yaml")
    projects, departments = load_projects(tmp_path / "p.toml")
    assert [(p.name, p.quota, p.weight, p.limit, p.department) for p in projects] == [
        ("vision", 4.0, 1.0, 6.0, "research"),
        ("nlp", 2.0, 3.0, None, "research"),
    ]
    assert projects[0].quota_by_model == {"H100": 2.0}
    assert [(d.name, d.quota, d.weight, d.limit) for d in departments] == [("research", 6.0, 2.0, 8.0)]


def test_a_loaded_file_drives_the_factory(tmp_path: Path) -> None:
    projects, departments = parse_projects(TOML)
    f = Factory(Cluster.virtual(8, 1), projects, departments=departments)
    for i in range(1, 10):
        f.handle(Submit(i, spec(1, "vision")), 0)
    assert f.usage["vision"] == 6 and f.job(9).state is JobState.QUEUED  # project limit 6


@pytest.mark.parametrize(
    ("text", "fmt", "field"),
    [
        ("[[projects]]\nname = 'a'\nquota = -1", "toml", "projects[0].quota"),
        ("[[projects]]\nname = 'a'\nweight = 0", "toml", "projects[0].weight"),
        ("[[projects]]\nname = 'a'\nquota = 'lots'", "toml", "projects[0].quota"),
        ("[[projects]]\nname = 'a'\nquota = 4\nlimit = 2", "toml", "projects[0].limit"),
        ("[[projects]]\nname = 'a'\nwieght = 2", "toml", "projects[0].wieght"),
        ("[[projects]]\nname = 'a'\n[[projects]]\nname = 'a'", "toml", "projects[1].name"),
        ("[[projects]]\nname = 'a'\ndepartment = 'nope'", "toml", "projects[0].department"),
        (
            "[[departments]]\nname='d'\nquota=1\n[[projects]]\nname='a'\ndepartment='d'\nquota=2",
            "toml",
            "projects[0].quota",
        ),
        ("[[projects]]\nname = 'a'\nquota = 1\nquota_by_model = {H100 = 2}", "toml", "projects[0].quota_by_model.H100"),
        ("projects = [", "toml", "file"),
        ("projects: [a", "yaml", "file"),
        ("- a\n- b", "yaml", "file"),
        ("colours = 3", "toml", "colours"),
        ("", "json", "format"),
    ],
)
def test_bad_files_name_the_field(text: str, fmt: str, field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_projects(text, fmt)
    assert err.value.field == field


def test_missing_oversized_and_wrong_kind_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_projects(tmp_path / "absent.toml")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_BYTES)
    with pytest.raises(SpecError, match="larger than"):
        load_projects(big)
    other = tmp_path / "p.json"
    other.write_text("{}")
    with pytest.raises(SpecError, match=r"expected a \.toml"):
        load_projects(other)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_projects(binary)


def test_an_empty_file_means_no_projects() -> None:
    assert parse_projects("", "toml") == ([], [])
    assert parse_projects("", "yaml") == ([], [])
