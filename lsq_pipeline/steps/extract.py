"""Extract: one day's export files into the raw tables, every column as text, all or nothing."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import duckdb

from lsq_pipeline.warehouse.sql import day_list_sql, identifier, literal, transaction
from lsq_pipeline.warehouse.schema import RAW_TABLES, SOURCE_FILES

HEADER_PROBE_BYTES = 1 << 16
LINE_END = re.compile(b"(\r\n|\r|\n)")


class SourceFileError(Exception):
    """A source file that cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _probe(path: Path) -> bytes:
    """The file's first bytes: enough for its header line."""
    with path.open("rb") as handle:
        return handle.read(HEADER_PROBE_BYTES)


def _read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise SourceFileError(path, "file is missing")
    probe = _probe(path)
    if not probe.strip(b"\xef\xbb\xbf \t\r\n"):
        raise SourceFileError(path, "file is empty (no header row)")
    header_line = LINE_END.split(probe.removeprefix(b"\xef\xbb\xbf"), maxsplit=1)[0]
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


def _read_sql(staged: str, columns: list[str], file: str) -> str:
    """Append the records (the quoted `columns`) of the files `$paths` to the table `staged`, each
    file's in file order, `file` giving their file's index in `$paths`. No row_number window: it
    would make DuckDB read and insert on one thread."""
    return f"""
        INSERT INTO {staged}
        SELECT {file}, {', '.join(columns)}
        FROM read_csv($paths, header = true, delim = ',', quote = '"', escape = '"',
                      all_varchar = true, auto_detect = true, strict_mode = true,
                      encoding = 'utf-8')
    """


def _header_line(path: Path) -> bytes:
    """The file's first line with its line end: files whose header lines are the same bytes read
    alike in one read_csv (same columns in the same order, same line ends)."""
    return b"".join(LINE_END.split(_probe(path), maxsplit=1)[:2])


class _ReadTogetherFailed(Exception):
    """Reading a table's files in one statement failed: read them again one by one."""


def _staged(file_name: str) -> str:
    """The temporary table that holds `file_name`'s records as read, before they replace the raw rows."""
    return identifier("_extracted_" + file_name.removesuffix(".csv"))


def _read(conn: duckdb.DuckDBPyConnection, source_dir: Path, days: list[date], file_name: str,
          together: bool) -> dict[int, tuple[int, int]]:
    """Read the days' `file_name` into its staged table; returns {file: (first rowid, records)}
    for each file (the index of its day in `days`) that has records.

    The files are read `together` in one read_csv when their header lines are the same (DuckDB
    reads them in parallel), else one by one. The table's rowids number the records
    consecutively in the order read (DuckDB keeps insertion order, its default
    `preserve_insertion_order`; that a file's rowids are consecutive is checked): a record's
    `row_number` is its rowid minus the rowid of its file's first record, plus one.
    """
    staged, columns = _staged(file_name), [identifier(column) for column in SOURCE_FILES[file_name]]
    # `file` has the type of read_csv's `file_index`: DuckDB 1.5 fails an insert that casts it.
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {staged} (file UBIGINT, {', '.join(f'{c} VARCHAR' for c in columns)})")
    paths = [source_dir / day.isoformat() / file_name for day in days]
    if together and len({_header_line(path) for path in paths}) == 1:
        try:
            conn.execute(_read_sql(staged, columns, "file_index"), {"paths": [str(path) for path in paths]})
        except duckdb.Error:
            raise _ReadTogetherFailed from None
    else:
        for file, path in enumerate(paths):
            try:
                conn.execute(_read_sql(staged, columns, str(file)), {"paths": [str(path)]})
            except duckdb.Error as error:
                width = len(_read_header(path))
                raise SourceFileError(path, _csv_problem(str(error), path, width)) from None
    read = {file: (first, count) for file, first, count, span in conn.execute(
        f"SELECT file, min(rowid), count(*), max(rowid) - min(rowid) + 1 FROM {staged} GROUP BY file").fetchall()
        if count == span}
    if len(read) != conn.execute(f"SELECT count(DISTINCT file) FROM {staged}").fetchone()[0]:
        raise RuntimeError(f"{file_name}: a file's records were not read consecutively; row_number would be wrong")
    return read


def _replace(conn: duckdb.DuckDBPyConnection, days: list[date], file_name: str,
             read: dict[int, tuple[int, int]]) -> None:
    """Replace the days' rows of `file_name`'s raw table with its staged records."""
    columns = [identifier(column) for column in SOURCE_FILES[file_name]]
    files = ", ".join(
        f"({file}, DATE {literal(day.isoformat())}, {literal(f'{day.isoformat()}/{file_name}')}, {read[file][0]})"
        for file, day in enumerate(days) if file in read)
    table = identifier(RAW_TABLES[file_name])
    conn.execute(f"DELETE FROM {table} WHERE day IN {day_list_sql(days)}")
    if files:
        conn.execute(f"""
            INSERT INTO {table} (day, source_file, row_number, {', '.join(columns)})
            SELECT f.day, f.source_file, e.rowid - f.first + 1, {', '.join(f'e.{c}' for c in columns)}
            FROM {_staged(file_name)} AS e JOIN (VALUES {files}) AS f(file, day, source_file, first) USING (file)""")


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
    try:
        counts = _load_all(conn, source_dir, days, together=True)
    except _ReadTogetherFailed:
        # Read one by one: names the bad file, or loads files that cannot be read together.
        counts = _load_all(conn, source_dir, days, together=False)
    for file_name, rows in counts.items():
        for day, count in rows.items():
            loaded[day][file_name.removesuffix(".csv")] = count
    return loaded


def _load_all(conn: duckdb.DuckDBPyConnection, source_dir: Path, days: list[date],
              together: bool) -> dict[str, dict[date, int]]:
    """Read every source file, then replace the raw tables' rows of the days in one transaction.
    The reads come before it: DuckDB scans a table made inside an open transaction on one thread."""
    unique_days = list(dict.fromkeys(days))
    try:
        reads = {file_name: _read(conn, source_dir, unique_days, file_name, together) for file_name in SOURCE_FILES}
        with transaction(conn):
            for file_name, read in reads.items():
                _replace(conn, unique_days, file_name, read)
    finally:
        for file_name in SOURCE_FILES:
            conn.execute(f"DROP TABLE IF EXISTS {_staged(file_name)}")
    return {file_name: {day: read.get(file, (0, 0))[1] for file, day in enumerate(unique_days)}
            for file_name, read in reads.items()}


def extract_day(conn: duckdb.DuckDBPyConnection, source_dir: str | Path, day: date) -> dict:
    """`extract_days` of one day: `{"applications": n, "events": m, "warnings": [...]}`."""
    return extract_days(conn, source_dir, [day])[day]
