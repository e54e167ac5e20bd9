"""Source metric names -> the schema's, and run configuration from templates, sidecars and --set.

The default table (:data:`DEFAULT_METRIC_NAMES`) is matched after normalising a source name
(:func:`normalise`: lower case, spaces and dashes to ``_``), so ``Train Loss`` (the authors'
logs), ``train_loss`` and ``train-loss`` are one name. ``--map SOURCE=SCHEMA`` overrides it (the
source name as logged, or normalised); ``--ignore PATTERN`` drops metrics (shell patterns).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

import schemas

#: Schema metrics along (run, step) that an import may fill; ``param_norm/<group>`` fills one
#: group of ``param_norm`` (run, step, group).
SCALAR_METRICS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "train_set_loss",
    "train_set_accuracy",
    "param_norm_total",
)

#: Normalised source name -> schema metric. Names that already are schema names map to
#: themselves (and ``param_norm/<group>`` for every group), so an exported store re-imports.
DEFAULT_METRIC_NAMES: dict[str, str] = {
    # training loss / accuracy (the authors' "Train Loss", "Train Acc")
    "loss": "train_loss",
    "train/loss": "train_loss",
    "train_acc": "train_accuracy",
    "train/acc": "train_accuracy",
    "train/accuracy": "train_accuracy",
    "accuracy/train": "train_accuracy",
    "loss/train": "train_loss",
    # test (held-out) loss / accuracy: test, eval and validation all mean the held-out split
    "test_acc": "test_accuracy",
    "test/acc": "test_accuracy",
    "test/accuracy": "test_accuracy",
    "test/loss": "test_loss",
    "accuracy/test": "test_accuracy",
    "loss/test": "test_loss",
    "eval/accuracy": "test_accuracy",
    "eval/acc": "test_accuracy",
    "eval/loss": "test_loss",
    "eval_accuracy": "test_accuracy",
    "eval_acc": "test_accuracy",
    "eval_loss": "test_loss",
    "val_acc": "test_accuracy",
    "val_accuracy": "test_accuracy",
    "val/acc": "test_accuracy",
    "val/accuracy": "test_accuracy",
    "val_loss": "test_loss",
    "val/loss": "test_loss",
    "validation/accuracy": "test_accuracy",
    "validation/loss": "test_loss",
    # total parameter norm (the authors' "L2 Norm")
    "l2_norm": "param_norm_total",
    "param_norm": "param_norm_total",
    "weight_norm": "param_norm_total",
    "norm/total": "param_norm_total",
    **{name: name for name in SCALAR_METRICS},
    **{f"param_norm/{g}": f"param_norm/{g}" for g in schemas.parameter_groups()},
}

#: Source metrics dropped unless mapped: W&B's bookkeeping columns (``_step``, ``_runtime``,
#: ``_timestamp``, ...), which are not measurements of the model.
DEFAULT_IGNORED = ("_*",)


def normalise(name: str) -> str:
    """The lookup key of a source metric name: lower case, runs of spaces and dashes -> ``_``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def schema_targets() -> list[str]:
    """Every name a metric may be mapped to."""
    return [*SCALAR_METRICS, *(f"param_norm/{g}" for g in schemas.parameter_groups())]


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; raises ValueError naming ``option`` and the pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {pair!r}: expected NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


class MetricNames:
    """Resolves source metric names: user map, then ignore patterns, then the default table.

    Parameters
    ----------
    overrides
        ``--map`` pairs, source name (as logged or normalised) -> schema target.
    ignore
        Shell patterns of source names to drop (matched against the name as logged and
        normalised), in addition to :data:`DEFAULT_IGNORED`.
    """

    def __init__(self, overrides: Mapping[str, str] | None = None, ignore: Sequence[str] = ()):
        targets = set(schema_targets())
        self.overrides = {normalise(k): v for k, v in (overrides or {}).items()}
        for source, target in (overrides or {}).items():
            if target not in targets:
                raise ValueError(
                    f"--map {source}={target}: {target!r} is not a schema metric; "
                    f"choose one of {', '.join(sorted(targets))}"
                )
        self.ignore = (*DEFAULT_IGNORED, *ignore)

    def target(self, name: str) -> str | None:
        """The schema target of source metric ``name``; None when it is ignored.

        Raises
        ------
        KeyError
            When ``name`` is neither mapped, ignored nor in the default table.
        """
        key = normalise(name)
        if key in self.overrides:
            return self.overrides[key]
        if any(fnmatch.fnmatchcase(n, p) for p in self.ignore for n in (name, key)):
            return None
        if key in DEFAULT_METRIC_NAMES:
            return DEFAULT_METRIC_NAMES[key]
        raise KeyError(name)


def coerce(text: str) -> Any:
    """A value written as text, typed: ints as ints, then floats, then ``true``/``false``, else
    the text itself (``"2000"`` -> 2000, ``"1e-3"`` -> 0.001, ``"gpt"`` -> ``"gpt"``)."""
    if re.fullmatch(r"[+-]?\d+", text.strip()):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    return text


class PathTemplate:
    """``runs/{model}_{n_samples}_{seed}``: configuration read from a run's path.

    The template is matched against the end of a path at a ``/`` boundary (the run's name first,
    then each file it was read from, without and with its suffix); each ``{field}`` matches text
    without ``/`` (shortest first, so a field before ``_`` stops at the first ``_``) and is typed
    by :func:`coerce`.
    """

    def __init__(self, template: str):
        parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template.strip("/"))
        if len(parts) == 1:
            raise ValueError(f"--path-template {template!r} names no {{field}}")
        fields = parts[1::2]
        if len(set(fields)) != len(fields):
            raise ValueError(f"--path-template {template!r} names a field twice")
        pattern = "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+?)" for i, p in enumerate(parts)
        )
        self.template = template
        self.fields = fields
        self._regex = re.compile(r"(?:^|/)" + pattern + r"(?:/|$)")

    def match(self, paths: Sequence[str]) -> dict[str, Any] | None:
        """The typed fields of the first path the template matches; None when none does."""
        for path in paths:
            found = self._regex.search(str(path).replace("\\", "/"))
            if found:
                return {k: coerce(v) for k, v in found.groupdict().items()}
        return None
