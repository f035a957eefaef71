"""lsq_pipeline installed as a data team installs it (docs/dg-project.md): a venv of its own, out of
this repository, on the newest DuckDB the registry offers, the wheel built from this checkout with
no extras, a project made by `create-dagster`, two accounts scaffolded beside the team's own
`warehouse` resource and asset, synced from the project folder; the demo in an empty folder; a
YAML that names no LeadSquared refused by `dg check defs`.

Everything is installed for real, from pip's cache or the package registry this machine reaches:
no `--system-site-packages`, no `.pth` link to the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-01"
STEP_TIMEOUT = 600  # seconds for any one command: installs from the registry take the longest
COMPANY_DEFS = '''
import dagster as dg
from dagster_duckdb import DuckDBResource


@dg.asset
def company_customers(warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        conn.execute("CREATE OR REPLACE TABLE customers AS SELECT range AS id FROM range(3)")
        rows = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    return dg.MaterializeResult(metadata={"rows": rows})


@dg.definitions
def company() -> dg.Definitions:
    return dg.Definitions(assets=[company_customers], resources={"warehouse": DuckDBResource(database="data/company.duckdb")})
'''


def _run(command: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if ok:
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def _team_env(venv: Path, dagster_home: Path | None = None) -> dict[str, str]:
    """No LSQ_*, DAGSTER_*, PYTHONPATH or other venv of ours: the team's venv active."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("LSQ_", "DAGSTER_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
                "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0"})
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


def _newest_duckdb(pip: Path) -> str:
    """The newest DuckDB release the registry offers."""
    listed = subprocess.run([str(pip), "index", "versions", "duckdb"], capture_output=True, text=True,
                            timeout=STEP_TIMEOUT, check=True).stdout
    return re.search(r"^duckdb \(([^)]+)\)", listed, re.MULTILINE).group(1)


def _wheel(out: Path) -> Path:
    """The wheel of this checkout's tracked files (a copy: nothing is built inside the repository)."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    source = out / "source"
    for name in filter(None, tracked.decode().split("\0")):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            target.symlink_to(os.readlink(REPO / name))
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out / "dist"), str(source)],
                   check=True, timeout=STEP_TIMEOUT, capture_output=True)
    [wheel] = (out / "dist").glob("lsq_pipeline-*.whl")
    return wheel


def _statuses(warehouse: Path, python: Path, env: dict[str, str], cwd: Path) -> dict[str, int]:
    script = ("import duckdb, json, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
              "print(json.dumps(dict(c.execute('SELECT status, count(*) FROM opportunity_state GROUP BY 1').fetchall())))")
    return json.loads(_run([str(python), "-c", script, str(warehouse)], cwd, env).stdout)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_team_installs_the_wheel_into_its_own_dg_project(tmp_path: Path) -> None:
    # 1. The team's venv: the newest DuckDB and dagster-duckdb first, then the wheel, no extras.
    venv = tmp_path / "team-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=STEP_TIMEOUT)
    pip, python, bin_ = venv / "bin" / "pip", venv / "bin" / "python", venv / "bin"
    env = _team_env(venv)
    newest = _newest_duckdb(pip)
    # --no-compile: a module compiles when first imported; byte-compiling every installed module
    # up front costs the busy test machine more than the few this test imports.
    install = [str(pip), "install", "--quiet", "--no-compile"]
    _run([*install, f"duckdb=={newest}", "dagster-duckdb"], tmp_path, env)
    _run([*install, str(_wheel(tmp_path / "build"))], tmp_path, env)
    _run([*install, "dagster-dg-cli", "create-dagster"], tmp_path, env)  # the team's dev tools
    installed = _run([str(python), "-c", "import duckdb, lsq_pipeline; print(duckdb.__version__, lsq_pipeline.__file__)"],
                     tmp_path, env).stdout.split()
    assert installed[0] == newest, "installing lsq_pipeline changed the team's DuckDB"
    assert Path(installed[1]).is_relative_to(venv) and not Path(installed[1]).is_relative_to(REPO)
    _run([str(pip), "check"], tmp_path, env)
    for extra in ("faker", "redis", "psycopg2", "dagster_webserver", "duckdb_extension_postgres"):  # extras stay out
        assert _run([str(python), "-c", f"import {extra}"], tmp_path, env, ok=False).returncode != 0, extra
    demo_data = Path(_run([str(python), "-c", "from lsq_pipeline.demo.project import DATA; print(DATA)"],
                          tmp_path, env).stdout.strip())

    # 2. A fresh dg project, installed as the team installs it, with two accounts on the demo's data.
    _run([str(bin_ / "create-dagster"), "project", "--no-uv-sync", "acme-data"], tmp_path, env)
    project = tmp_path / "acme-data"
    _run([str(pip), "install", "--quiet", "--no-deps", "-e", str(project)], tmp_path, env)
    dg = [str(bin_ / "dg")]
    components = json.loads(_run(dg + ["list", "components", "--json"], project, env).stdout)["items"]
    assert "lsq_pipeline.LeadSquaredSyncComponent" in {component["key"] for component in components}
    for account in ("acme", "globex"):
        shutil.copytree(demo_data / "source", project / "data" / account / "source")
        shutil.copy(demo_data / "mapping.yaml", project / "data" / account / "mapping.yaml")
        _run(dg + ["scaffold", "defs", "lsq_pipeline.LeadSquaredSyncComponent", account], project, env)
        defs_yaml = (project / "src" / "acme_data" / "defs" / account / "defs.yaml").read_text()
        assert "sandbox: true" in defs_yaml and "first_day: '2026-11-01'" in defs_yaml  # the oldest day found
    (project / "src" / "acme_data" / "defs" / "company.py").write_text(COMPANY_DEFS)
    listed_env = _run(dg + ["list", "env"], project, env).stdout
    assert re.search(r"ACME_LSQ_ACCESS_KEY\s.*\sacme", listed_env), listed_env

    # 3. The team's `warehouse` beside both accounts' resources: everything loads.
    checked = _run(dg + ["check", "defs"], project, env)
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    resources = {r["name"] for r in json.loads(_run(dg + ["list", "defs", "--json"], project, env).stdout)["resources"]}
    assert {"warehouse", "acme_warehouse", "globex_warehouse"} <= resources

    # 4. A run of the team's asset and of each account, from the project folder.
    home = tmp_path / "dagster_home"
    home.mkdir()
    run_env = _team_env(venv, home)
    _run(dg + ["launch", "--assets", "company_customers"], project, run_env)
    listed = _run([str(bin_ / "lsq-pipeline"), "sync", "--partition", DAY], project, run_env, ok=False)
    assert listed.returncode == 2 and "defines several accounts (acme, globex)" in listed.stderr
    for account in ("acme", "globex"):
        synced = _run([str(bin_ / "lsq-pipeline"), "sync", "--account", account, "--partition", DAY], project, run_env)
        assert "succeeded" in synced.stdout
        statuses = _statuses(project / "data" / account / "warehouse.duckdb", python, env, project)
        assert set(statuses) == {"in_sync"} and statuses["in_sync"] > 0

    # 5. A YAML naming neither api_host nor sandbox: true is refused, in one line naming both.
    refused_folder = project / "src" / "acme_data" / "defs" / "initech"
    refused_folder.mkdir()
    (refused_folder / "defs.yaml").write_text("type: lsq_pipeline.LeadSquaredSyncComponent\nattributes:\n"
                                              "  account: initech\n  first_day: '2026-11-01'\n")
    refused = _run(dg + ["check", "defs"], project, env, ok=False)
    assert refused.returncode != 0
    assert any(str(refused_folder / "defs.yaml") in line and "api_host" in line
               for line in (refused.stdout + refused.stderr).splitlines())
    shutil.rmtree(refused_folder)

    # 6. The demo in an empty folder: its own small project, every record in sync or rejected.
    empty = tmp_path / "empty"
    empty.mkdir()
    demo = _run([str(bin_ / "lsq-pipeline"), "demo"], empty, env)
    assert "Overall: in_sync" in demo.stdout and "failed" not in demo.stdout.split("Overall:")[1]
    assert sorted(path.name for path in empty.iterdir()) == ["lsq-demo"]
    statuses = _statuses(empty / "lsq-demo" / "data" / "warehouse.duckdb", python, env, empty)
    assert statuses["in_sync"] > 0 and set(statuses) <= {"in_sync", "rejected"}
    state = _run([str(bin_ / "lsq-pipeline"), "state"], empty / "lsq-demo", env)
    assert f"in_sync    {statuses['in_sync']}" in state.stdout

    # 7. An extra not installed: one line naming it, no traceback.
    generate = _run([str(bin_ / "lsq-pipeline"), "generate", "--rows", "5", "--days", "1", "--seed", "1",
                     "--out", "generated"], empty, env, ok=False)
    assert generate.returncode == 1 and "Traceback" not in generate.stderr
    assert generate.stderr.strip().endswith("pip install 'lsq_pipeline[demo]'")
    ui = _run([str(bin_ / "lsq-pipeline"), "ui"], project, env, ok=False)  # dg is there, the webserver is not
    assert ui.returncode == 1 and "Traceback" not in ui.stderr
    assert ui.stderr.strip().endswith("needs dagster-webserver, which is not installed: pip install 'lsq_pipeline[ui]'")
    acme_yaml = project / "src" / "acme_data" / "defs" / "acme" / "defs.yaml"
    acme_yaml.write_text(acme_yaml.read_text().replace("attributes:\n", "attributes:\n  rate_limit_redis_env: ACME_REDIS\n"))
    _run(dg + ["check", "defs"], project, env)  # whether Redis is used is decided when a run starts
    shared = _run([str(bin_ / "lsq-pipeline"), "sync", "--account", "acme", "--partition", "2026-11-02"], project,
                  {**run_env, "ACME_REDIS": "redis://127.0.0.1:9/0"}, ok=False)
    assert shared.returncode == 1
    output = shared.stdout + shared.stderr
    assert "needs the redis package, which is not installed: pip install 'lsq_pipeline[redis]'" in output
    assert "ModuleNotFoundError" not in output and "ImportError" not in output
