"""The HTTP layer over real sockets: keys, errors, rate limit, persistence, concurrency, faults, inspection."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from lsq_pipeline.sandbox import run_sandbox
from lsq_pipeline_tests.chaos.checks import wait_for
from lsq_pipeline_tests.sandbox import examples
from lsq_pipeline_tests.sandbox.conftest import (
    ACTIVITIES,
    BULK_ADD,
    BULK_UPDATE,
    CAPTURE,
    EXAMPLES_ACCOUNT,
    GET_BY_IDS,
    Api,
    loan_row,
)

RATE_LIMIT_BODY = {"Status": "Error", "ExceptionType": "MXAPIRateLimitExceededException",
                   "ExceptionMessage": "API calls exceeded the limit of 5 in 1 second(s)"}


def read_one(api: Api) -> requests.Response:
    return api.post(GET_BY_IDS, examples.GET_BY_IDS_REQUEST)


# ----- keys, paths, bodies ----------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"x-LSQ-AccessKey": "wrong"},
    {"x-LSQ-SecretKey": "wrong"},
    {"x-LSQ-AccessKey": "", "x-LSQ-SecretKey": ""},
])
def test_bad_or_missing_keys_get_401(api, headers):
    answer = api.post(BULK_ADD, examples.BULK_ADD_REQUEST, params={"SearchBy": "Phone"}, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["Status"] == "Error"
    assert api.get("/sandbox/stats").json()["Opportunities"] == 5
    assert requests.get(api.url + "/sandbox/opportunities", timeout=5).status_code == 401


def test_unknown_path_and_wrong_method_get_404(api):
    assert api.post("/v2/OpportunityManagement.svc/Nope", []).status_code == 404
    assert api.session.get(api.url + GET_BY_IDS, headers={"x-LSQ-AccessKey": "a"}).status_code == 404
    assert api.get("/sandbox/nothing").status_code == 404


def test_paths_and_query_keys_are_case_insensitive(api):
    answer = api.post(BULK_ADD.lower(), examples.BULK_ADD_REQUEST, params={"searchby": "Phone"})
    assert answer.status_code == 200 and all(r["OpportunityCreated"] for r in answer.json()["Response"])


def test_health_needs_no_keys(sandbox):
    assert requests.get(sandbox.url + "/sandbox/health", timeout=5).json() == {"Status": "ok"}


@pytest.mark.parametrize("body, message", [
    ('[{"SearchByValue": "caf\xe9"}]'.encode("latin-1"), "Unexpected character encountered while parsing value"),
    (b"{not json", "Unexpected character encountered while parsing value"),
    (b"", "Unexpected character encountered while parsing value"),
    (b'{"SearchByValue": "x"}', "JSON array"),
    (b'[{"SearchByValue": "x", "OpportunityEventCode": "twelve"}]', "OpportunityEventCode"),
])
def test_malformed_bodies_get_400_and_change_nothing(api, body, message):
    answer = api.post(BULK_ADD, body, params={"SearchBy": "EmailAddress"})
    assert answer.status_code == 400
    assert answer.json()["Status"] == "Error" and message in answer.json()["ExceptionMessage"]
    assert api.get("/sandbox/stats").json()["Opportunities"] == 5
    assert read_one(api).status_code == 200  # the server still answers


def test_wrong_content_type_gets_400(api):
    answer = api.session.post(api.url + CAPTURE, data=examples.CAPTURE_REQUEST,
                              headers={"Content-Type": "text/plain", "x-LSQ-AccessKey": "sandbox-access-key",
                                       "x-LSQ-SecretKey": "sandbox-secret-key"})
    assert answer.status_code == 400


@pytest.mark.parametrize("path, body, params", [
    (BULK_ADD, [], {"SearchBy": "EmailAddress"}),
    (BULK_ADD, [loan_row(app_id=f"A{i}") for i in range(26)], {"SearchBy": "EmailAddress"}),
    (BULK_UPDATE, [], None),
    (ACTIVITIES, [{"ActivityEvent": 102, "ActivityOwnerEmail": "sri.sudhan@example.com"}] * 26,
     {"opportunityId": "24cf277e-70fe-4b2f-a9c2-9a68f45feaba"}),
    (GET_BY_IDS, {"SearchParameters": [{"EventCode": "12003", "ProspectActivityId": [f"i{n}" for n in range(2001)],
                                        "Columns": {"Include_CSV": "Owner"}}]}, None),
])
def test_limits_are_business_errors_with_an_mx_body(api, path, body, params):
    answer = api.post(path, body, params=params)
    assert answer.status_code == 500
    assert answer.json()["ExceptionType"] == "MXInvalidInputException"
    assert len(api.opportunities()) == 5 and api.get("/sandbox/activities").json()["Count"] == 0


def test_capture_business_error_is_500_with_the_documented_message(api):
    body = json.loads(examples.CAPTURE_REQUEST)
    body["Opportunity"].update(OverwriteFields=True)
    answer = api.post(CAPTURE, body)
    assert answer.status_code == 500
    assert answer.json() == {"Status": "Error", "ExceptionType": "MXInvalidInputException",
                             "ExceptionMessage": "OverwriteFields and UpdateEmptyFields both cannot be true"}


def test_duplicate_over_http_names_the_existing_opportunity(api):
    first = api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"}).json()["Response"][0]
    again = api.post(BULK_ADD, [loan_row(OverwriteFields=True)], params={"SearchBy": "EmailAddress"})
    assert again.status_code == 200
    assert again.json()["Response"][0] == {
        "ProspectOpportunityId": first["ProspectOpportunityId"], "RowNumber": 1, "OpportunityCreated": False,
        "ExceptionType": "MXDuplicateEntryException",
        "ExceptionMessage": again.json()["Response"][0]["ExceptionMessage"]}


# ----- rate limit -------------------------------------------------------------------------


def test_rate_limit_refuses_the_26th_call_in_the_window_then_recovers(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, rate_limit_calls=25, rate_limit_seconds=1)
    api = Api(running.url)
    statuses = [read_one(api).status_code for _ in range(26)]
    assert statuses[:25] == [200] * 25 and statuses[25] == 429
    assert read_one(api).json() == {**RATE_LIMIT_BODY,
                                    "ExceptionMessage": "API calls exceeded the limit of 25 in 1 second(s)"}
    time.sleep(1.05)
    assert read_one(api).status_code == 200
    assert api.stats()["RateLimited"] == 2


def test_rate_limit_window_is_shared_by_all_endpoints_and_refused_calls_do_not_count(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, rate_limit_calls=5, rate_limit_seconds=1)
    api = Api(running.url)
    started = time.monotonic()
    for _ in range(3):
        assert read_one(api).status_code == 200
    assert api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"}).status_code == 200
    assert api.post(CAPTURE, examples.CAPTURE_REQUEST).status_code == 200
    refused = api.post(BULK_UPDATE, examples.BULK_UPDATE_REQUEST)
    assert refused.status_code == 429 and refused.json() == RATE_LIMIT_BODY
    while read_one(api).status_code == 429:  # hammering while refused does not extend the window
        time.sleep(0.02)
    assert time.monotonic() - started < 1.5


def test_rate_limit_can_answer_200_with_the_same_body(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, rate_limit_calls=5, rate_limit_seconds=1, rate_limit_status=200)
    api = Api(running.url)
    answers = [api.post(BULK_ADD, [loan_row(app_id=f"R{i}")], params={"SearchBy": "EmailAddress"})
               for i in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert answers[5].json() == RATE_LIMIT_BODY
    assert len(api.opportunities()) == 5 + 5


def test_inspection_does_not_count_toward_the_rate_limit(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, rate_limit_calls=2, rate_limit_seconds=5)
    api = Api(running.url)
    for _ in range(5):
        assert api.get("/sandbox/stats").status_code == 200
    assert read_one(api).status_code == 200


# ----- persistence and concurrency --------------------------------------------------------


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state.jsonl"
    with run_sandbox(account=EXAMPLES_ACCOUNT, state_path=state, rate_limit_calls=0) as running:
        api = Api(running.url)
        created = api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"}).json()["Response"][0]
        api.post(BULK_UPDATE, examples.BULK_UPDATE_REQUEST)
        api.post(CAPTURE, examples.CAPTURE_REQUEST)
        api.post(ACTIVITIES, examples.ACTIVITIES_REQUEST, params={"opportunityId": created["ProspectOpportunityId"]})
        before = (api.opportunities(), api.get("/sandbox/leads").json(), api.get("/sandbox/activities").json())
    with run_sandbox(account=EXAMPLES_ACCOUNT, state_path=state, rate_limit_calls=0) as running:
        api = Api(running.url)
        after = (api.opportunities(), api.get("/sandbox/leads").json(), api.get("/sandbox/activities").json())
        assert after == before
        again = api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"}).json()["Response"][0]
        assert again["ProspectOpportunityId"] == created["ProspectOpportunityId"]  # still a duplicate
    assert len(state.read_text().splitlines()) == len(before[0]) + len(before[1]["Leads"]) + before[2]["Count"] + 1


def test_reset_returns_to_the_seed_state_and_persists(tmp_path):
    state = tmp_path / "state.jsonl"
    with run_sandbox(account=EXAMPLES_ACCOUNT, state_path=state, rate_limit_calls=0) as running:
        api = Api(running.url)
        api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"})
        assert api.post("/sandbox/reset", {}).json() == {"Status": "ok"}
        assert len(api.opportunities()) == 5
    with run_sandbox(account=EXAMPLES_ACCOUNT, state_path=state, rate_limit_calls=0) as running:
        assert len(Api(running.url).opportunities()) == 5


def test_a_held_call_stays_in_the_air_until_released_then_lands(api):
    assert api.post("/sandbox/hold", {}).json() == {"Status": "ok"}
    answers: list[requests.Response] = []
    call = threading.Thread(target=lambda: answers.append(
        Api(api.url).post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"})))
    call.start()
    wait_for(lambda: api.stats()["Held"] > 0, timeout=5, every=0.01, what="the call held")
    time.sleep(0.3)
    assert (api.stats()["Held"], answers, len(api.opportunities())) == (1, [], 5)  # received, not answered
    assert api.post("/sandbox/release", {}).json() == {"Status": "ok"}
    call.join(timeout=5)
    assert answers[0].json()["Response"][0]["OpportunityCreated"]
    assert (api.stats()["Held"], len(api.opportunities())) == (0, 6)


def test_many_concurrent_writers_create_no_duplicates_and_lose_nothing(tmp_path):
    state = tmp_path / "state.jsonl"
    with run_sandbox(account=EXAMPLES_ACCOUNT, state_path=state, rate_limit_calls=0) as running:
        errors = []

        def writer(number: int) -> None:
            api = Api(running.url)
            try:
                for batch in range(4):
                    # every writer sends the same 10 application ids plus 10 of its own
                    rows = [loan_row(app_id=f"SHARED-{batch}-{i}") for i in range(10)]
                    rows += [loan_row(app_id=f"W{number}-{batch}-{i}") for i in range(10)]
                    answer = api.post(BULK_ADD, rows, params={"SearchBy": "EmailAddress"})
                    assert answer.status_code == 200, answer.text
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        loans = [o for o in Api(running.url).opportunities() if o["EventCode"] == 12002]
        app_ids = [o["Fields"]["mx_Custom_1"] for o in loans]
        assert len(app_ids) == len(set(app_ids)) == 4 * 10 + 12 * 4 * 10
    with run_sandbox(account=EXAMPLES_ACCOUNT, state_path=state, rate_limit_calls=0) as running:
        assert len([o for o in Api(running.url).opportunities() if o["EventCode"] == 12002]) == 520


# ----- faults -----------------------------------------------------------------------------


def test_faults_fail_before_any_write_in_the_three_ways(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, fault_rate=1.0, seed=7)
    api = Api(running.url)
    outcomes = set()
    for i in range(30):
        try:
            answer = api.post(BULK_ADD, [loan_row(app_id=f"F{i}")], params={"SearchBy": "EmailAddress"})
            assert answer.status_code in (500, 503)
            assert "ExceptionType" not in answer.json()  # transient: no MX body
            outcomes.add(answer.status_code)
        except requests.ConnectionError:
            outcomes.add("dropped")
            api = Api(running.url)
    assert outcomes == {500, 503, "dropped"}
    assert len(api.opportunities()) == 5
    stats = api.stats()
    assert stats["TotalFaults"] == 30 and set(stats["Faults"]) == {"500", "503", "drop"}


def test_fault_rate_is_a_share_and_reproducible_with_a_seed(start_sandbox):
    def run() -> list:
        running = start_sandbox(account=EXAMPLES_ACCOUNT, fault_rate=0.3, seed=42)
        api, outcomes = Api(running.url), []
        for _ in range(40):
            try:
                outcomes.append(read_one(api).status_code)
            except requests.ConnectionError:
                outcomes.append("dropped")
                api = Api(running.url)
        return outcomes

    first = run()
    assert first == run()
    assert 4 <= sum(o != 200 for o in first) <= 20


def test_lost_response_commits_the_write_but_drops_the_answer(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, lost_response_rate=1.0)
    api = Api(running.url)
    with pytest.raises(requests.ConnectionError):
        api.post(BULK_ADD, [loan_row(app_id="LOST-1")], params={"SearchBy": "EmailAddress"})
    landed = [o for o in Api(running.url).opportunities() if o["Fields"].get("mx_Custom_1") == "LOST-1"]
    assert len(landed) == 1
    assert read_one(Api(running.url)).status_code == 200  # reads are never lost
    assert Api(running.url).stats()["LostResponses"] == 1


def test_latency_is_added_to_every_call(start_sandbox):
    running = start_sandbox(account=EXAMPLES_ACCOUNT, latency_ms=150)
    started = time.monotonic()
    read_one(Api(running.url))
    assert time.monotonic() - started >= 0.15


# ----- inspection -------------------------------------------------------------------------


def test_stats_count_calls_per_endpoint(api):
    api.post(BULK_ADD, examples.BULK_ADD_REQUEST, params={"SearchBy": "Phone"})
    read_one(api)
    read_one(api)
    api.post(BULK_ADD, [loan_row(email="ghost@example.com")], params={"SearchBy": "EmailAddress"})
    stats = api.stats()
    assert stats["Calls"] == {"BulkAdd": 2, "GetOpportunitiesById": 2}
    assert stats["TotalCalls"] == 4 and stats["RowsFailed"] == {"MXRecordNotFoundException": 1}
    assert stats["Opportunities"] == 7 and stats["RateLimited"] == 0 and stats["LostResponses"] == 0


def test_inspection_lists_opportunities_in_full(api):
    created = api.post(BULK_ADD, [loan_row()], params={"SearchBy": "EmailAddress"}).json()["Response"][0]
    listed = {o["ProspectOpportunityId"]: o for o in api.opportunities()}[created["ProspectOpportunityId"]]
    assert set(listed) == {"ProspectOpportunityId", "ProspectId", "EventCode", "Fields", "OpportunityNote",
                           "CreatedOn", "ModifiedOn"}
    assert listed["ProspectId"] == "a368678f-1e81-4fb8-af0a-4b896f6330e1"
    assert listed["Fields"]["mx_Custom_3"] == "250000"


def test_opportunity_edit_behind_the_pipelines_back(api):
    opp_id = "4f530c63-4c93-4150-8b8e-83487befb3b2"
    answer = api.session.patch(api.url + f"/sandbox/opportunities/{opp_id}", json={"Fields": {"Status": "Lost"}},
                               headers={"x-LSQ-AccessKey": "sandbox-access-key",
                                        "x-LSQ-SecretKey": "sandbox-secret-key"})
    assert answer.status_code == 200 and answer.json()["Fields"]["Status"] == "Lost"
    assert {o["ProspectOpportunityId"]: o for o in api.opportunities()}[opp_id]["Fields"]["Status"] == "Lost"
    missing = api.post("/sandbox/opportunities/00000000-0000-0000-0000-000000000000", {"Fields": {}})
    assert missing.status_code == 500


def test_keys_never_reach_the_log(capfd):
    with run_sandbox(account=EXAMPLES_ACCOUNT, rate_limit_calls=0, verbose=True,
                     access_key="very-secret-access", secret_key="very-secret-secret") as running:
        requests.post(running.url + GET_BY_IDS, data=examples.GET_BY_IDS_REQUEST,
                      params={"accessKey": "very-secret-access", "secretKey": "very-secret-secret"},
                      headers={"Content-Type": "application/json"}, timeout=5)
        requests.post(running.url + GET_BY_IDS, params={"accessKey": "very-secret-access"}, timeout=5)
    out, err = capfd.readouterr()
    assert "GetOpportunitiesById" in err  # something was logged
    assert "very-secret" not in out + err
