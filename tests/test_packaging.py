"""pyproject.toml as setuptools reads it: no deprecation warnings on install, and a
[build-system] floor that supports what the file uses."""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# The first setuptools that reads `project.license` as an SPDX expression (PEP 639)
# is 77.0.0; 77.0.3 fixed its first bugs. Older ones refuse the string form.
LICENSE_EXPRESSION_SETUPTOOLS = (77, 0, 3)


def test_setuptools_reads_the_project_table_without_deprecation_warnings() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), PYPROJECT)
    assert [str(w.message) for w in caught if "project." in str(w.message)] == []
    # setuptools sets it (PEP 639); types-setuptools' DistributionMetadata lacks it.
    assert distribution.metadata.license_expression == "Apache-2.0"  # type: ignore[attr-defined]


def test_the_setuptools_floor_supports_the_license_expression() -> None:
    build_system = tomllib.loads(PYPROJECT.read_text())["build-system"]
    floors = [
        re.fullmatch(r"setuptools>=([\d.]+)", requirement)
        for requirement in build_system["requires"]
    ]
    floor = next((match.group(1) for match in floors if match), None)
    if floor is None:
        pytest.fail(f"no setuptools>= floor in {build_system['requires']}")
    assert tuple(int(part) for part in floor.split(".")) >= LICENSE_EXPRESSION_SETUPTOOLS
