"""Install the Debian packages the local stack needs, once, on demand."""

from __future__ import annotations

import os
import shutil
import subprocess

from iotpipe.errors import StackError


def ensure_debian_packages(commands: dict[str, str]) -> None:
    """Install packages whose command (key) is missing; value is the package name."""
    missing = sorted({pkg for cmd, pkg in commands.items() if not _have(cmd)})
    if not missing:
        return
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise StackError(f"need Debian packages {missing}; run as root or install sudo")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        [*prefix, "apt-get", "update", "-qq"],
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")


def _have(command: str) -> bool:
    return shutil.which(command) is not None or os.path.exists(f"/usr/sbin/{command}")
