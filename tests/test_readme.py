"""The README's report block is what ``cds-analyze regimes`` prints today on the quickstart
store (the README's main command), so the two cannot drift apart.

Training the quickstart grid takes about 2 minutes on 2 cores (``--executor processes``). The
numbers are bitwise reproducible on the reference machine kind (CPU, torch 2.13.0); on another
kind this test can fail on a last digit, and the README says where its block was made.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The sentence that introduces the block in the README.
INTRO = "On the 2-core reference machine it prints"
#: A CPU flag of the machine kind whose training numbers differ from the reference kind's.
OTHER_KIND_FLAG = "amx_tile"


def _other_machine_kind() -> bool:
    try:
        return OTHER_KIND_FLAG in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def _masked(report: str) -> str:
    """The report with every number replaced by '#', and runs of spaces and of a rule's dashes
    collapsed (a column's width follows its numbers)."""
    masked = re.sub(r"-{3,}", "---", re.sub(r"\d[\d,]*(\.\d+)?", "#", report))
    return "\n".join(re.sub(r" +", " ", line).strip() for line in masked.splitlines())


def readme_report_block() -> str:
    """The first ```text block after :data:`INTRO`."""
    text = README.read_text()
    after = text[text.index(INTRO) :]
    match = re.search(r"```text\n(.*?)```", after, re.S)
    assert match, f"no ```text block after {INTRO!r} in README.md"
    return match.group(1)


def _run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", args[0], *args[1:]], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result


def test_readme_report_block_is_what_the_quickstart_prints(tmp_path):
    store = tmp_path / "quickstart.zarr"
    grid = ROOT / "examples" / "quickstart.yaml"
    run = "from runner.cli import main; main()"
    _run(run, "--grid", str(grid), "--out", str(store), "--executor", "processes")
    analyze = "from cdsanalysis.cli import main; main()"
    printed = _run(analyze, "regimes", str(store)).stdout
    if _other_machine_kind():
        assert _masked(printed) == _masked(readme_report_block())
    else:
        assert printed == readme_report_block()
