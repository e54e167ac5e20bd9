"""The tables of ``schemas/README.md``, generated from the schema JSON so the page cannot drift.

``python -m schemas.docs`` rewrites every block between ``<!-- generated: NAME -->`` and
``<!-- end generated -->`` in the README; ``python -m schemas.docs --check`` exits 1 when the
README differs from what it would write (a test runs the same check).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schemas

README = Path(__file__).with_name("README.md")
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def dimensions_table(schema: dict) -> str:
    rows = [[f"`{k}`", v] for k, v in schema["dimensions"].items()]
    return _table(["dimension", "meaning"], rows)


def _fill(spec: dict) -> str:
    return {"none": "", "NaN": "NaN"}.get(spec["fill"], spec["fill"])


def variables_table(schema: dict) -> str:
    rows = []
    for name, spec in schema["variables"].items():
        note = " *(optional)*" if spec.get("optional") else ""
        flags = ""
        if "flag_values" in spec:
            pairs = zip(spec["flag_values"], spec["flag_meanings"], strict=True)
            flags = " Codes: " + ", ".join(f"{v} {m}" for v, m in pairs) + "."
        rows.append(
            [
                f"`{name}`{note}",
                ", ".join(spec["dims"]),
                spec["dtype"],
                spec["role"],
                spec["units"],
                _fill(spec),
                spec["description"] + flags,
            ]
        )
    header = ["name", "dims", "dtype", "role", "units", "unwritten / not measured", "meaning"]
    return _table(header, rows)


def parameter_groups_table(schema: dict) -> str:
    rows = [[f"`{k}`", v] for k, v in schema["parameter_groups"].items()]
    return _table(["group", "parameters"], rows)


def extra_coordinates_table(schema: dict) -> str:
    known = schema["extra_run_coordinates"]["known"]
    rows = [[f"`{k}`", v["dtype"], v["units"], v["description"]] for k, v in known.items()]
    return _table(["coordinate", "dtype", "units", "meaning"], rows)


def attributes_table(schema: dict) -> str:
    rows = [
        [f"`{k}`" + (" *(optional)*" if v.get("optional") else ""), v["type"], v["description"]]
        for k, v in schema["attributes"].items()
    ]
    return _table(["attribute", "type", "meaning"], rows)


def checkpoint_table(schema: dict) -> str:
    checkpoint = schema["checkpoint"]
    head = (
        f"`{checkpoint['path']}`, format version {checkpoint['format_version']}: "
        f"{checkpoint['serialisation']}.\n\n"
    )
    rows = [[f"`{k}`", v] for k, v in checkpoint["keys"].items()]
    return head + _table(["key", "meaning"], rows)


#: Block name in the README -> the function that renders it from the schema.
BLOCKS: dict[str, Callable[[dict], str]] = {
    "dimensions": dimensions_table,
    "variables": variables_table,
    "parameter_groups": parameter_groups_table,
    "extra_run_coordinates": extra_coordinates_table,
    "attributes": attributes_table,
    "checkpoint": checkpoint_table,
}


def render(text: str, schema: dict | None = None) -> str:
    """``text`` with every generated block replaced by its rendering of ``schema``.

    Raises
    ------
    ValueError
        When a block names no known table, or a known table has no block.
    """
    schema = schema or schemas.load_schema()
    seen: set[str] = set()

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ValueError(f"README block '{name}' is not one of {sorted(BLOCKS)}")
        seen.add(name)
        return match.group(1) + BLOCKS[name](schema) + match.group(4)

    rendered = _BLOCK.sub(replace, text)
    missing = sorted(set(BLOCKS) - seen)
    if missing:
        raise ValueError(f"README has no generated block for {missing}")
    return rendered


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    current = README.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print(f"{README} is out of date with the schema: run python -m schemas.docs")
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
