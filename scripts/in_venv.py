"""Makes the calling script run with the Python of the venv that
scripts/install.sh sets up, where confluent-kafka and the other pinned tools
live: when a module is missing, the script starts again under that Python.
"""

import importlib
import os
import sys

VENV_PYTHON = os.path.expanduser(
    os.path.join(os.environ.get("STREAMPROC_CACHE", "~/.cache/streamproc"), "venv/bin/python")
)


def require(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        if os.path.exists(VENV_PYTHON) and sys.executable != VENV_PYTHON:
            os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])
        sys.exit(f"{module} is missing: run scripts/install.sh")
