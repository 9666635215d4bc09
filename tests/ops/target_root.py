"""A throw-away Debian root for real Ansible runs (community.general.chroot), and the wheelhouse the
edge role installs from inside it, both cached under var/ops/ (git-ignored).

Creating them needs the network (deb.debian.org, the package index), so ./scripts/test does it
(`python -m tests.ops.target_root`); the tests reuse the cache and never reach the internet.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "var" / "ops"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a fresh Raspberry Pi OS Lite already has that the roles rely on, plus systemd (for
# `systemctl enable` in the root and `systemd-analyze --root`). Baked in because the tests are
# offline: the roles' apt tasks then find them installed.
ROOT_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-apt",
    "python3-packaging",
    "redis-server",
    "systemd",
    "udev",
    "ca-certificates",
)
# The Pi 5 GPIO library the test board (a Pi 5 model string) selects, and the build backend, so the
# tests build giftwheel's wheel offline (pip's isolated build installs it from the wheelhouse).
# async-timeout: redis needs it below Python 3.11.3, which Debian 12's 3.11.2 is, while the wheelhouse is
# resolved by the dev venv's (newer) Python.
EXTRA_WHEELS = ("lgpio", "setuptools>=69", "wheel", "async-timeout>=4.0.3")


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@contextmanager
def _locked() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_root_path() -> Path:
    return CACHE / f"root-{SUITE}-{_key(SUITE, *ROOT_PACKAGES)}"


def ensure_base_root() -> Path:
    """debootstrap once (about a minute); later calls return the cached root."""
    root = base_root_path()
    with _locked():
        if (root / "etc/os-release").exists():
            return root
        debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(ROOT_PACKAGES)}",
                SUITE,
                str(partial),
                MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["chroot", str(partial), "apt-get", "clean"], check=True)
        partial.rename(root)
        return root


def _requirements() -> list[str]:
    """giftwheel[edge] for the role, giftwheel[cloud] for the cloud units booted in the same root."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return sorted(set(project["dependencies"] + extras["edge"] + extras["cloud"]))


def wheelhouse_path() -> Path:
    return CACHE / f"wheelhouse-{_key(*_requirements(), *EXTRA_WHEELS)}"


def ensure_wheelhouse() -> Path:
    """Wheels of giftwheel's dependencies (not giftwheel itself: each test builds that fresh)."""
    house = wheelhouse_path()
    with _locked():
        if (house / ".complete").exists():
            return house
        shutil.rmtree(house, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "-w",
                str(house),
                *_requirements(),
                *EXTRA_WHEELS,
            ],
            check=True,
        )
        (house / ".complete").touch()
        return house


# The Pis the edge role supports: Raspberry Pi OS bookworm (Python 3.11, glibc 2.36), 64 or 32 bit.
PI_PYTHON = "3.11"
PI_MACHINES = ("aarch64", "armv7l")
PI_GLIBC_MINOR = 36


def pi_platforms(machine: str) -> list[str]:
    """The platform tags the Pi's own pip accepts (pip's --platform does not expand manylinux_2_X)."""
    manylinux = [f"manylinux_2_{minor}_{machine}" for minor in range(PI_GLIBC_MINOR, 16, -1)]
    return [*manylinux, f"manylinux2014_{machine}", f"linux_{machine}"]


def pi_gpio_requirement() -> str:
    """The edge extra's GPIO library, without its Pi-only marker."""
    edge = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["edge"]
    (lgpio,) = [str(r) for r in edge if str(r).startswith("lgpio")]
    return lgpio.split(";")[0].strip()


def pi_wheels_path() -> Path:
    return CACHE / f"pi-wheels-{_key(pi_gpio_requirement(), PI_PYTHON, *PI_MACHINES, str(PI_GLIBC_MINOR))}"


def ensure_pi_wheels() -> Path:
    """The GPIO library as each supported Pi's pip would pick it with binaries only: fails here, at
    cache time, if any supported board would have to compile it (the roles install no compiler)."""
    wheels = pi_wheels_path()
    with _locked():
        if (wheels / ".complete").exists():
            return wheels
        shutil.rmtree(wheels, ignore_errors=True)
        for machine in PI_MACHINES:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary=:all:",
                    *(f"--platform={platform}" for platform in pi_platforms(machine)),
                    f"--python-version={PI_PYTHON}",
                    "--implementation=cp",
                    "-d",
                    str(wheels / machine),
                    pi_gpio_requirement(),
                ],
                check=True,
            )
        (wheels / ".complete").touch()
        return wheels


def main() -> int:
    print(f"ops: target root {ensure_base_root()}")
    print(f"ops: wheelhouse {ensure_wheelhouse()}")
    print(f"ops: Pi GPIO wheels {ensure_pi_wheels()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
