"""What the ingress sends a replica and what the replica streams back (plain, picklable values)."""

from __future__ import annotations

from dataclasses import dataclass

from sluicegate.gateway.cluster.routing import RouteKey

Headers = list[tuple[bytes, bytes]]  # ASGI's header list: lower-case names, raw bytes


@dataclass
class ForwardedRequest:
    """One HTTP request as the ingress received it, plus what the router places it by.

    Not frozen on purpose: the router, which runs in the ingress process and sees this very object,
    writes `routed_to`, so a request whose replica dies before answering is retried elsewhere."""

    method: str
    path: str
    query_string: bytes
    headers: Headers
    body: bytes
    key: RouteKey
    avoid: frozenset[str] = frozenset()  # replicas that already failed this request
    routed_to: str | None = None


@dataclass(frozen=True)
class ResponseStart:
    """The first item a replica yields; body chunks (bytes) follow."""

    status: int
    headers: Headers
    replica: str  # which replica answers (sent to the client as the x-sluicegate-replica header)
