"""Natural-Instructions task files as text classification data.

A task file is JSON with a "Definition" (a list of strings, or one string in some versions, e.g.
task846 as stored in shared/data), "Positive Examples", "Negative Examples" and "Instances" (each
``{"id"?, "input": str, "output": [str, ...]}``). Every instance becomes one sample:

- text = :data:`TEMPLATE` filled with the definition (list items joined by a newline) and the
  instance input, so the model reads the instruction with every input (instruction tuning, as
  in the paper's case study); with ``include_definition=False`` the instance input alone
  (:data:`INPUT_ONLY`: the definition is the same for every instance, so it carries nothing
  about the label, and a mean-pooled bag of words would average it into every sample). The
  examples are not included: at 256 tokens they would crowd out the instance.
- label = the instance's only output string; classes are the distinct outputs, in sorted order
  (task846: "no" = 0, "yes" = 1). An instance with zero or several outputs is an error: which
  class it belongs to would be a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: How an instance is shown to the model (placeholders: definition, input).
TEMPLATE = "Definition: {definition}\n\nInput: {input}"
#: How an instance is shown without its definition (``task.include_definition: false``).
INPUT_ONLY = "{input}"

REQUIRED_KEYS = ("Definition", "Instances")


@dataclass(frozen=True)
class NITask:
    texts: list[str]  # TEMPLATE (or INPUT_ONLY) filled per instance, in file order
    labels: list[str]  # each instance's single output string
    definition: str


def definition_text(definition: str | list[str]) -> str:
    """The definition as one string (list items joined by a newline)."""
    return definition if isinstance(definition, str) else "\n".join(definition)


def load_ni_task(
    path: str | Path, field: str = "task.data", include_definition: bool = True
) -> NITask:
    """Read a Natural-Instructions task file into templated texts and string labels.

    Parameters
    ----------
    path
        The task JSON file.
    include_definition
        Prefix every input with the task definition (:data:`TEMPLATE`), or show the input
        alone (:data:`INPUT_ONLY`).
    field
        Name of the spec field that gave ``path``, used in error messages.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{field}: {str(path)!r} is not valid JSON ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise ValueError(
            f"{field}: {str(path)!r} is not a Natural-Instructions task file (missing key(s) "
            f"{missing}); give a file such as task846_pubmedqa_classification.json"
        )
    definition = definition_text(raw["Definition"])
    template = TEMPLATE if include_definition else INPUT_ONLY
    texts, labels = [], []
    for i, instance in enumerate(raw["Instances"]):
        outputs = instance.get("output")
        name = instance.get("id", f"#{i}")
        if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], str):
            raise ValueError(
                f"{field}: instance {name} of {str(path)!r} has output {outputs!r}; a "
                "classification task needs exactly one output string per instance"
            )
        texts.append(template.format(definition=definition, input=instance["input"]))
        labels.append(outputs[0])
    if not texts:
        raise ValueError(f"{field}: {str(path)!r} holds no instances")
    return NITask(texts=texts, labels=labels, definition=definition)
