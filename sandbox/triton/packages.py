"""The service's torch and triton, mounted read-only into Triton sandboxes.

Sandboxes see none of the service's site-packages (a dataset installed there could be an
answer key), so Triton runners get exactly the distributions they need: torch, triton and
numpy with their requirements, each top-level package bound where the runner imports
engine packages from (`Mount.package`).
A sandbox image that ships them itself (the `triton` target of Dockerfile.sandbox) works
the same way, from its own site-packages.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from sandbox.backends.policy import Mount

ROOTS = ("torch", "triton", "numpy")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class PackagesMissing(RuntimeError):
    """torch or triton is not installed where the service runs."""


def _requirements(requires: list[str] | None) -> list[str]:
    names = []
    for line in requires or ():
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue  # optional extras are not needed to import the package
        match = _NAME.match(requirement.strip())
        if match:
            names.append(match.group(0))
    return names


def package_mounts(roots: tuple[str, ...] = ROOTS) -> list[Mount]:
    """Read-only binds for `roots` and everything they require."""
    mounts: dict[str, Mount] = {}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            if name in roots:
                raise PackagesMissing(f"{name} is not installed (pip install 'rft-sandbox[triton]')") from None
            continue  # a requirement for another platform or Python
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        base = Path(dist.locate_file(""))
        info = Path(str(dist._path))  # type: ignore[attr-defined]  # torch reads its own version
        mounts[str(info)] = Mount.package(info)
        for entry in {str(f).split("/")[0] for f in dist.files or ()}:
            if entry in ("..", "__pycache__") or entry.endswith((".dist-info", ".pth")):
                continue
            path = base / entry
            if path.exists():
                mounts[str(path)] = Mount.package(path)
        todo += _requirements(dist.requires)
    return [mounts[source] for source in sorted(mounts)]
