"""setuptools' ``build_py`` plus one file: ``log_exporter/REVISION``, the git commit of the build.

An installed wheel has no checkout to ask, so the commit is written into it when it is built:
``$SOURCE_REVISION`` when set (the Docker build passes it, since its context has no ``.git``),
else ``git rev-parse HEAD`` of the checkout. Without either no file is written and the programs
say ``unknown`` (log_exporter/buildinfo.py). Editable installs need no file: they ask git.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from setuptools.command.build_py import build_py


def _revision() -> str:
    given = os.environ.get("SOURCE_REVISION", "").strip()
    if given:
        return given
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        revision = _revision()
        if revision and not self.editable_mode:
            target = Path(self.build_lib) / "log_exporter" / "REVISION"
            target.write_text(revision + "\n", encoding="ascii")
