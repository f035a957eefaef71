"""Reading a record set from daily export folders: `<folder>/<day>/applications.csv` (or
`.parquet`), each file's header checked before anything loads, CSV read by DuckDB in one
statement when the files allow it."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import duckdb

from lsq_pipeline.steps.read_tables import StagedRows, staged_table, text_columns
from lsq_pipeline.warehouse.sql import identifier, literal

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


def _check_columns(path: Path, header: list[str], expected: list[str]) -> list[str]:
    """Raise on missing or repeated columns; return warnings for extra ones."""
    expected = [column.lower() for column in expected]
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


class ReadTogetherFailed(Exception):
    """Reading a table's files in one statement failed: read them again one by one."""


def day_file(day_dir: Path, record_set: str) -> Path:
    """The day's file of a record set: its CSV, else its Parquet file (the CSV named when neither is there)."""
    csv_path, parquet_path = day_dir / f"{record_set}.csv", day_dir / f"{record_set}.parquet"
    if csv_path.is_file() and parquet_path.is_file():
        raise SourceFileError(day_dir, f"both {csv_path.name} and {parquet_path.name}: keep one of them")
    return parquet_path if parquet_path.is_file() else csv_path


def _parquet_columns(path: Path) -> dict[str, tuple[str, str]]:
    """{lower-case name: (name, type)} of a Parquet file's columns."""
    conn = duckdb.connect()
    try:
        described = conn.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(str(path))})").fetchall()
    except duckdb.Error as error:
        raise SourceFileError(path, f"cannot be read as Parquet: {str(error).strip().splitlines()[0]}") from None
    finally:
        conn.close()
    return {name.strip().lower(): (name, type_name) for name, type_name, *_ in described}


def check_file(path: Path, columns: list[str]) -> list[str]:
    """Raise on a file that is missing or lacks columns; return warnings for extra columns."""
    if path.suffix == ".parquet":
        header = [name for name, _ in _parquet_columns(path).values()]
        return _check_columns(path, [name.strip().lower() for name in header], columns)
    return _check_columns(path, _read_header(path), columns)


def _read_parquet(conn: duckdb.DuckDBPyConnection, staged: str, columns: list[str], file: int, path: Path) -> None:
    try:
        conn.execute(f"INSERT INTO {staged} SELECT {file}, {text_columns(_parquet_columns(path), columns)} FROM read_parquet({literal(str(path))})")
    except duckdb.Error as error:
        raise SourceFileError(path, f"cannot be read as Parquet: {str(error).strip().splitlines()[0]}") from None


def _read(conn: duckdb.DuckDBPyConnection, paths: list[Path], record_set: str, columns: list[str],
          together: bool) -> dict[int, tuple[int, int]]:
    """Read the files `paths` (one per day) into the record set's staged table; returns {file:
    (first rowid, records)} for each file (its index in `paths`) that has records.

    CSV files are read `together` in one read_csv when all are CSV and their header lines are the
    same (DuckDB reads them in parallel), else one by one. The table's rowids number the records
    consecutively in the order read (DuckDB keeps insertion order, its default
    `preserve_insertion_order`; that a file's rowids are consecutive is checked): a record's
    `row_number` is its rowid minus the rowid of its file's first record, plus one.
    """
    staged, quoted = staged_table(record_set), [identifier(column) for column in columns]
    # `file` has the type of read_csv's `file_index`: DuckDB 1.5 fails an insert that casts it.
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {staged} (file UBIGINT, {', '.join(f'{c} VARCHAR' for c in quoted)})")
    all_csv = all(path.suffix == ".csv" for path in paths)
    if together and all_csv and len({_header_line(path) for path in paths}) == 1:
        try:
            conn.execute(_read_sql(staged, quoted, "file_index"), {"paths": [str(path) for path in paths]})
        except duckdb.Error:
            raise ReadTogetherFailed from None
    else:
        for file, path in enumerate(paths):
            if path.suffix == ".parquet":
                _read_parquet(conn, staged, columns, file, path)
                continue
            try:
                conn.execute(_read_sql(staged, quoted, str(file)), {"paths": [str(path)]})
            except duckdb.Error as error:
                width = len(_read_header(path))
                raise SourceFileError(path, _csv_problem(str(error), path, width)) from None
    read = {file: (first, count) for file, first, count, span in conn.execute(
        f"SELECT file, min(rowid), count(*), max(rowid) - min(rowid) + 1 FROM {staged} GROUP BY file").fetchall()
        if count == span}
    if len(read) != conn.execute(f"SELECT count(DISTINCT file) FROM {staged}").fetchone()[0]:
        raise RuntimeError(f"{record_set}: a file's records were not read consecutively; row_number would be wrong")
    return read


def stage_files(conn: duckdb.DuckDBPyConnection, folder: Path, record_set: str, columns: list[str],
                days: list[date], together: bool) -> StagedRows:
    """Read the days' files of a record set (headers already checked) into its staged table; the
    rows in the raw table's shape, `row_number` the record's number in its file (1 = the first
    record after the header). Raises `ReadTogetherFailed` when the files could not be read together."""
    paths = [day_file(folder / day.isoformat(), record_set) for day in days]
    read = _read(conn, paths, record_set, columns, together)
    files = ", ".join(
        f"({file}, DATE {literal(day.isoformat())}, {literal(f'{day.isoformat()}/{paths[file].name}')}, {read[file][0]})"
        for file, day in enumerate(days) if file in read)
    quoted = ", ".join(f"e.{identifier(column)}" for column in columns)
    select = (f"SELECT f.day, f.source_file, e.rowid - f.first + 1, {quoted}, NULL FROM {staged_table(record_set)} AS e "
              f"JOIN (VALUES {files}) AS f(file, day, source_file, first) USING (file)") if files else ""
    return StagedRows(staged_table(record_set), select, {day: read.get(file, (0, 0))[1] for file, day in enumerate(days)})
