"""The team's dg project the source tests build, its sandboxes stopped when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lsq_pipeline_tests.sources.dg_project import TeamProject, team_project


@pytest.fixture
def team(tmp_path: Path) -> Iterator[TeamProject]:
    project = team_project(tmp_path)
    try:
        yield project
    finally:
        project.stop_sandboxes()
