"""Run identity: a run's id is a versioned hash of its spec *without the fields at their defaults*.

Scheme 2 (current)
    ``sha256("cds-run-id/2\\n" + identity JSON)``, first 12 hex digits. The identity JSON is the
    spec in JSON form (tuples as lists, floats in Python's shortest round-trip form, so ``1e-3``
    and ``0.001`` are one value) with every field equal to its default left out, at every depth,
    and keys sorted. Two kinds of field are always kept: required fields, and *type tags* (a
    field whose only allowed value is one literal, such as ``model.family`` or the modular
    task's ``name``), because the defaults of a nested spec depend on its type: a BERT and a GPT
    model of width 64 differ only in their tag. A nested spec equal to its field's default is
    left out as a whole.

    So a field added with a default leaves every existing id unchanged, and a store written
    before the field existed can be resumed and extended.

Scheme 1 (stores written before scheme 2)
    ``sha256`` of the spec's full canonical JSON, defaults included, no prefix: every new field
    changed every id. Such stores carry no ``run_id_scheme`` attribute, and their ``spec_json``
    holds exactly the text that was hashed, so a scheme-1 id can always be checked against it.
    ``runner.migrate`` re-keys them. Fields added to the spec after scheme 1 was replaced
    (:data:`FIELDS_AFTER_SCHEME_1`) were never in such a text: the scheme-1 form of a spec
    (:func:`legacy_dump`) leaves them out while they are at their defaults.

Rules that keep ids meaningful (a developer's side of the promise):

- a new field needs a default that reproduces the behaviour from before it existed;
- changing an existing default, or what a value means, silently changes what an old id stands
  for; renaming or removing a field makes old specs unreadable. Either needs a new scheme number
  and a migration. ``cds-run`` refuses a store whose stored specs no longer hash to their ids,
  so such a change is caught rather than mixed into old runs, and
  ``tests/runner/test_run_identity.py`` pins every default.

This module imports neither torch nor the spec classes (it works on any pydantic model).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

#: The id scheme new stores are written with (root attribute ``run_id_scheme``).
RUN_ID_SCHEME = 2
#: Stores without a ``run_id_scheme`` attribute were written with this scheme.
LEGACY_RUN_ID_SCHEME = 1
#: Spec fields (dotted paths into nested specs) added after the last version that wrote
#: scheme 1: no scheme-1 ``spec_json`` holds them, so the scheme-1 form of a spec omits them at
#: their defaults.
FIELDS_AFTER_SCHEME_1 = (
    "train_eval_subset",
    "stop_when",
    "optimizer.decay_scope",
    "task.include_definition",
)
#: Root attribute of a store naming the scheme of its ``run`` coordinate.
SCHEME_ATTRIBUTE = "run_id_scheme"
#: Hex digits of the sha256 kept as the id (48 bits: a collision is expected only beyond
#: ~16 million runs in one store, and a grid with two equal ids is refused anyway).
RUN_ID_HEX_DIGITS = 12


def canonical(value: Any) -> str:
    """Compact JSON with sorted keys: the one text form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def hash_identity(identity_json: str, scheme: int = RUN_ID_SCHEME) -> str:
    """The id of a spec whose identity JSON (:func:`without_defaults`, canonical) is given."""
    if scheme != RUN_ID_SCHEME:
        raise ValueError(
            f"run id scheme {scheme}: identity JSON is hashed only by scheme {RUN_ID_SCHEME}; "
            f"scheme {LEGACY_RUN_ID_SCHEME} ids come from legacy_hash(full canonical JSON)"
        )
    text = f"cds-run-id/{scheme}\n{identity_json}"
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_HEX_DIGITS]


def legacy_hash(full_canonical_json: str) -> str:
    """A scheme-1 id: the hash of the spec's full canonical JSON (a store's ``spec_json``)."""
    return hashlib.sha256(full_canonical_json.encode()).hexdigest()[:RUN_ID_HEX_DIGITS]


def legacy_dump(model: BaseModel) -> dict[str, Any]:
    """The full JSON dump (defaults included) a scheme-1 version wrote for ``model``: without
    the :data:`FIELDS_AFTER_SCHEME_1` that are at their defaults (set away from them, a spec
    has no scheme-1 form, and keeping them keeps its scheme-1 id distinct)."""
    dump = model.model_dump(mode="json")
    for path in FIELDS_AFTER_SCHEME_1:
        *parents, name = path.split(".")
        owner, node = model, dump
        for key in parents:  # down to the nested spec that holds the field
            owner, node = getattr(owner, key, None), node.get(key)
            if not isinstance(owner, BaseModel):
                break
        else:
            fields = type(owner).model_fields
            if name in fields and _same(
                node[name], to_jsonable_python(fields[name].get_default(call_default_factory=True))
            ):
                del node[name]
    return dump


def is_type_tag(field: FieldInfo) -> bool:
    """Whether a field can hold one literal only (``family: Literal["gpt"]``): it names the
    spec's type and is kept in the identity even at its default."""
    return get_origin(field.annotation) is Literal and len(get_args(field.annotation)) == 1


def without_defaults(model: BaseModel) -> dict[str, Any]:
    """``model`` as JSON values, every field at its default left out (recursively); required
    fields and type tags kept. Nested specs are reduced against their own class's defaults."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        default = field.get_default(call_default_factory=True)
        keep = field.is_required() or is_type_tag(field)
        if not keep and _same(to_jsonable_python(value), to_jsonable_python(default)):
            continue
        out[name] = (
            without_defaults(value) if isinstance(value, BaseModel) else (to_jsonable_python(value))
        )
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, numbers compared by value (a default written ``1`` for a float
    field equals ``1.0``) but booleans never equal to numbers."""
    return _comparable(a) == _comparable(b)


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, list):
        return ("list", [_comparable(v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: _comparable(v) for k, v in value.items()})
    raise TypeError(f"not a JSON value: {value!r}")
