"""The ``cds-run`` console script: checks that the training extra is installed, then runs the CLI.

``pip install cds`` installs the analysis side only; training needs ``pip install "cds[train]"``.
Without it, ``runner.cli`` would die on its first ``import torch`` with a traceback that does not
say what to install, so this entry point tries the training packages first and names the command.
"""

from __future__ import annotations

import sys

#: The packages of the ``train`` extra that ``cds-run`` cannot start without (import names).
TRAIN_MODULES = ("torch", "transformers")

#: What to run to get them (the extra declared in pyproject.toml).
INSTALL_COMMAND = 'pip install "cds[train]"'


def missing_train_modules() -> list[str]:
    """Names of the training packages that cannot be imported here."""
    missing = []
    for name in TRAIN_MODULES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def main() -> None:
    missing = missing_train_modules()
    if missing:
        print(
            f"error: cds-run trains models and needs {', '.join(missing)}, which this environment "
            f"lacks (the analysis-only install). Install the training extra:\n\n"
            f"    {INSTALL_COMMAND}\n\n"
            '(from a source checkout: pip install ".[train]"). cds-analyze works without it.',
            file=sys.stderr,
        )
        raise SystemExit(2)
    from runner.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
