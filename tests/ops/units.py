"""Helpers for checking systemd units offline: a throw-away root that `systemd-analyze --root` reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
UNITS = sorted(p.name for p in UNIT_DIR.glob("*.service"))
# systemd's own units (sysinit.target, ...) that every unit depends on implicitly.
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is missing: run ./scripts/setup (installs systemd)"
    return path


def instance_name(unit: str) -> str:
    """A template (``x@.service``) is verified through an instance (``x@1.service``)."""
    return unit.replace("@.", "@1.")


def make_unit_root(root: Path, executables: list[str]) -> Path:
    """A root holding systemd's units, ours in /etc/systemd/system, and stub ExecStart binaries, so
    verify checks the executables the units name (it checks them inside the root)."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(UNIT_DIR / unit, target / unit)
    for executable in executables:
        stub = root / executable.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def verify(root: Path, units: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", "--man=no", *units],
        cwd=root / "etc/systemd/system",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exposure(root: Path, unit: str) -> float:
    """`systemd-analyze security` score, 0 (locked down) .. 10 (exposed)."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", f"--root={root}", "--no-pager", unit],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure score for {unit}:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def directives(unit_text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit, in order; repeated keys keep all their values."""
    out: dict[str, list[str]] = {}
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def exec_start_binary(unit_text: str) -> str:
    return directives(unit_text)["ExecStart"][0].split()[0]
