"""How a run is named to and by the tools: by its run id (the store's ``run`` coordinate).

One rule for ``cds-run --runs``, ``cds-analyze plot --run`` and every table: a run is named by
its id, or on input by a unique prefix of it (at least :data:`MIN_ID_PREFIX_CHARS` characters);
tables print :data:`RUN_ID_SHOWN_CHARS` characters of it, next to the run's coordinates. A run in
another store is ``STORE#RUN`` (``init_from.parent``, the ``parent_run`` coordinate).

A plain number of fewer than :data:`MIN_ID_PREFIX_CHARS` digits, or a range ``A-B`` of such
numbers, is still read as run indices (positions in the store, or in the runs a ``--where``
kept), as before ids were accepted; indices change when a grid changes, ids do not.

Light on purpose (the standard library only): both command-line tools import it at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Characters of a run id printed in tables and messages: the whole id (ids are 12 hex digits,
#: ``runner.run_identity.RUN_ID_HEX_DIGITS``), so that what is printed can be pasted back.
RUN_ID_SHOWN_CHARS = 12
#: Fewest characters of a run-id prefix given on input; a shorter plain number is an index.
MIN_ID_PREFIX_CHARS = 6


def shown_id(run_id: object) -> str:
    """A run id as tables print it (its first :data:`RUN_ID_SHOWN_CHARS` characters)."""
    return str(run_id)[:RUN_ID_SHOWN_CHARS]


def _is_index(text: str) -> bool:
    return text.isdigit() and len(text) < MIN_ID_PREFIX_CHARS


def resolve_run(text: str, run_ids: Sequence[object]) -> int:
    """The position in ``run_ids`` of the run named by ``text``: a run id, a unique prefix of
    one (at least :data:`MIN_ID_PREFIX_CHARS` characters) or, for compatibility, an index.

    Raises
    ------
    ValueError
        Naming the text and why: no such run, a prefix shared by several runs (listing them),
        a prefix too short, or an index out of range.
    """
    text = str(text).strip()
    ids = [str(r) for r in run_ids]
    if _is_index(text):
        index = int(text)
        if not 0 <= index < len(ids):
            raise ValueError(f"run index {text} is outside 0..{len(ids) - 1}")
        return index
    if text in ids:
        return ids.index(text)
    if len(text) < MIN_ID_PREFIX_CHARS:
        raise ValueError(
            f"run {text!r}: give a run id or at least {MIN_ID_PREFIX_CHARS} of its first "
            "characters (or a run index)"
        )
    matches = [i for i, r in enumerate(ids) if r.startswith(text)]
    if not matches:
        some = ", ".join(shown_id(r) for r in ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise ValueError(f"no run id starts with {text!r} (ids: {some})")
    if len(matches) > 1:
        which = ", ".join(shown_id(ids[i]) for i in matches)
        raise ValueError(
            f"run {text!r} is the start of {len(matches)} run ids ({which}): give more"
        )
    return matches[0]


def parse_run_selection(text: str, run_ids: Sequence[object]) -> list[int]:
    """The positions of the runs named by the comma-separated ``text``: run ids or unique
    prefixes, or (for compatibility) indices and index ranges such as ``3-5``; sorted, each
    once. Raises ValueError naming the bad part."""
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        if dash and _is_index(first.strip()) and _is_index(last.strip()):
            lo, hi = resolve_run(first, run_ids), resolve_run(last, run_ids)
            if lo > hi:
                raise ValueError(f"run range {part!r} is empty (write it low-high)")
            chosen.update(range(lo, hi + 1))
        elif part:
            chosen.add(resolve_run(part, run_ids))
        else:
            raise ValueError(f"empty run in {text!r}")
    return sorted(chosen)
