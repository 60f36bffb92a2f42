"""What a Ray fleet and its clients agree on: where the controller actor is found.

The service's `sandbox.fleet` creates the controller under these names and the trainer
plugin looks it up by them; the plugin may import only `sandbox.api`, so they live here.
"""

from __future__ import annotations

RAY_SCHEME = "ray://"  # a client target `ray://NAME`: the live replicas of the fleet NAME
RAY_NAMESPACE = "rft-sandbox"  # the Ray namespace of every fleet's controller (named NAME)
ENDPOINTS_METHOD = "endpoints"  # the controller's method: HOST:PORT of each serving replica
