"""vitlearn.require_version: a notebook's first cell stops when the installed library differs."""

import pytest

import vitlearn
from vitlearn.versions import VersionMismatchError, require_version


def test_equal_version_passes():
    require_version(vitlearn.__version__)          # what every notebook's first cell does
    require_version("0.1.0", installed="0.1.0")
    require_version("0.1", installed="0.1.0")      # the same release, written shorter


@pytest.mark.parametrize("installed, relation", [("0.0.9", "older"), ("0.1.1", "newer"), ("1.0", "newer"),
                                                 ("0.0.1", "older")])
def test_older_or_newer_stops_naming_both_versions_and_the_fix(installed, relation):
    with pytest.raises(VersionMismatchError) as err:
        require_version("0.1.0", installed=installed)
    msg = str(err.value)
    assert "written for vitlearn 0.1.0" in msg
    assert f"vitlearn {installed} is installed ({relation})" in msg
    assert 'pip install -e ".[dev,pretrained]"' in msg and "git pull" in msg


def test_installed_defaults_to_the_package_version():
    newer = ".".join(str(int(p) + 1) for p in vitlearn.__version__.split("."))
    with pytest.raises(VersionMismatchError, match=f"vitlearn {vitlearn.__version__} is installed"):
        require_version(newer)


def test_not_a_version_is_a_clear_error():
    with pytest.raises(ValueError, match="not a release number"):
        require_version("latest")
    with pytest.raises(ValueError, match="not a release number"):
        require_version(0.1)  # a float loses the patch number: write "0.1.0"
