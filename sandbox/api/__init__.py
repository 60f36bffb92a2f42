"""The v1 contract as Python: generated messages plus the method paths and a stub.

Generated code lives in `sandbox/_proto` (regenerate with `scripts/gen-proto`); this
package is the one place the rest of the code imports it from, and all the trainer
plugin may import of `sandbox`: besides the messages, it holds what both sides of the
wire share (`completions`: the program in a model's completion; `taskfile`: JSONL files
of tasks and results).
"""

from __future__ import annotations

from typing import Any

from sandbox._proto.rft_sandbox.v1 import sandbox_pb2 as pb

SERVICE = "rft_sandbox.v1.Sandbox"
SCORE = f"/{SERVICE}/Score"
SCORE_BATCH = f"/{SERVICE}/ScoreBatch"
STATS = f"/{SERVICE}/Stats"
# A client channel's message caps: results (and batches) can pass gRPC's 4 MiB default.
CLIENT_CHANNEL_ARGS = (("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20))
# Request metadata naming the call for the audit trail (`sandbox.audit_record` holds the same
# names: the plugin may import only this package): the training run, its global step, the caller.
METADATA_RUN = "rft-run"
METADATA_STEP = "rft-step"
METADATA_CALLER = "rft-caller"


class Stub:
    """The service's three methods on a channel, as a generated stub would give them: on a
    `grpc.Channel` they are blocking calls, on a `grpc.aio.Channel` awaitables."""

    def __init__(self, channel: Any) -> None:
        self.Score = channel.unary_unary(
            SCORE, request_serializer=pb.ScoreRequest.SerializeToString, response_deserializer=pb.Result.FromString
        )
        self.ScoreBatch = channel.unary_stream(
            SCORE_BATCH,
            request_serializer=pb.ScoreBatchRequest.SerializeToString,
            response_deserializer=pb.Result.FromString,
        )
        self.Stats = channel.unary_unary(
            STATS, request_serializer=pb.StatsRequest.SerializeToString, response_deserializer=pb.StatsReply.FromString
        )


__all__ = [
    "CLIENT_CHANNEL_ARGS",
    "METADATA_CALLER",
    "METADATA_RUN",
    "METADATA_STEP",
    "SCORE",
    "SCORE_BATCH",
    "SERVICE",
    "STATS",
    "Stub",
    "pb",
]
