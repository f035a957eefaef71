"""Corpus: files that look odd but are valid load, and every row in them is accepted as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsq_pipeline.steps.extract import extract_day
from lsq_pipeline.steps.transform import transform_days

from .corpus import DAY, GOOD_FILES, names, place

# corpus file -> the applicant names of its rows, in file order, exactly as they must arrive
NAMES = {
    "header_only": [],
    "header_only_no_line_end": [],
    "utf8_bom": ["Asha Nair"],
    "crlf_line_ends": ["Asha Nair", "Ravi Kumar"],
    "cr_only_line_ends": ["Asha Nair", "Ravi Kumar"],
    "bom_and_crlf": ["Asha Nair"],
    "quotes_and_newlines_in_fields": ['Nair, "Asha" Jr', "Ravi\r\nKumar", "Asha Nair"],
    "extra_column": ["Asha Nair"],
    "header_case_and_spaces": ["Asha Nair"],
    "blank_lines": ["Asha Nair", "Ravi Kumar"],
    "no_final_line_end": ["Asha Nair"],
}
WARNINGS = {"extra_column": "extra columns ignored: branch"}


def test_every_good_file_of_the_corpus_has_expected_rows():
    assert set(NAMES) == set(names(GOOD_FILES))


@pytest.mark.parametrize("name", sorted(NAMES))
def test_odd_but_valid_file_loads_and_every_row_is_accepted(conn, mapping, tmp_path: Path, name: str):
    place(tmp_path, DAY, GOOD_FILES / f"{name}.csv")
    counts = extract_day(conn, tmp_path, DAY)
    assert [w.split(": ", 1)[1] for w in counts["warnings"]] == ([WARNINGS[name]] if name in WARNINGS else [])
    assert counts["applications"] == len(NAMES[name])
    transform_days(conn, [DAY], mapping)
    assert conn.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    sent = conn.execute("SELECT source_id, fields FROM opportunity_records ORDER BY source_id").fetchall()
    assert [source_id for source_id, _ in sent] == [f"GF-{i}" for i in range(1, len(NAMES[name]) + 1)]
    assert [json.loads(fields)["mx_Custom_4"] for _, fields in sent] == NAMES[name]
    assert all(json.loads(fields)["mx_Custom_7"] == "2026-11-02 09:30:00" for _, fields in sent)
