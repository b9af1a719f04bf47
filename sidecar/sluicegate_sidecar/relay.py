"""Streaming replies: relay upstream SSE to the client, honestly.

The client's response starts only once the upstream's first useful bytes are in (until then a
failure can still fall back). After that, a cut or stalled upstream ends the stream with an SSE
error event, never a clean end; whatever happens, what was streamed is charged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
import msgspec
from sluicegate_contract.schema import Timeouts
from starlette.responses import StreamingResponse

from .accounting import RequestContext, charge_for
from .budget import Reservation
from .catalog import Target
from .errors import sse_error
from .outcome import FailureClass
from .providers.base import Adapter, BadUpstreamResponse, Operation, StreamRelay
from .upstream import AttemptFailed

if TYPE_CHECKING:
    from .pipeline import Pipeline

_TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, OSError)


def _stream_error(op: Operation, message: str, code: str) -> bytes:
    if op == "messages":  # Anthropic-native clients read Anthropic's error event
        payload = msgspec.json.encode({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"
    return sse_error(message, code)


async def _first_bytes(relay: StreamRelay, iterator: AsyncIterator[bytes], seconds: float) -> bytes:
    async with asyncio.timeout(seconds):
        while True:
            out = relay.feed(await anext(iterator))
            if out:
                return out


async def stream_response(
    pipeline: Pipeline,
    ctx: RequestContext,
    adapter: Adapter,
    op: Operation,
    target: Target,
    request: dict[str, Any],
    response: httpx.Response,
    reservation: Reservation | None,
    plan: Any,
    started: float,
    timeouts: Timeouts,
) -> StreamingResponse | AttemptFailed:
    relay = adapter.relay(op, target.model, request)
    iterator = response.aiter_raw()
    deadline = started + timeouts.total_seconds
    try:
        first = await _first_bytes(relay, iterator, timeouts.first_byte_seconds)
    except (StopAsyncIteration, BadUpstreamResponse, TimeoutError, *_TRANSPORT_ERRORS) as exc:
        await response.aclose()
        kind = "timeout" if isinstance(exc, TimeoutError) else "bad_response"
        failure = AttemptFailed(kind, detail=f"stream failed before its first byte ({type(exc).__name__})")
        ctx.upstream_seconds += time.perf_counter() - started
        pipeline._failed(ctx, target, failure, reservation, plan, billed=True)
        return failure
    gw = pipeline.gw

    async def body() -> AsyncIterator[bytes]:
        status: int | str = "client_disconnect"
        gw.inflight += 1
        try:
            yield first
            while True:
                wait = min(timeouts.idle_seconds, deadline - time.perf_counter())
                if wait <= 0:
                    raise TimeoutError
                try:
                    async with asyncio.timeout(wait):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                out = relay.feed(chunk)
                if out:
                    yield out
            tail = relay.finish()
            if tail:
                yield tail
            if relay.completed:
                status = 200
            else:
                status = "upstream_stream_error"
                yield _stream_error(
                    op, "The upstream stream ended before it was complete.", "upstream_stream_error"
                )
        except TimeoutError:
            status = "upstream_stream_timeout"
            yield _stream_error(op, "The upstream stream stalled and was cut.", "upstream_stream_timeout")
        except (BadUpstreamResponse, *_TRANSPORT_ERRORS):
            status = "upstream_stream_error"
            yield _stream_error(op, "The upstream stream failed.", "upstream_stream_error")
        finally:
            gw.inflight -= 1
            ctx.upstream_seconds += time.perf_counter() - started
            _settle_stream(pipeline, ctx, target, relay, reservation, plan, status)
            gw.spawn(response.aclose())

    return StreamingResponse(body(), media_type="text/event-stream", headers=pipeline.headers(ctx))


def _settle_stream(
    pipeline: Pipeline,
    ctx: RequestContext,
    target: Target,
    relay: StreamRelay,
    reservation: Reservation | None,
    plan: Any,
    status: int | str,
) -> None:
    health = pipeline.gw.health
    now = time.monotonic()
    if status == 200:
        health.record_success(target.connection, target.model)
    elif status in ("upstream_stream_error", "upstream_stream_timeout"):
        klass: FailureClass = "timeout" if status == "upstream_stream_timeout" else "5xx"
        health.record_failure(target.connection, target.model, klass, now)
    else:
        health.release(target.connection, target.model)
    charge = charge_for(
        target.spec.price,
        relay.usage,
        reservation.amount_micro_usd if reservation is not None else 0,
        plan.prompt_tokens,
        relay.output_chars,
    )
    pipeline.accountant.settle(ctx, target, reservation, charge, status)
    pipeline.accountant.finish(ctx, status)
