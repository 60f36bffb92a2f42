"""Write the service container's seccomp profile: deploy/seccomp/rft-sandbox-bwrap.json.

The profile is the job filter's rule set (`sandbox.backends.seccomp.JOB_POLICY`: Docker's
default allow-list for a process without CAP_SYS_ADMIN, ptrace and friends, less io_uring,
other ABIs killed) plus what bubblewrap itself needs to build a sandbox as an unprivileged
user: a user namespace and the others (unshare, clone with namespace flags), its own root
(mount, umount2, pivot_root) and the sandbox's hostname (sethostname). Only the
service and bwrap run under this profile alone: every job runs under bwrap's
`--seccomp` filter as well (filters stack; the stricter answer wins), which refuses all of
these again. Run from the repository root:

    python3 deploy/seccomp/generate.py            # rewrite the profile
    python3 deploy/seccomp/generate.py --check    # exit 1 if the file is stale
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from sandbox.backends.seccomp import JOB_POLICY, Rule, SyscallPolicy, docker_profile

PROFILE = Path(__file__).resolve().parent / "rft-sandbox-bwrap.json"
BWRAP_NEEDS = ("unshare", "mount", "umount2", "pivot_root", "sethostname")


def service_policy() -> SyscallPolicy:
    """JOB_POLICY with clone unconditional (bwrap clones into new namespaces) and BWRAP_NEEDS allowed."""
    rules = [rule for rule in JOB_POLICY.rules if rule.names != ("clone",)]
    return replace(JOB_POLICY, rules=(*rules, Rule(("clone", *BWRAP_NEEDS))))


def render() -> str:
    return json.dumps(json.loads(docker_profile(service_policy())), indent=1) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PROFILE.read_text() if PROFILE.exists() else ""
        if current != text:
            print(f"{PROFILE} is stale: run python3 deploy/seccomp/generate.py", file=sys.stderr)
            return 1
        return 0
    PROFILE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
