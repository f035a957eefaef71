"""End-state checks shared by the chaos tests: nothing lost, nothing doubled, everything accounted for.

Every check reads the warehouse read-only and the sandbox over `/sandbox/`; none trusts the
pipeline's own counters."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, AccountSettings
from lsq_pipeline_tests.pipeline.harness import MAPPING, Pipeline

KEY_HEADERS = {"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": SANDBOX_SECRET_KEY}

# The sandbox's mandatory status comment is not read back by GetOpportunitiesById.
NOT_READ_BACK = {"mx_Custom_19"}


@dataclass
class ChaosPipeline(Pipeline):
    """A Pipeline whose client knows the account's (small) window, so the sandbox's 429s come
    from a second client of the same account, as in production."""

    rate_limit_calls: int = 0
    rate_limit_seconds: float = 1.0
    max_in_flight: int = 8

    def settings(self) -> AccountSettings:
        return super().settings().model_copy(
            update={
                "rate_limit_calls": self.rate_limit_calls,
                "rate_limit_seconds": self.rate_limit_seconds,
                "rate_limit_db": "",
                "max_in_flight": self.max_in_flight,
            }
        )


def subprocess_env(base: dict, *, sandbox_url: str, source: Path, warehouse: Path | str, dagster_home: Path,
                   rate_limit_db: Path, rate_limit: tuple[int, float] = (0, 1.0), max_in_flight: int = 8) -> dict:
    """The LSQ_* environment of a `lsq-pipeline sync` / `dagster dev` process under test."""
    env = {k: v for k, v in base.items() if not k.startswith(("LSQ_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        LSQ_API_HOST=sandbox_url,
        LSQ_ACCESS_KEY="sandbox-access-key",
        LSQ_SECRET_KEY="sandbox-secret-key",
        LSQ_SOURCE_DIR=str(source),
        LSQ_WAREHOUSE=str(warehouse),
        LSQ_MAPPING=str(MAPPING),
        LSQ_RATE_LIMIT_CALLS=str(rate_limit[0]),
        LSQ_RATE_LIMIT_SECONDS=str(rate_limit[1]),
        LSQ_RATE_LIMIT_DB=str(rate_limit_db),
        LSQ_MAX_IN_FLIGHT=str(max_in_flight),
        LSQ_MAX_REJECT_RATE="0.5",
    )
    return env


BURST_CONNECTIONS = 10


class Burster:
    """A second client of the same account: bursts of cheap reads from a thread, so the
    account's window really fills and the pipeline meets 429s."""

    def __init__(self, url: str, burst: int, every_seconds: float) -> None:
        self.url, self.burst, self.every = url, burst, every_seconds
        self.sent = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="burster", daemon=True)

    def __enter__(self) -> Burster:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        # The burst goes out at once from several connections: sent one after the other, a burst
        # only spreads over the window (the 30 ms latency) and the pipeline's paced calls never meet it.
        with ThreadPoolExecutor(max_workers=BURST_CONNECTIONS, thread_name_prefix="burster") as pool:
            while not self._stop.wait(self.every):
                for refused in pool.map(self._send, range(self.burst)):
                    if refused is not None:
                        self.sent += 1
                        self.refused += refused

    def _send(self, _: int) -> bool | None:
        """One cheap read; True if refused for the rate, None if it met an injected fault."""
        body = {"OpportunityEventCode": 12002, "OpportunityIds": ["00000000-0000-0000-0000-000000000000"],
                "Columns": {"Include_CSV": "mx_Custom_1"}}
        try:
            answer = requests.post(f"{self.url}/v2/OpportunityManagement.svc/GetOpportunitiesById",
                                   json=body, headers=KEY_HEADERS, timeout=10)
        except requests.RequestException:
            return None  # an injected fault
        # 429, or (as some accounts do) 200 with the rate-limit body
        return answer.status_code == 429 or "MXAPIRateLimitExceededException" in answer.text


@dataclass
class EndState:
    accepted: set[str]
    rejected_only: set[str]
    statuses: dict[str, int]
    activities_created: int
    activities_unknown: int
    leads: int = 0
    notes: list[str] = field(default_factory=list)


def assert_end_state(pipeline: Pipeline) -> EndState:
    """Exactly one opportunity per accepted record, holding its latest accepted version, on its
    record's lead; no lead doubled; every accepted record in_sync; every reject accounted for; no activity doubled or re-sent."""
    accepted = {row[0] for row in pipeline.query("SELECT DISTINCT source_id FROM opportunity_records")}
    assert accepted, "nothing was accepted"

    # One opportunity per accepted record, none for anything else.
    remote = pipeline.remote_by_source()
    doubled = {source_id: len(opps) for source_id, opps in remote.items() if len(opps) != 1}
    assert not doubled, f"records with more than one opportunity: {doubled}"
    assert set(remote) == accepted, (
        f"lost: {sorted(accepted - set(remote))[:10]}, unexpected: {sorted(set(remote) - accepted)[:10]}"
    )

    # No lead doubled (a bulk lead create whose answer was lost is re-sent; Capture may also
    # create the lead a bulk call already created): one lead per unique value, every
    # opportunity on the lead its record names, and no lead the source does not name.
    leads = pipeline.remote("leads")
    for unique_field in ("EmailAddress", "Phone"):
        values = Counter(v.lower() for lead in leads if (v := lead["Fields"].get(unique_field)))
        doubled_leads = {value: n for value, n in values.items() if n > 1}
        assert not doubled_leads, f"leads doubled on {unique_field}: {list(doubled_leads.items())[:5]}"
    email_of_lead = {lead["ProspectId"]: lead["Fields"].get("EmailAddress", "").lower() for lead in leads}
    emails_by_source: dict[str, set[str]] = {}
    for source_id, email in pipeline.query("SELECT DISTINCT source_id, search_by_value FROM opportunity_records"):
        emails_by_source.setdefault(source_id, set()).add(email.lower())
    wrong_lead = [s for s, opps in remote.items() if email_of_lead.get(opps[0]["ProspectId"]) not in emails_by_source[s]]
    assert not wrong_lead, f"opportunities on a lead their record does not name: {wrong_lead[:5]}"
    unknown_leads = set(email_of_lead.values()) - set().union(*emails_by_source.values())
    assert not unknown_leads, f"leads no source record names: {sorted(unknown_leads)[:5]}"

    # Field values equal to the latest accepted version of each record.
    latest = pipeline.query(
        """SELECT source_id, fields FROM opportunity_records
           QUALIFY row_number() OVER (PARTITION BY source_id ORDER BY source_updated_at DESC, day DESC) = 1"""
    )
    wrong = []
    for source_id, fields in latest:
        held = remote[source_id][0]["Fields"]
        for name, value in json.loads(fields).items():
            if name not in NOT_READ_BACK and held.get(name) != value:
                wrong.append((source_id, name, value, held.get(name)))
    assert not wrong, f"{len(wrong)} fields differ from the source, e.g. {wrong[:5]}"

    # Every accepted record's state row is in_sync and names the opportunity LeadSquared holds.
    states = dict(
        (source_id, (status, opportunity_id))
        for source_id, status, opportunity_id in pipeline.query(
            "SELECT source_id, status, opportunity_id FROM opportunity_state"
        )
    )
    not_in_sync = {s: states.get(s) for s in accepted if states.get(s, (None,))[0] != "in_sync"}
    assert not not_in_sync, f"{len(not_in_sync)} accepted records not in_sync, e.g. {list(not_in_sync.items())[:5]}"
    wrong_id = [s for s in accepted if states[s][1] != remote[s][0]["ProspectOpportunityId"]]
    assert not wrong_id, f"state rows naming another opportunity: {wrong_id[:5]}"

    # Every rejected source row has a rejects row with field and reason. Every raw application
    # row is accounted for: rejected itself, or its record's version of that day accepted, or
    # superseded in its day by a later version that was rejected (documented rule in
    # docs/sync.md: a latest version that is invalid is rejected, the older one
    # is not used instead).
    blank = pipeline.scalar("SELECT count(*) FROM rejects WHERE coalesce(field, '') = '' OR coalesce(reason, '') = ''")
    assert blank == 0, f"{blank} rejects without field or reason"
    unaccounted = pipeline.query(
        """SELECT r.day, r.row_number, r.application_id FROM raw_applications r
           WHERE NOT EXISTS (SELECT 1 FROM rejects j WHERE j.day = r.day AND j.source_file = r.source_file
                                                        AND j.row_number = r.row_number)
             AND NOT EXISTS (SELECT 1 FROM opportunity_records o WHERE o.day = r.day
                                                                  AND o.source_id = r.application_id)
             AND NOT EXISTS (SELECT 1 FROM rejects j WHERE j.day = r.day AND j.source_file = r.source_file
                                                        AND j.source_id = r.application_id)"""
    )
    assert not unaccounted, f"{len(unaccounted)} application rows neither accepted nor rejected: {unaccounted[:5]}"
    unaccounted_events = pipeline.query(
        """SELECT r.day, r.row_number, r.event_id FROM raw_events r
           WHERE NOT EXISTS (SELECT 1 FROM rejects j WHERE j.day = r.day AND j.source_file = r.source_file
                                                        AND j.row_number = r.row_number)
             AND NOT EXISTS (SELECT 1 FROM activity_records a WHERE a.day = r.day AND a.event_id = r.event_id)"""
    )
    assert not unaccounted_events, f"{len(unaccounted_events)} event rows neither accepted nor rejected"
    rejected_only = {
        row[0]
        for row in pipeline.query(
            """SELECT DISTINCT source_id FROM rejects WHERE source_file LIKE '%applications%'
               AND coalesce(source_id, '') <> '' AND source_id NOT IN (SELECT source_id FROM opportunity_records)"""
        )
    }
    bad_rejected = {s: states.get(s) for s in rejected_only if states.get(s, (None,))[0] != "rejected"}
    assert not bad_rejected, f"rejected-only records without a `rejected` state row: {list(bad_rejected.items())[:5]}"

    # Activities: never sent twice, none doubled in LeadSquared, every accepted event settled.
    resent = pipeline.query(
        """SELECT event_id, count(*) FROM push_journal WHERE kind = 'activity' AND status IN ('ok', 'unknown', 'sent')
           GROUP BY event_id HAVING count(*) > 1"""
    )
    assert not resent, f"activities sent again after an answer or a lost answer: {resent[:5]}"
    activity_status = dict(pipeline.query("SELECT event_id, status FROM activity_state"))
    events = pipeline.query(
        """SELECT DISTINCT a.event_id, s.opportunity_id, a.activity_event, a.note, a.fields
           FROM activity_records a JOIN opportunity_state s USING (source_id)
           WHERE a.source_id IN (SELECT source_id FROM opportunity_records)"""
    )
    unsettled = [e[0] for e in events if activity_status.get(e[0]) not in ("created", "unknown")]
    assert not unsettled, f"{len(unsettled)} accepted events neither created nor reported unknown: {unsettled[:5]}"
    unknown_reported = pipeline.query(
        "SELECT count(*) FROM activity_state WHERE status = 'unknown' AND coalesce(error, '') = ''"
    )[0][0]
    assert unknown_reported == 0, "activities of unknown outcome without a reason"

    def signature(opportunity_id, event, note, fields) -> tuple:
        return (opportunity_id, int(event), note or "", json.dumps(fields or {}, sort_keys=True))

    expected = Counter(signature(o, ev, note, json.loads(f) if f else {}) for _, o, ev, note, f in events)
    held_activities = [a for a in pipeline.remote("activities") if a.get("OpportunityId")]
    custom_codes = {int(e[2]) for e in events}
    held = Counter(
        signature(a["OpportunityId"], a["ActivityEvent"], a.get("ActivityNote"), a.get("Fields"))
        for a in held_activities
        if a.get("ActivityEvent") is not None and int(a["ActivityEvent"]) in custom_codes
    )
    doubled_activities = {sig: n for sig, n in held.items() if n > expected.get(sig, 0)}
    assert not doubled_activities, f"activities doubled in LeadSquared: {list(doubled_activities.items())[:3]}"
    created_ids = [row[0] for row in pipeline.query(
        "SELECT activity_id FROM activity_state WHERE status = 'created'")]
    held_ids = {a["ProspectActivityId"] for a in held_activities}
    assert len(set(created_ids)) == len(created_ids) and set(created_ids) <= held_ids
    counts = Counter(activity_status.values())
    return EndState(
        accepted=accepted,
        rejected_only=rejected_only,
        statuses=dict(Counter(status for status, _ in states.values())),
        activities_created=counts.get("created", 0),
        activities_unknown=counts.get("unknown", 0),
        leads=len(leads),
    )


def wait_for(predicate, timeout: float, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
