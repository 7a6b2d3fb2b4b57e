"""Generate profile_table.json from a machine-readable copy of PS3.15 Table E.1-1.

The de-identification follows the standard's table row by row rather than a list picked by
hand, so the table is generated, committed, and named by its edition. The source is
innolitics' dicom-standard `standard/confidentiality_profile_attributes.json` (MIT licence;
the table's content is NEMA's DICOM Standard), whose last update of that file was the
2024b edition (621 rows). Run:

    python -m pcir_upload.repository.deidentify.make_profile SOURCE.json 2024b

Nothing is added, dropped or changed: only the column names become ours, and the rows are
sorted by tag so that a regenerated table diffs cleanly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("profile_table.json")

# innolitics' column name -> the option's name here (PS3.15 Table E.1-1's columns).
COLUMNS = {
    "basicProfile": "basic",
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_longitudinal_full_dates",
    "rtnLongModifDatesOpt": "retain_longitudinal_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}


def convert(rows: list[dict[str, str]], edition: str) -> dict[str, object]:
    out = []
    for row in rows:
        record: dict[str, str] = {"tag": row["tag"].upper(), "name": row["name"]}
        record |= {ours: row[theirs] for theirs, ours in COLUMNS.items() if row.get(theirs)}
        unknown = set(row) - set(COLUMNS) - {"tag", "name", "id", "stdCompIOD"}
        if unknown:
            raise ValueError(f"{row['tag']}: columns this generator does not know: {sorted(unknown)}")
        out.append(record)
    out.sort(key=lambda r: r["tag"])
    return {
        "table": "DICOM PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes",
        "edition": edition,
        "source": "innolitics/dicom-standard standard/confidentiality_profile_attributes.json (MIT)",
        "rows": out,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_profile.py SOURCE.json EDITION", file=sys.stderr)
        return 2
    table = convert(json.loads(Path(argv[0]).read_text(encoding="utf-8")), argv[1])
    TABLE.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{TABLE}: {len(table['rows'])} rows, edition {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
