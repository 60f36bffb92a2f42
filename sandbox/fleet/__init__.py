"""The service as a fleet on a Ray cluster: plain Ray actors, each replica its own gRPC server.

`spec` says what a replica runs, `replica` is the actor serving on its node, `controller`
places replicas and watches them, `commands` is what `python -m sandbox ray up|down|status`
does. Design and failure behaviour: docs/deployment-ray.md.
"""
