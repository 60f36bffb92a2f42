"""The wire: the one module the trusted service, `rewards/` and the untrusted runner share.

`framing` (length-prefixed JSON frames), `codec` (tagged JSON values) and `messages` (the
jobs, records and names that cross the isolation boundary). Stdlib only, and no module
here imports another: the runner loads them as top-level modules from this directory,
mounted read-only next to its own (`sandbox.backends.policy.RunnerCommand.wire`).
"""
