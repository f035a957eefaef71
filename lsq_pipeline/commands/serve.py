"""`lsq-pipeline sandbox` and `ui`: the commands that serve until Ctrl-C, the LeadSquared sandbox
and the Dagster UI."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from lsq_pipeline.commands.project import add_project_argument, select_project_of
from lsq_pipeline.extras import MissingExtra


def add_sandbox_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline sandbox`: run the LeadSquared sandbox until Ctrl-C."""
    from lsq_pipeline.sandbox.__main__ import add_server_arguments, serve

    parser = subparsers.add_parser(
        "sandbox",
        help="run the local LeadSquared sandbox server",
        description="Run a local server that behaves like LeadSquared's opportunity API, until Ctrl-C. "
        "Keys default to $LSQ_ACCESS_KEY / $LSQ_SECRET_KEY, else sandbox-access-key / sandbox-secret-key.",
    )
    add_server_arguments(parser)
    parser.set_defaults(handler=serve)


def _run_ui(args: argparse.Namespace) -> int:
    """`dg dev` in the project (webserver and daemon), or `dagster dev` of the packaged default
    account outside any project; both of this venv (beside this interpreter), so
    `.venv/bin/lsq-pipeline ui` works without activating it."""
    from lsq_pipeline.orchestration.runs import selected_project, use_project_instance

    if not select_project_of(args):
        return 2
    use_project_instance()
    project = selected_project()
    tool = Path(sys.executable).with_name("dg" if project else "dagster")
    missing = [name for name, there in ((tool.name, tool.exists()),
                                        ("dagster-webserver", importlib.util.find_spec("dagster_webserver")))
               if not there]
    if missing:
        raise MissingExtra(f"the Dagster UI needs {' and '.join(missing)}, which is not installed: "
                           "pip install 'lsq_pipeline[ui]'")
    if project:
        # --use-active-venv with VIRTUAL_ENV keeps dg on this environment.
        command = [str(tool), "dev", "--use-active-venv", "--port", str(args.port)]
        os.environ["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
        os.chdir(project.root)
    else:
        command = [str(tool), "dev", "-m", "lsq_pipeline.definitions", "--port", str(args.port)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} " + " ".join(command), flush=True)
    os.execv(command[0], command)


def add_ui_command(subparsers: argparse._SubParsersAction) -> None:
    """`lsq-pipeline ui`: `dg dev` on the project's instance (webserver and daemon)."""
    parser = subparsers.add_parser("ui", help="open the Dagster UI (dg dev) on the project's instance")
    parser.add_argument("--port", type=int, default=3000)
    add_project_argument(parser)
    parser.set_defaults(handler=_run_ui)
