"""The demo as a dg project of its own, laid out where `lsq-pipeline demo` runs outside any
project: the packaged source days and mapping, one account on the embedded sandbox, and an
instance, so `history`, `state` and `ui` work in that folder afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path

DATA = Path(__file__).with_name("data")
ACCOUNT = "demo"
PACKAGE = "lsq_demo"
FIRST_DAY = "2026-11-01"
"""The first day of the packaged source files."""

PYPROJECT = f"""[project]
name = "lsq-demo"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["lsq_pipeline"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{PACKAGE}"
registry_modules = ["lsq_pipeline"]
"""

DEFINITIONS = """from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

DEFS_YAML = f"""type: lsq_pipeline.LeadSquaredSyncComponent
attributes:
  account: {ACCOUNT}
  sandbox: true
  source_dir: data/source
  first_day: "{FIRST_DAY}"
  mapping: data/mapping.yaml
  warehouse: data/warehouse.duckdb
  sandbox_dir: data/sandbox
  rate_limit_db: data/rate_limit.sqlite
  rate_limit_calls: 0
"""


def lay_out(folder: Path) -> None:
    """Write the demo project into `folder` (made if missing); the files already there are kept,
    so a second demo in the same folder syncs on the same warehouse."""
    defs = folder / PACKAGE / "defs" / ACCOUNT
    defs.mkdir(parents=True, exist_ok=True)
    files = {
        folder / "pyproject.toml": PYPROJECT,
        folder / PACKAGE / "__init__.py": "",
        folder / PACKAGE / "definitions.py": DEFINITIONS,
        folder / PACKAGE / "defs" / "__init__.py": "",
        defs / "defs.yaml": DEFS_YAML,
    }
    for path, text in files.items():
        if not path.exists():
            path.write_text(text)
    if not (folder / "data" / "source").exists():
        shutil.copytree(DATA / "source", folder / "data" / "source")
    if not (folder / "data" / "mapping.yaml").exists():
        shutil.copy(DATA / "mapping.yaml", folder / "data" / "mapping.yaml")
