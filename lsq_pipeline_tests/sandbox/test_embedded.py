"""One shared sandbox process per state folder (`ensure_sandbox`), and the `lsq-pipeline sandbox` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from lsq_pipeline.sandbox.__main__ import parse_rate_limit
from lsq_pipeline.sandbox.embedded import _is_sandbox_process, ensure_sandbox, stop_sandbox
from lsq_pipeline_tests.sandbox import examples
from lsq_pipeline_tests.sandbox.conftest import BULK_ADD, Api, loan_row

ENSURE_AND_WRITE = """
import json, sys
from pathlib import Path
import requests
from lsq_pipeline.sandbox import ensure_sandbox
url = ensure_sandbox(Path(sys.argv[1]), access_key="k1", secret_key="s1", rate_limit_calls=0)
lead = {"LeadDetails": [{"Attribute": "EmailAddress", "Value": sys.argv[2] + "@example.com"},
                        {"Attribute": "SearchBy", "Value": "EmailAddress"}],
        "Opportunity": {"OpportunityEventCode": 12001, "Fields": []}}
answer = requests.post(url + "/v2/OpportunityManagement.svc/Capture", json=lead,
                       headers={"x-LSQ-AccessKey": "k1", "x-LSQ-SecretKey": "s1"}, timeout=10)
answer.raise_for_status()
print(url)
"""


@pytest.fixture
def state_dir(tmp_path):
    folder = tmp_path / "sandbox"
    yield folder
    stop_sandbox(folder)


def test_two_processes_share_one_sandbox(state_dir):
    runs = [subprocess.Popen([sys.executable, "-c", ENSURE_AND_WRITE, str(state_dir), name],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in ("first", "second")]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1
    url = urls.pop()
    assert ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0) == url
    leads = requests.get(url + "/sandbox/leads", headers={"x-LSQ-AccessKey": "k1", "x-LSQ-SecretKey": "s1"},
                         timeout=5).json()["Leads"]
    assert {lead["Fields"]["EmailAddress"] for lead in leads} == {"first@example.com", "second@example.com"}
    info = json.loads((state_dir / "server.json").read_text())
    assert info["url"] == url and "k1" not in json.dumps(info)
    assert (state_dir / "state.jsonl").exists() and (state_dir / "server.log").exists()
    assert stop_sandbox(state_dir) is True
    assert not _is_sandbox_process(info["pid"])
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/sandbox/health", timeout=2)


def test_other_options_replace_the_server_and_state_survives(state_dir):
    url = ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0)
    pid = json.loads((state_dir / "server.json").read_text())["pid"]
    api = Api(url)
    api.session.headers.update({"x-LSQ-AccessKey": "k1", "x-LSQ-SecretKey": "s1"})
    capture = json.loads(examples.CAPTURE_REQUEST)
    assert api.session.post(url + "/v2/OpportunityManagement.svc/Capture", json=capture, timeout=5).ok
    second = ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=3, rate_limit_seconds=1)
    assert not _is_sandbox_process(pid)
    opportunities = requests.get(second + "/sandbox/opportunities", timeout=5,
                                 headers={"x-LSQ-AccessKey": "k1", "x-LSQ-SecretKey": "s1"}).json()
    assert opportunities["Count"] == 1


def test_a_profile_change_replaces_the_server(state_dir):
    keys = {"x-LSQ-AccessKey": "k1", "x-LSQ-SecretKey": "s1"}
    url = ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0)
    assert requests.get(url + "/sandbox/stats", headers=keys, timeout=5).json()["Profile"] == "documented"
    field = ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0, profile="field")
    assert requests.get(field + "/sandbox/stats", headers=keys, timeout=5).json()["Profile"] == "field"
    assert ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0, profile="field") == field
    assert json.loads((state_dir / "server.json").read_text())["options"]["profile"] == "field"


def test_the_server_starts_on_the_account_file_given_and_an_edit_of_it_replaces_the_server(state_dir, tmp_path):
    keys = {"x-LSQ-AccessKey": "k1", "x-LSQ-SecretKey": "s1"}
    account = tmp_path / "team_account.yaml"
    account.write_text("users: [{id: u-1, email: officer@acme.example}]\n"
                       "leads: [{id: seed-lead, fields: {EmailAddress: seed@acme.example}}]\n")
    url = ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0, account=account)
    leads = requests.get(url + "/sandbox/leads", headers=keys, timeout=5).json()["Leads"]
    assert [lead["Fields"]["EmailAddress"] for lead in leads] == ["seed@acme.example"]  # the file's seed lead
    assert ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0, account=account) == url
    pid = json.loads((state_dir / "server.json").read_text())["pid"]
    account.write_text(account.read_text().replace("users: [", "users: [{id: u-2, email: second@acme.example}, "))
    ensure_sandbox(state_dir, access_key="k1", secret_key="s1", rate_limit_calls=0, account=account)
    assert not _is_sandbox_process(pid)  # the edited file started a new server
    assert json.loads((state_dir / "server.json").read_text())["options"]["account"] == str(account.resolve())


def test_idle_server_exits_by_itself(tmp_path):
    folder = tmp_path / "idle"
    ensure_sandbox(folder, access_key="k", secret_key="s", idle_timeout=1)
    pid = json.loads((folder / "server.json").read_text())["pid"]
    deadline = time.monotonic() + 10
    while _is_sandbox_process(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _is_sandbox_process(pid)
    assert stop_sandbox(folder) is False


def test_cli_prints_its_url_and_serves(tmp_path):
    command = [sys.executable, "-m", "lsq_pipeline.cli", "sandbox", "--port", "0", "--rate-limit", "0",
               "--state", str(tmp_path / "state.jsonl")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("LeadSquared sandbox listening on http://127.0.0.1:")
        url = line.split()[-1]
        answer = Api(url).post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"})
        assert answer.json()["Response"][0]["ExceptionType"] == "MXRecordNotFoundException"  # no seed leads
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert server.returncode == 0


@pytest.mark.parametrize("text, expected", [("25/5", (25, 5.0)), ("0", (0, 5.0)), ("2/0.5", (2, 0.5))])
def test_rate_limit_option(text, expected):
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["25", "a/b", "5/0", "-1/5"])
def test_bad_rate_limit_option(text):
    with pytest.raises(Exception):
        parse_rate_limit(text)
