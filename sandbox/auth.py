"""Bearer tokens: who may call the service, and whose call it is (for fair scheduling)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from sandbox.config import ServiceConfig


class Tokens:
    """The bearer tokens the service accepts, and whose each one is.

    A named token (`ServiceConfig.tokens`) authenticates its holder and names it: the
    caller whose line of the fair queue its jobs wait in. The single unnamed token
    (`ServiceConfig.token`) only authenticates; its holders are told apart by connection.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self._entries = [(f"Bearer {secret}".encode(), name) for name, secret in config.tokens]
        if config.token:
            self._entries.append((f"Bearer {config.token}".encode(), None))

    def __bool__(self) -> bool:
        return bool(self._entries)

    def check(self, metadata: Any) -> tuple[bool, str | None]:
        """(authenticated, the token's name) for a call's invocation metadata."""
        for key, value in metadata or ():
            if key != "authorization":
                continue
            given = value.encode() if isinstance(value, str) else value
            matched, name = False, None
            for expected, owner in self._entries:  # every entry compared: the time says nothing about which
                if hmac.compare_digest(given, expected):
                    matched, name = True, name or owner  # a named token wins over the shared one
            if matched:
                return True, name
        return False, None


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Every call, health and reflection included, needs `authorization: Bearer <token>`."""

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        if self._tokens.check(details.invocation_metadata)[0]:
            return await continuation(details)
        return self._deny
