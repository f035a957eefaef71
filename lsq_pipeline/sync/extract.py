"""Extract: one day's export files into the raw tables, every column as text, all or nothing."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import duckdb

from lsq_pipeline.sync.sql import day_list_sql, identifier, literal
from lsq_pipeline.sync.warehouse import RAW_TABLES, SOURCE_FILES

HEADER_PROBE_BYTES = 1 << 16


class SourceFileError(Exception):
    """A source file that cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise SourceFileError(path, "file is missing")
    with path.open("rb") as handle:
        probe = handle.read(HEADER_PROBE_BYTES)
    if not probe.strip(b"\xef\xbb\xbf \t\r\n"):
        raise SourceFileError(path, "file is empty (no header row)")
    header_line = re.split(b"\r\n|\r|\n", probe.removeprefix(b"\xef\xbb\xbf"), maxsplit=1)[0]
    try:
        text = header_line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceFileError(path, f"not UTF-8: byte 0x{header_line[error.start]:02x} in the header") from None
    try:
        names = next(csv.reader([text], strict=True))
    except csv.Error as error:
        raise SourceFileError(path, f"the header row cannot be read as CSV: {error}") from None
    # Header names match ignoring case and surrounding spaces (" Email " is email), as DuckDB binds them.
    return [name.strip().lower() for name in names]


def _check_columns(path: Path, header: list[str], expected: tuple[str, ...]) -> list[str]:
    """Raise on missing or repeated columns; return warnings for extra ones."""
    missing = [column for column in expected if column not in header]
    if missing:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
            hint = " (the header has one column: wrong delimiter? comma expected)"
        raise SourceFileError(path, f"missing required columns: {', '.join(missing)}{hint}")
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise SourceFileError(path, f"columns given twice: {', '.join(repeated)}")
    extra = [column for column in header if column not in expected]
    if extra:
        return [f"{path}: extra columns ignored: {', '.join(extra)}"]
    return []


def _first_bad_record(path: Path, width: int) -> str | None:
    """Where a file DuckDB's sniffer gave up on breaks the CSV rules, found with the csv module."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            next(reader, None)
            for number, record in enumerate(reader, start=1):
                if record and len(record) != width:
                    return f"record {number} (line {reader.line_num}) has {len(record)} fields, the header has {width}"
        except csv.Error as error:
            return f"line {reader.line_num}: {error}"
    with path.open("rb") as handle:
        data = handle.read()
    if b"\r\n" in data and re.search(b"(?<!\r)\n", data):
        return "line ends mix CRLF and LF: export it with one kind of line end"
    return None


def _csv_problem(message: str, path: Path, width: int) -> str:
    """DuckDB's CSV error, shortened to what a person fixing the file needs."""
    if "CSV Error on Line" not in message and "Invalid unicode" not in message:
        # The sniffer gave up, or guessed the header away (a binder error): find the line ourselves.
        found = _first_bad_record(path, width)
        if found:
            return f"cannot be read as CSV: {found}"
    lines = message.strip().splitlines()
    where = next((line.strip() for line in lines if line.startswith("CSV Error on Line")), lines[0])
    if "Invalid unicode" in message:
        return f"not UTF-8 ({where.removeprefix('Invalid Input Error: ')}): export it as UTF-8"
    detail = next((line.strip() for line in lines[1:] if line.strip() and not line.startswith("Original Line")), "")
    return f"cannot be read as CSV: {where} {detail}".strip()


def _read_sql(columns: list[str]) -> str:
    """Append one file's records (the quoted `columns`), in file order, to `_extracted`: without a
    row_number window, which would make DuckDB read and insert the file on one thread."""
    return f"""
        INSERT INTO _extracted
        SELECT {', '.join(columns)}
        FROM read_csv($path, header = true, delim = ',', quote = '"', escape = '"',
                      all_varchar = true, auto_detect = true, strict_mode = true,
                      encoding = 'utf-8')
    """


def _load(conn: duckdb.DuckDBPyConnection, source_dir: Path, days: list[date], file_name: str) -> dict[date, int]:
    """Replace the days' rows of one raw table with the days' `file_name`; returns rows per day.

    The files are appended one after the other to a new temporary table, whose rowids number
    the appended records consecutively in order (DuckDB keeps insertion order, its default
    `preserve_insertion_order`): a record's `row_number` is its rowid minus the rowid of its
    file's first record, plus one.
    """
    columns = [identifier(column) for column in SOURCE_FILES[file_name]]
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _extracted ({', '.join(f'{c} VARCHAR' for c in columns)})")
    counts: dict[date, int] = {}
    for day in dict.fromkeys(days):
        path = source_dir / day.isoformat() / file_name
        try:
            counts[day] = conn.execute(_read_sql(columns), {"path": str(path)}).fetchone()[0]
        except duckdb.Error as error:
            width = len(_read_header(path))
            raise SourceFileError(path, _csv_problem(str(error), path, width)) from None
    # Rowids of a table created in the open transaction do not start at 0.
    first = conn.execute("SELECT coalesce(min(rowid), 0) FROM _extracted").fetchone()[0]
    files = []
    for day, count in counts.items():
        files.append(f"(DATE {literal(day.isoformat())}, {literal(f'{day.isoformat()}/{file_name}')}, "
                     f"{first}, {first + count})")
        first += count
    table = identifier(RAW_TABLES[file_name])
    conn.execute(f"DELETE FROM {table} WHERE day IN {day_list_sql(days)}")
    conn.execute(f"""
        INSERT INTO {table} (day, source_file, row_number, {', '.join(columns)})
        SELECT f.day, f.source_file, e.rowid - f.first + 1, {', '.join(f'e.{c}' for c in columns)}
        FROM _extracted AS e JOIN (VALUES {', '.join(files)}) AS f(day, source_file, first, stop)
            ON e.rowid >= f.first AND e.rowid < f.stop""")
    conn.execute("DROP TABLE _extracted")
    return counts


def _check_headers(day_dir: Path) -> list[str]:
    """Raise on a day whose files are missing or lack columns; return warnings for extra columns."""
    if not day_dir.is_dir():
        raise SourceFileError(day_dir, f"no source folder for {day_dir.name}")
    warnings: list[str] = []
    for file_name, columns in SOURCE_FILES.items():
        path = day_dir / file_name
        warnings += _check_columns(path, _read_header(path), columns)
    return warnings


def extract_days(conn: duckdb.DuckDBPyConnection, source_dir: str | Path, days: list[date]) -> dict[date, dict]:
    """Load `<source_dir>/<day>/applications.csv` and `events.csv` of every day into the raw tables.

    Every day's headers are checked before anything loads; then each day's rows are deleted and
    its files loaded, all days in one transaction (one commit, so one write of the new blocks,
    instead of one per day), so a re-run replaces the days and a bad file (raised as
    `SourceFileError`) leaves nothing half-loaded. Returns per day `{"applications": n,
    "events": m, "warnings": [...]}`; `row_number` is the data record's number in its file
    (1 = the first record after the header).
    """
    source_dir = Path(source_dir)
    loaded = {day: {"warnings": _check_headers(source_dir / day.isoformat())} for day in days}
    conn.execute("BEGIN TRANSACTION")
    try:
        for file_name in SOURCE_FILES:
            for day, count in _load(conn, source_dir, days, file_name).items():
                loaded[day][file_name.removesuffix(".csv")] = count
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return loaded


def extract_day(conn: duckdb.DuckDBPyConnection, source_dir: str | Path, day: date) -> dict:
    """`extract_days` of one day: `{"applications": n, "events": m, "warnings": [...]}`."""
    return extract_days(conn, source_dir, [day])[day]
