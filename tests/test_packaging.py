"""pyproject.toml and environment.yml must install the same things; README commands exist."""

import re

import pytest

from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        m = re.match(r"^\s+-\s+(.+)$", line)
        if not m:
            break
        reqs.append(m.group(1).strip())
    return reqs


def test_environment_yml_matches_pyproject_dependencies():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r): r.replace(" ", "") for r in
              project["dependencies"] + extras["dev"] + extras["pretrained"] + extras["site"]}
    env = [r for r in _environment_pip_requirements() if not r.startswith("-e")]
    have = {_name(r): r.replace(" ", "") for r in env}
    assert have == wanted, (f"environment.yml and pyproject.toml disagree: only in environment.yml "
                            f"{sorted(set(have.items()) - set(wanted.items()))}, only in pyproject "
                            f"{sorted(set(wanted.items()) - set(have.items()))}")
    assert "-e .[dev,pretrained,site]" in _environment_pip_requirements()
    assert "name: vitlearn" in (ROOT / "environment.yml").read_text()


def test_python_version_agrees():
    requires = _pyproject()["project"]["requires-python"]
    assert requires == ">=3.10"
    assert "python>=3.10" in (ROOT / "environment.yml").read_text()


def test_no_exact_pins_that_only_exist_on_one_machine():
    project = _pyproject()["project"]
    for req in project["dependencies"] + sum(project["optional-dependencies"].values(), []):
        assert "==" not in req and "+cpu" not in req, req


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"## Tests.*?```bash\n(.+?)\n```", readme, re.S).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci], f"{command!r} is not a line of .ci/run"


def test_console_script_and_module_entry_point():
    assert _pyproject()["project"]["scripts"]["vitlearn"] == "vitlearn.cli:main"
    assert (ROOT / "vitlearn" / "__main__.py").is_file()
