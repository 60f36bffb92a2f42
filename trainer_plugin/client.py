"""A small synchronous client for the v1 API (the trainer plugin builds on it).

Channels are created lazily and never pickled, so objects holding a client can be
sent to other processes (trainer workers) and reconnect there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from sandbox.api import SCORE, SCORE_BATCH, STATS, pb

_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


class SandboxClient:
    def __init__(
        self, target: str = "127.0.0.1:50051", token: str | None = None, timeout: float | None = 600.0
    ) -> None:
        self.target = target
        self.token = token
        self.timeout = timeout
        self._channel: grpc.Channel | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_channel": None}

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target, options=_OPTIONS)
        return self._channel

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    def score(self, task: pb.Task) -> pb.Result:
        call = self.channel.unary_unary(
            SCORE, request_serializer=pb.ScoreRequest.SerializeToString, response_deserializer=pb.Result.FromString
        )
        return call(pb.ScoreRequest(task=task), timeout=self.timeout, metadata=self._metadata())

    def score_batch(self, tasks: Iterable[pb.Task]) -> Iterator[pb.Result]:
        """Results in completion order; each carries its task's id."""
        call = self.channel.unary_stream(
            SCORE_BATCH,
            request_serializer=pb.ScoreBatchRequest.SerializeToString,
            response_deserializer=pb.Result.FromString,
        )
        yield from call(pb.ScoreBatchRequest(tasks=list(tasks)), timeout=self.timeout, metadata=self._metadata())

    def stats(self) -> pb.StatsReply:
        call = self.channel.unary_unary(
            STATS, request_serializer=pb.StatsRequest.SerializeToString, response_deserializer=pb.StatsReply.FromString
        )
        return call(pb.StatsRequest(), timeout=self.timeout, metadata=self._metadata())

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
