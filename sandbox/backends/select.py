"""Choosing the isolation backend: `docker`, `bwrap`, or `auto` (Docker when it can work)."""

from __future__ import annotations

import logging

from sandbox.backends.base import Backend, BackendUnavailable

log = logging.getLogger(__name__)
CHOICES = ("auto", "docker", "bwrap")


def make_backend(name: str, *, image: str | None = None, runtime: str | None = None) -> Backend:
    """A checked, ready backend; BackendUnavailable says why the one asked for cannot work."""
    if name not in CHOICES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    if name in ("docker", "auto"):
        from sandbox.backends.docker import DockerBackend

        docker = DockerBackend(runtime=runtime) if image is None else DockerBackend(image=image, runtime=runtime)
        try:
            docker.check()
            log.info("backend", extra={"fields": {"backend": "docker", "image": docker.image, "chosen_by": name}})
            return docker
        except (BackendUnavailable, ImportError) as exc:
            if name == "docker":
                raise BackendUnavailable(str(exc)) from None
            log.info(
                "backend",
                extra={"fields": {"backend": "bwrap", "chosen_by": name, "docker_unavailable": str(exc)[:300]}},
            )
    from sandbox.backends.bwrap import BwrapBackend

    bwrap = BwrapBackend()
    bwrap.check()
    return bwrap
