"""Which dg project a command works on, found the way `dg` finds it, and its Definitions.

The command line works on the dg project that holds the current folder (the nearest
`pyproject.toml` with `[tool.dg]`, or `dg.toml`, of directory type `project`), or the one
`--project DIR` names. Outside any dg project it works on the packaged `default` account
(`lsq_pipeline/defs/default/defs.yaml`: `LSQ_*` variables, paths from the current folder)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_shared.utils.config import discover_config_file, get_canonical_defs_module_name, load_toml_as_dict


@dataclass(frozen=True)
class DgProject:
    """A dg project: its folder and the module whose `defs` folder dg loads."""

    root: Path
    root_module: str
    defs_module: str


def _is_project(config: dict) -> bool:
    return config.get("directory_type", "project") == "project"


def find_project(start: Path) -> DgProject | None:
    """The dg project holding `start`, else None."""
    config_file = discover_config_file(start, _is_project)
    if config_file is None:
        return None
    toml = load_toml_as_dict(config_file)
    node = toml if config_file.name == "dg.toml" else toml["tool"]["dg"]
    project = node.get("project", {})
    root_module = project.get("root_module") or project.get("defs_module", "").split(".")[0]
    if not root_module:
        raise dg.DagsterError(f"{config_file}: the dg project names no root_module")
    return DgProject(config_file.parent.resolve(), root_module,
                     get_canonical_defs_module_name(project.get("defs_module"), root_module))


def load_definitions(project: DgProject | None) -> dg.Definitions:
    """The project's Definitions (its defs folder, as `dg` loads it), or the packaged default
    account's when there is no project. A project whose package is not installed is imported from
    its folder (`src/` or the root), as `dg dev` finds it.

    Only the defs folder is built: a whole project's build adds, for the UI, Dagster's catalogue
    of every installed component type, which imports each component library (dbt's among them)
    and costs a command, or a step's process, about two seconds of CPU it does not use."""
    from lsq_pipeline.definitions import packaged_tree, quietly

    if project is not None and importlib.util.find_spec(project.root_module) is None:
        source = project.root / "src"
        folder = source if (source / project.root_module).is_dir() else project.root
        sys.path.insert(0, str(folder))

    def build() -> dg.Definitions:
        tree = packaged_tree() if project is None else dg.ComponentTree.for_project(path_within_project=project.root)
        return tree.build_defs(tree.defs_module_path)

    return quietly(build)
