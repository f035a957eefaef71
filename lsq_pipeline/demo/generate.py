"""Deterministic demo source files: daily loan applications and events, with a realistic dirty share."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from lsq_pipeline.extras import require
from lsq_pipeline.warehouse.schema import APPLICATION_COLUMNS, EVENT_COLUMNS

PRODUCTS = ("Personal Loan", "Home Loan", "Auto Loan", "Business Loan", "Education Loan")
STAGES = ("New", "Documents Pending", "Under Review", "Approved", "Disbursed", "Rejected")
LOAN_OFFICERS = (
    "priya.sharma@lendco.example",
    "arjun.mehta@lendco.example",
    "meera.iyer@lendco.example",
    "rahul.verma@lendco.example",
)
DOCUMENT_TYPES = ("PAN Card", "Aadhaar Card", "Salary Slip", "Bank Statement", "Address Proof")
NOTES = (
    "Collected at branch",
    "Met applicant, discussed EMI options",
    'Applicant asked about "top-up" loans',
    "Follow-up call scheduled",
    "Verified originals\nCopies filed",
    "",
)
NON_ASCII_NAMES = (
    "Zoë Müller", "René Dubois", "José Álvarez", "Jürgen Groß", "अर्जुन शर्मा",
    "प्रिया वर्मा", "Ananya Rao 🙂", "Łukasz Wiśniewski",
)
IST = timezone(timedelta(hours=5, minutes=30))
NAME_POOL_SIZE = 2000
UPDATE_SHARE = 0.25      # share of a day's application rows (after the first day) that update older ones
DEFAULT_EVENT_SHARE = 0.5


@dataclass
class _Application:
    application_id: str
    name: str
    email: str
    phone: str
    product: str
    amount: int
    stage: int
    owner: str
    created_at: datetime
    updated_at: datetime


def _name_pool(seed: int) -> list[str]:
    faker = require("faker", "demo", "the demo generator").Faker("en_IN")
    faker.seed_instance(seed)
    names = [faker.name() for _ in range(NAME_POOL_SIZE)]
    return names + list(NON_ASCII_NAMES) * (NAME_POOL_SIZE // 100)


def _email_for(name: str, number: int) -> str:
    ascii_part = "".join(ch for ch in name.lower() if ch.isascii() and (ch.isalnum() or ch == " "))
    local = ".".join(ascii_part.split()) or "applicant"
    return f"{local}.{number}@mail.example"


def _iso(moment: datetime, rng: random.Random) -> str:
    """ISO 8601 with an offset, in IST or as UTC with `Z` (both occur in real exports)."""
    if rng.random() < 0.5:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.astimezone(IST).isoformat(timespec="seconds")


def _phone(rng: random.Random) -> str:
    digits = f"{rng.choice('6789')}{rng.randrange(10**8, 10**9)}"
    style = rng.randrange(4)
    if style == 0:
        return f"+91 {digits[:5]} {digits[5:]}"
    if style == 1:
        return f"0{digits}"
    if style == 2:
        return f"+91-{digits}"
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"


def _moment(day: date, rng: random.Random) -> datetime:
    """A time in office hours (09:00-19:00 IST) on the day."""
    start = datetime(day.year, day.month, day.day, 9, 0, tzinfo=IST)
    return start + timedelta(seconds=rng.randrange(10 * 3600))


def _application_row(app: _Application, rng: random.Random) -> dict[str, str]:
    return {
        "application_id": app.application_id,
        "applicant_name": app.name,
        "email": app.email,
        "phone": app.phone,
        "product": app.product,
        "amount": str(app.amount),
        "stage": STAGES[app.stage],
        "owner_email": app.owner,
        "created_at": _iso(app.created_at, rng),
        "updated_at": _iso(app.updated_at, rng),
    }


def _make_dirty(row: dict[str, str], rng: random.Random, kind: int) -> None:
    """Spoil one value of the row the way real exports do (`kind` picks how, 0-8)."""
    if kind == 0:
        row["email"] = ""
    elif kind == 1:
        row["email"] = rng.choice((row["email"].replace("@", " at "), row["email"].split("@")[0] + "@"))
    elif kind == 2:
        row["phone"] = rng.choice(("12345", "+1 415 555 0100", "98765-4321x"))
    elif kind == 3:
        row["stage"] = rng.choice(("Pending Approval", "Closed", "on hold"))
    elif kind == 4:
        amount = int(row["amount"])
        row["amount"] = rng.choice((f"-{amount}", "ten lakh", f"{amount:,}"))
    elif kind == 5:
        moment = datetime.fromisoformat(row["updated_at"].replace("Z", "+00:00"))
        row["updated_at"] = moment.strftime(rng.choice(("%d/%m/%Y %H:%M", "%m-%d-%Y %I:%M %p")))
    elif kind == 6:
        row["owner_email"] = rng.choice(("former.officer@lendco.example", "PRIYA.SHARMA@lendco"))
    elif kind == 7:
        row["product"] = rng.choice(("Gold Loan", ""))
    else:
        row["applicant_name"] = rng.choice(("=HYPERLINK(\"http://x.example\")", "A" * 120))


def _write(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate(
    out_dir: str | Path,
    rows: int,
    days: int,
    seed: int,
    start_day: date = date(2026, 11, 1),
    dirty_rate: float = 0.04,
    events: int | None = None,
) -> dict[str, int]:
    """Write `<out_dir>/<YYYY-MM-DD>/applications.csv` and `events.csv` for `days` days.

    `rows` application rows in all (about a quarter of each later day's rows update earlier
    applications with a newer `updated_at`), `events` event rows (default half of `rows`).
    The same arguments always give the same bytes. Returns counts of what was written.
    """
    if rows < 0 or days < 1 or not 0 <= dirty_rate <= 1:
        raise ValueError("need rows >= 0, days >= 1 and 0 <= dirty_rate <= 1")
    rng = random.Random(seed)
    names = _name_pool(seed)
    events = int(rows * DEFAULT_EVENT_SHARE) if events is None else events
    out_dir = Path(out_dir)
    applications: list[_Application] = []
    counts = {"days": days, "applications": 0, "events": 0, "dirty": 0, "duplicates": 0}
    for day_index in range(days):
        day = start_day + timedelta(days=day_index)
        day_rows = rows // days + (1 if day_index < rows % days else 0)
        day_events = events // days + (1 if day_index < events % days else 0)
        app_rows = _application_rows(day, day_rows, applications, names, dirty_rate, rng, counts)
        event_rows = _event_rows(day, day_events, applications, dirty_rate, rng, counts)
        day_dir = out_dir / day.isoformat()
        day_dir.mkdir(parents=True, exist_ok=True)
        _write(day_dir / "applications.csv", APPLICATION_COLUMNS, app_rows)
        _write(day_dir / "events.csv", EVENT_COLUMNS, event_rows)
        counts["applications"] += len(app_rows)
        counts["events"] += len(event_rows)
    counts["distinct_applications"] = len(applications)
    return counts


def _application_rows(
    day: date, day_rows: int, applications: list[_Application], names: list[str], dirty_rate: float,
    rng: random.Random, counts: dict[str, int],
) -> list[dict[str, str]]:
    """The day's `day_rows` application rows: new applications (added to `applications`) and
    updates of earlier ones, some spoilt or repeated with an older version (counted in `counts`)."""
    app_rows: list[dict[str, str]] = []
    while len(app_rows) < day_rows:
        if applications and rng.random() < UPDATE_SHARE:
            app = _updated_application(applications, day, rng)
        else:
            app = _new_application(len(applications) + 1, names, day, rng)
            applications.append(app)
        row = _application_row(app, rng)
        if rng.random() < dirty_rate:
            roll = rng.random()
            if roll < 0.2 and len(app_rows) + 2 <= day_rows:
                older = dict(row, amount=str(app.amount + 5000))
                older["updated_at"] = _iso(app.updated_at - timedelta(minutes=rng.randrange(1, 60)), rng)
                app_rows.append(row)
                row = older
                counts["duplicates"] += 1
            else:
                _make_dirty(row, rng, counts["dirty"] % 9)
                counts["dirty"] += 1
        app_rows.append(row)
    return app_rows


def _updated_application(applications: list[_Application], day: date, rng: random.Random) -> _Application:
    """An earlier application, changed on the day: its stage moves on, or its amount or owner changes."""
    app = applications[rng.randrange(len(applications))]
    moment = max(_moment(day, rng), app.updated_at + timedelta(minutes=1))
    change = rng.randrange(3)
    if change == 0 and app.stage < 3:
        app.stage += 1
    elif change == 0:
        app.stage = rng.choice((4, 5)) if app.stage == 3 else app.stage
    elif change == 1:
        app.amount = rng.randrange(50, 5000) * 1000
    else:
        app.owner = rng.choice(LOAN_OFFICERS)
    app.updated_at = moment
    return app


def _new_application(number: int, names: list[str], day: date, rng: random.Random) -> _Application:
    """Application `number`, created on the day."""
    name = names[rng.randrange(len(names))]
    created = _moment(day, rng)
    return _Application(
        application_id=f"APP-{number:07d}", name=name, email=_email_for(name, number),
        phone=_phone(rng) if rng.random() < 0.9 else "", product=rng.choice(PRODUCTS),
        amount=rng.randrange(50, 5000) * 1000, stage=rng.choice((0, 0, 1)),
        owner=rng.choice(LOAN_OFFICERS), created_at=created,
        updated_at=created + timedelta(minutes=rng.randrange(0, 30)),
    )


def _event_rows(
    day: date, day_events: int, applications: list[_Application], dirty_rate: float, rng: random.Random,
    counts: dict[str, int],
) -> list[dict[str, str]]:
    """The day's `day_events` event rows on known applications, numbered on from `counts["events"]`,
    some spoilt (counted in `counts`)."""
    event_rows: list[dict[str, str]] = []
    event_number = counts["events"]
    for _ in range(day_events if applications else 0):
        event_number += 1
        app = applications[rng.randrange(len(applications))]
        event_type = rng.choice(("document_collected", "meeting_held", "credit_check"))
        detail = {
            "document_collected": rng.choice(DOCUMENT_TYPES),
            "meeting_held": "",
            "credit_check": str(rng.randrange(300, 901)),
        }[event_type]
        event = {
            "event_id": f"EVT-{event_number:08d}", "application_id": app.application_id,
            "event_type": event_type, "occurred_at": _iso(_moment(day, rng), rng),
            "owner_email": app.owner, "note": rng.choice(NOTES), "detail": detail,
        }
        if rng.random() < dirty_rate:
            spoil = counts["dirty"] % 3
            if spoil == 0:
                event["event_type"] = "call_logged"
            elif spoil == 1:
                event["occurred_at"] = _moment(day, rng).strftime("%d.%m.%Y %H:%M")
            else:
                event["application_id"] = f"APP-9{event_number:07d}"
            counts["dirty"] += 1
        event_rows.append(event)
    return event_rows
