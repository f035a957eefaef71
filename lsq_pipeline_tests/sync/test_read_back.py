"""Telling "not yet" from drift and from "gone", on plain values: the rules reconcile
applies to each read-back, without a clock of ours compared with LeadSquared's."""

from __future__ import annotations

from datetime import datetime

from lsq_pipeline.steps.reconcile import Tracked, decide, not_yet

BEFORE_WRITE = datetime(2026, 11, 1, 9, 0, 0)  # ModifiedOn read before our write


def row(status: str = "pending", read_modified_on: datetime | None = BEFORE_WRITE,
        earlier_sent: tuple[dict, ...] = (), waited: float = 10.0) -> Tracked:
    return Tracked("APP-1", "opp-1", status, {"mx_Custom_1": "APP-1", "mx_Custom_2": "Gold Loan"},
                   list(earlier_sent), read_modified_on, waited, None, None)


def held(product: str, modified_on: str) -> dict:
    return {"mx_Custom_1": "APP-1", "mx_Custom_2": product, "ModifiedOn": modified_on}


def test_a_read_back_not_newer_than_the_one_before_our_write_is_not_yet():
    assert not_yet(row(), held("Home Loan", "11/1/2026 9:00:00 AM"), ["mx_Custom_2"])
    assert not not_yet(row(), held("Car Loan", "11/1/2026 9:00:01 AM"), ["mx_Custom_2"])


def test_it_is_not_yet_when_it_holds_a_version_sent_before_this_write():
    created = {"mx_Custom_1": "APP-1", "mx_Custom_2": "Home Loan"}
    updated = {"mx_Custom_1": "APP-1", "mx_Custom_2": "Car Loan"}
    never_read = row(read_modified_on=None, earlier_sent=(created,))
    assert not_yet(never_read, held("Home Loan", "11/1/2026 9:05:00 AM"), ["mx_Custom_2"])
    assert not not_yet(never_read, held("Personal Loan", "11/1/2026 9:05:00 AM"), ["mx_Custom_2"])
    assert not not_yet(row(read_modified_on=None), held("Home Loan", "11/1/2026 9:05:00 AM"), ["mx_Custom_2"])
    # Created, then updated twice inside one lag: the read may show the create or the first update.
    twice = row(read_modified_on=None, earlier_sent=(created, updated))
    assert not_yet(twice, held("Home Loan", "11/1/2026 9:05:00 AM"), ["mx_Custom_2"])
    assert not_yet(twice, held("Car Loan", "11/1/2026 9:06:00 AM"), ["mx_Custom_2"])
    # Read before (ModifiedOn known), a newer version holding an earlier update is not yet either.
    assert not_yet(row(earlier_sent=(updated,)), held("Car Loan", "11/1/2026 9:06:00 AM"), ["mx_Custom_2"])


def test_decide_within_and_past_the_grace():
    old_version = held("Home Loan", "11/1/2026 9:00:00 AM")
    assert decide(row(), held("Gold Loan", "11/1/2026 9:01:00 AM"), 10, 60, ()) == ("in_sync", [])
    assert decide(row(), None, 10, 60, ()) == ("pending", [])
    assert decide(row(), None, 60, 60, ()) == ("missing", [])
    assert decide(row(), old_version, 10, 60, ()) == ("pending", ["mx_Custom_2"])
    assert decide(row(), old_version, 60, 60, ()) == ("drifted", ["mx_Custom_2"])
    # A record confirmed before is not ours to wait for when found changed: a person's drift.
    assert decide(row(status="in_sync"), old_version, 0, 60, ()) == ("drifted", ["mx_Custom_2"])
    # Not found, its grace starts at this read; a missing one stays missing until found.
    assert decide(row(status="in_sync"), None, 0, 60, ()) == ("pending", [])
    assert decide(row(status="missing"), None, 0, 60, ()) == ("missing", [])
    assert decide(row(status="missing"), held("Gold Loan", "11/1/2026 9:01:00 AM"), 0, 60, ()) == ("in_sync", [])
