"""Check that tritemporal's dependencies install from wheels where its users run it.

    python scripts/check_platforms.py [--python 3.11 ...] [--extra dev ...]

Why: one dependency without a wheel for a platform breaks `pip install` there. decord ships
wheels for x86-64 Linux and Windows only, so pyproject.toml installs it there alone (an
environment marker); PyAV, the default decoder, has wheels everywhere. For each target this
resolves pyproject.toml's dependencies (with `--extra`s, default `dev`, which the README's test
command installs) from wheels only, and checks that `av` is in the set and `decord` is exactly
where `TARGETS` says it has wheels.

pip cannot answer this for another platform: its `--platform` changes the wheel tags but not the
environment markers, which it evaluates on the machine it runs on (torch's CUDA packages would be
sought for macOS), and a dry run downloads whole wheels (torch's are GBs). So the resolver is
uv's (`pip install uv`), which takes a target's markers and wheel tags and reads only package
metadata from PyPI (it needs the network; the tests do not run this). CI runs it (`.ci/run`):
5-7 s for the four targets at Python 3.11, in parallel, with an empty uv cache or a warm one,
plus 3 s to install uv; other Python versions make uv backtrack through more releases (3.10 and
3.12 together: 80 s). A failure prints uv's reason, e.g. a package without a wheel there.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PYTHON = "3.11"  # default --python: the version CI tests with


@dataclass(frozen=True)
class Target:
    """A platform users install on: uv's name for it, its environment markers, and whether
    decord has a wheel for it (decord 0.6: manylinux2010_x86_64 and win_amd64 only)."""

    name: str
    uv_platform: str
    markers: dict[str, str]
    decord: bool


TARGETS = (
    Target(
        "x86-64 Linux",
        "x86_64-manylinux_2_28",
        {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"},
        True,
    ),
    Target(
        "aarch64 Linux (Grace-Hopper)",
        "aarch64-manylinux_2_28",
        {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"},
        False,
    ),
    Target(
        "macOS arm64 (Apple Silicon)",
        "aarch64-apple-darwin",
        {"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"},
        False,
    ),
    Target(
        "Windows x86-64",
        "x86_64-pc-windows-msvc",
        {"sys_platform": "win32", "platform_machine": "AMD64", "platform_system": "Windows"},
        True,
    ),
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def resolve(uv: str, target: Target, python: str, extras: list[str]) -> dict[str, str]:
    """Package -> version that uv resolves for `target` from wheels only (RuntimeError: why not)."""
    command = [
        uv, "pip", "compile", str(PYPROJECT), "--quiet", "--no-header", "--no-annotate",
        "--only-binary", ":all:", "--python-platform", target.uv_platform,
        "--python-version", python, *(f"--extra={extra}" for extra in extras),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError((done.stderr or done.stdout).strip())
    pins = (PIN.match(line) for line in done.stdout.splitlines())
    return {match[1].lower(): match[2] for match in pins if match}


def check(uv: str, target: Target, python: str, extras: list[str]) -> tuple[bool, str]:
    """(ok, one line) for one target and Python version."""
    begin = time.perf_counter()
    where = f"{target.name}, Python {python}"
    try:
        pins = resolve(uv, target, python, extras)
    except RuntimeError as exc:
        return False, f"FAIL {where}: does not resolve from wheels:\n{exc}"
    seconds = time.perf_counter() - begin
    problems = []
    if "av" not in pins:
        problems.append("av (the default decoder) is missing")
    if ("decord" in pins) != target.decord:
        has = "has" if "decord" in pins else "lacks"
        problems.append(f"it {has} decord, against its wheels (pyproject.toml's marker)")
    shown = [f"{name} {pins[name]}" for name in ("torch", "av", "decord") if name in pins]
    line = f"{where}: {len(pins)} packages ({', '.join(shown)}; {seconds:.1f} s)"
    return (False, f"FAIL {line}: {'; '.join(problems)}") if problems else (True, f"ok   {line}")


def main(argv: list[str] | None = None) -> int:
    """Resolve every target (in parallel), print one line each; 1 if any fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", nargs="+", default=[PYTHON], help="Python versions")
    parser.add_argument("--extra", nargs="*", default=["dev"], help="extras to include")
    args = parser.parse_args(argv)
    uv = shutil.which("uv")
    if uv is None:
        print("check_platforms: needs uv (`pip install uv`), whose resolver takes another "
              "platform's markers and wheel tags", file=sys.stderr)  # fmt: skip
        return 2
    begin = time.perf_counter()
    jobs = [(target, python) for target in TARGETS for python in args.python]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: check(uv, *job, args.extra), jobs))
    for _, line in results:
        print(line)
    failed, seconds = sum(not ok for ok, _ in results), time.perf_counter() - begin
    print(f"{len(results) - failed} of {len(results)} resolve ({seconds:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
