"""The load generator: open and closed loops (virtual time), its HTTP client, and real local servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentfleet.loadtest._engine import (
    DROPPED,
    LoopStats,
    Result,
    call_target,
    generator_saturation,
    run_closed_loop,
    run_open_loop,
)
from agentfleet.loadtest._http import HttpClient, ProtocolError, ResponseParser
from agentfleet.testing import run_virtual
from tests.loadtest_servers import LocalServer

Record = list[tuple[float, Result]]


def _fixed(latency: float) -> Callable[[], Awaitable[Result]]:
    async def send() -> Result:
        await asyncio.sleep(latency)
        return Result(True, 200, None, latency, None, None, 13)

    return send


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class TestOpenLoop:
    def test_sends_at_intended_times_and_times_from_them(self) -> None:
        """Each arrival is sent at t0 + t; latency is measured from that intended start."""
        seen: Record = []
        starts: list[float] = []
        arrivals = [0.0, 0.1, 0.25, 0.25, 1.0]

        async def main() -> LoopStats:
            loop = asyncio.get_running_loop()
            t0 = loop.time()

            async def send() -> Result:
                starts.append(loop.time() - t0)
                await asyncio.sleep(0.05)
                return Result(True, 200, None, 0.0, 0.01, None, 1)

            return await run_open_loop(arrivals, send, on_result=lambda t, r: seen.append((t, r)))

        stats = run_virtual(main())
        assert starts == pytest.approx(arrivals)
        assert sorted(t for t, _ in seen) == arrivals
        assert all(r.latency == pytest.approx(0.05) and r.ttfb == pytest.approx(0.01) for _, r in seen)
        assert (stats.scheduled, stats.sent, stats.completed, stats.ok, stats.late, stats.dropped) == (5, 5, 5, 5, 0, 0)
        assert stats.duration == pytest.approx(1.05)
        assert stats.max_in_flight == 2
        assert not stats.saturated

    def test_future_returning_send(self) -> None:
        """A send that returns a future (the HTTP client's fast path) is timed the same way, without a task."""
        seen: Record = []

        async def main() -> LoopStats:
            loop = asyncio.get_running_loop()

            def send() -> asyncio.Future[Result]:
                future: asyncio.Future[Result] = loop.create_future()
                loop.call_later(0.2, future.set_result, Result(True, 200, None, 0.0, None, None, 0))
                return future

            return await run_open_loop([0.0, 0.5, 0.6], send, on_result=lambda t, r: seen.append((t, r)))

        stats = run_virtual(main())
        assert [t for t, _ in seen] == [0.0, 0.5, 0.6]
        assert [r.latency for _, r in seen] == pytest.approx([0.2, 0.2, 0.2])
        assert stats.max_in_flight == 2

    def test_blocked_generator_sends_late_and_counts_it(self) -> None:
        """When the loop is blocked past some arrivals, they go out late, counted, timed from their
        intended start, and the run is flagged as the generator's."""
        seen: dict[float, Result] = {}
        burned = [0.0]
        calls = [0]

        async def main() -> LoopStats:
            loop = asyncio.get_running_loop()

            def clock() -> float:
                return loop.time() + burned[0]

            async def send() -> Result:
                calls[0] += 1
                if calls[0] == 3:  # the third request blocks the event loop for 0.3 s
                    burned[0] += 0.3
                await asyncio.sleep(0.05)
                return Result(True, 200, None, 0.0, None, None, 0)

            arrivals = [round(0.1 * i, 10) for i in range(10)]
            return await run_open_loop(arrivals, send, clock=clock, on_result=lambda t, r: seen.__setitem__(t, r))

        stats = run_virtual(main())
        assert stats.late == 3  # 0.3, 0.4 and 0.5 were due while the loop was blocked
        assert stats.lateness_max == pytest.approx(0.3)
        assert seen[0.3].latency == pytest.approx(0.35)  # sent 0.3 s late, answered 0.05 s later
        assert seen[0.4].latency == pytest.approx(0.25)
        assert seen[0.6].latency == pytest.approx(0.05)  # back on schedule
        assert stats.saturated and stats.saturation is not None
        assert "lateness" in stats.saturation and "generator's, not the target's" in stats.saturation

    def test_drops_beyond_max_outstanding(self) -> None:
        """With max_outstanding in flight, further arrivals are dropped and reported, not delayed."""
        seen: Record = []

        async def main() -> LoopStats:
            return await run_open_loop([0.01 * i for i in range(10)], _fixed(1.0), max_outstanding=3,
                                       on_result=lambda t, r: seen.append((t, r)))

        stats = run_virtual(main())
        assert (stats.sent, stats.dropped, stats.completed, stats.max_in_flight) == (3, 7, 3, 3)
        assert len(seen) == 10
        dropped = [t for t, r in seen if r.error_kind == DROPPED]
        assert dropped == pytest.approx([0.01 * i for i in range(3, 10)])
        assert all(r.latency == pytest.approx(1.0) for _, r in seen if r.ok)
        assert stats.duration == pytest.approx(1.02)

    def test_failing_send_is_an_error(self) -> None:
        """An exception from send is a failed request, not a crashed run."""
        seen: Record = []

        async def boom() -> Result:
            await asyncio.sleep(0.01)
            raise ValueError("no")

        stats = run_virtual(run_open_loop([0.0, 0.1], boom, on_result=lambda t, r: seen.append((t, r))))
        assert (stats.completed, stats.errors, stats.ok) == (2, 2, 0)
        assert {r.error_kind for _, r in seen} == {"exception:ValueError"}
        assert all(r.latency == pytest.approx(0.01) for _, r in seen)

    def test_in_process_callable_target(self) -> None:
        """call_target wraps an async function: ok unless it raises (then the exception's name)."""
        flips = iter([True, False, True])

        async def workflow() -> str:
            await asyncio.sleep(0.2)
            if not next(flips):
                raise TimeoutError
            return "done"

        seen: Record = []
        stats = run_virtual(run_open_loop([0.0, 0.1, 0.2], call_target(workflow),
                                          on_result=lambda t, r: seen.append((t, r))))
        assert (stats.ok, stats.errors) == (2, 1)
        assert [r.error_kind for _, r in seen] == [None, "TimeoutError", None]
        assert [r.bytes for _, r in seen] == [4, 0, 4]
        assert all(r.latency == pytest.approx(0.2) for _, r in seen)


    def test_should_stop_ends_the_schedule(self) -> None:
        """should_stop ends the schedule early (an aborting threshold); requests in flight finish."""
        seen: Record = []

        async def main() -> LoopStats:
            return await run_open_loop([0.1 * i for i in range(100)], _fixed(0.05),
                                       on_result=lambda t, r: seen.append((t, r)),
                                       should_stop=lambda: len(seen) >= 5)

        stats = run_virtual(main())
        assert (stats.scheduled, stats.sent, stats.completed) == (5, 5, 5)
        assert stats.duration == pytest.approx(0.5)


class TestClosedLoop:
    def test_request_count_is_users_times_duration_over_latency(self) -> None:
        """N users with a fixed latency make about N * duration / latency requests, each timed from its send."""
        seen: Record = []
        stats = run_virtual(run_closed_loop(4, 10.0, _fixed(0.1), on_result=lambda t, r: seen.append((t, r))))
        assert 400 <= stats.completed <= 404
        assert stats.completed == len(seen) == stats.sent
        assert all(r.latency == pytest.approx(0.1) for _, r in seen)
        assert stats.max_in_flight == 4
        assert stats.duration == pytest.approx(10.0, abs=0.11)
        assert stats.lateness_max == pytest.approx(0.0, abs=1e-9)
        assert not stats.saturated

    def test_should_stop_ends_the_run(self) -> None:
        """should_stop, asked before each send, ends the run before its duration."""
        seen: Record = []
        stats = run_virtual(run_closed_loop(2, 10.0, _fixed(0.1), on_result=lambda t, r: seen.append((t, r)),
                                            should_stop=lambda: len(seen) >= 10))
        assert stats.completed in (10, 11)  # the other user may have sent once more before the 10th answer
        assert stats.duration <= 0.6 + 1e-9

    def test_think_time_spaces_requests(self) -> None:
        """Each user waits think_time between an answer and its next send."""
        stats = run_virtual(run_closed_loop(2, 10.0, _fixed(0.1), think_time=0.4))
        assert 40 <= stats.completed <= 42


class TestSaturation:
    def test_cpu_over_limit(self) -> None:
        """Over 90% of a core for long enough marks the figures as the generator's."""
        message = generator_saturation(cpu=1.9, wall=2.0, lateness_p99=0.001, sent=100)
        assert message is not None and "95% of a core" in message

    def test_short_runs_and_idle_runs_are_not_flagged(self) -> None:
        """CPU share is not judged under half a second; a quiet generator is fine."""
        assert generator_saturation(cpu=0.2, wall=0.2, lateness_p99=0.0, sent=10) is None
        assert generator_saturation(cpu=0.5, wall=2.0, lateness_p99=0.002, sent=10) is None

    def test_lateness_over_limit(self) -> None:
        """A p99 lateness over 10 ms is saturation even with CPU to spare."""
        message = generator_saturation(cpu=0.1, wall=2.0, lateness_p99=0.05, sent=10)
        assert message is not None and "50.0 ms" in message


class TestResponseParser:
    def test_content_length_in_pieces(self) -> None:
        """A Content-Length response fed byte by byte completes exactly at its last byte."""
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello"
        parser = ResponseParser()
        done = [parser.feed(raw[i:i + 1], float(i)) for i in range(len(raw))]
        assert done == [False] * (len(raw) - 1) + [True]
        assert (parser.status, parser.body_bytes, parser.keep_alive, parser.first_byte_at) == (200, 5, True, 0.0)

    def test_chunked_any_split(self) -> None:
        """A chunked body with extensions and trailers parses the same however it is split."""
        raw = (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n")
        for cut in range(1, len(raw)):
            parser = ResponseParser()
            assert not parser.feed(raw[:cut], 0.0)
            assert parser.feed(raw[cut:], 1.0)
            assert (parser.status, parser.body_bytes, parser.keep_alive) == (404, 12, False)

    def test_sse_tokens_timed(self) -> None:
        """In stream mode each SSE event gets its arrival time, even when split across reads."""
        parser = ResponseParser(stream=True)
        parser.feed(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n", 0.0)
        parser.feed(b"b\r\ndata: one\n\n\r\n", 1.0)
        parser.feed(b"b\r\ndata: two\n", 2.0)
        parser.feed(b"\n\r\n", 3.0)
        assert parser.feed(b"14\r\ndata: 3\r\n\r\ndata: 4\n\n\r\n0\r\n\r\n", 4.0)
        assert parser.token_times == [1.0, 3.0, 4.0, 4.0]

    def test_body_until_close_and_no_body(self) -> None:
        """No length means the body ends with the connection; 204 and HEAD have none."""
        parser = ResponseParser()
        assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\nabc", 0.0)
        assert parser.feed_eof() and parser.body_bytes == 3 and not parser.keep_alive
        assert ResponseParser().feed(b"HTTP/1.1 204 No Content\r\n\r\n", 0.0)
        assert ResponseParser(head_request=True).feed(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n", 0.0)
        continued = ResponseParser()
        assert continued.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", 0.0)
        assert continued.status == 201

    @pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab",
                                     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"])
    def test_protocol_errors(self, raw: bytes) -> None:
        """Garbage, too much body and bad chunk sizes are protocol errors."""
        with pytest.raises(ProtocolError):
            ResponseParser().feed(raw, 0.0)


def _run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


class TestHttpClient:
    def test_open_loop_against_local_server_reuses_connections(self) -> None:
        """Every request answered; keep-alive means a handful of connections for hundreds of requests."""
        seen: Record = []
        with LocalServer("trivial") as server:

            async def main() -> tuple[LoopStats, Any]:
                async with HttpClient(server.url, max_connections=50) as client:
                    stats = await run_open_loop([i / 1000 for i in range(500)], client.sender("GET", "/"),
                                                on_result=lambda t, r: seen.append((t, r)))
                    return stats, client.statistics()

            stats, client_stats = asyncio.run(main())
            assert server.requests == 500
            assert server.connections == client_stats.opened <= 25
        assert (stats.ok, stats.errors, stats.dropped) == (500, 0, 0)
        assert all(r.status == 200 and r.bytes == 13 and r.ttfb is not None and 0 < r.ttfb <= r.latency
                   for _, r in seen)
        assert client_stats.requests == 500 and client_stats.reused >= 500 - client_stats.opened

    def test_an_empty_path_is_the_base_url_itself(self) -> None:
        """A target URL's own path is requested as given: POST /v1/runs, not /v1/runs/ (a redirect)."""

        async def main() -> list[bytes]:
            client = HttpClient("http://127.0.0.1:9/v1/runs")
            root = HttpClient("http://127.0.0.1:9")
            return [client.encode("POST", ""), client.encode("GET", "/x"), root.encode("GET", "")]

        with_path, below, bare = asyncio.run(main())
        assert with_path.startswith(b"POST /v1/runs HTTP/1.1\r\n")
        assert below.startswith(b"GET /v1/runs/x HTTP/1.1\r\n")
        assert bare.startswith(b"GET / HTTP/1.1\r\n")

    def test_connection_close_and_bodies(self) -> None:
        """A POST with a body and ``connection: close`` works, one connection per request."""
        with LocalServer("trivial") as server:

            async def main() -> list[Result]:
                async with HttpClient(server.url + "/api") as client:
                    send = client.sender("POST", "/echo", headers={"Connection": "close"}, body='{"a": 1}')
                    return [await send() for _ in range(3)]

            results = asyncio.run(main())
            assert server.connections == 3
        assert [(r.ok, r.status, r.bytes) for r in results] == [(True, 200, 13)] * 3

    def test_connect_error_and_timeout(self) -> None:
        """A closed port is a connect error; a server slower than the timeout is a timeout."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]

        async def refused() -> Result:
            async with HttpClient(f"http://127.0.0.1:{port}") as client:
                return await client.request("GET", "/")

        assert asyncio.run(refused()).error_kind == "connect"
        with LocalServer("sse", tokens=2, gap=5.0) as server:

            async def slow() -> Result:
                async with HttpClient(server.url, timeout=0.2) as client:
                    return await client.request("GET", "/", stream=True)

            result = asyncio.run(slow())
        assert (result.ok, result.error_kind) == (False, "timeout")
        assert 0.2 <= result.latency < 1.0

    def test_pool_is_bounded(self) -> None:
        """More concurrent requests than max_connections wait for a connection instead of opening more."""
        with LocalServer("sse", tokens=1, gap=0.05) as server:

            async def main() -> tuple[list[Result], Any]:
                async with HttpClient(server.url, max_connections=2) as client:
                    results = await asyncio.gather(*(client.request() for _ in range(6)))
                    return list(results), client.statistics()

            results, stats = asyncio.run(main())
        assert all(r.ok for r in results)
        assert (stats.opened, stats.waited) == (2, 4)
        assert max(r.latency for r in results) >= 0.14  # the last pair waited for two turns


    def test_server_closing_kept_alive_connections(self) -> None:
        """A server that closes every connection after one answer (without saying so) costs retries
        or new connections, never a failed request."""

        async def main() -> tuple[list[Result], Any]:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                writer.close()
                await writer.wait_closed()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with server, HttpClient(f"http://127.0.0.1:{port}") as client:
                send = client.sender()
                results = [await send() for _ in range(20)]
                return results, client.statistics()

        results, stats = asyncio.run(main())
        assert all(r.ok and r.bytes == 2 for r in results)
        assert stats.opened == 20 and stats.requests == 20


class TestAgainstMisbehavingServers:
    def test_open_loop_sees_stalls_closed_loop_hides_them(self) -> None:
        """A server frozen 0.3 s in every 1.5 s: the open loop's p99 shows the freeze, the closed loop's does not."""
        open_lat: list[float] = []
        closed_lat: list[float] = []
        with LocalServer("stall", stall_every=1.5, stall_for=0.3) as server:

            async def main() -> tuple[LoopStats, LoopStats]:
                async with HttpClient(server.url, max_connections=200) as client:
                    send = client.sender()
                    opened = await run_open_loop([i / 200 for i in range(640)], send,
                                                 on_result=lambda t, r: open_lat.append(r.latency))
                    closed = await run_closed_loop(4, 3.2, send, on_result=lambda t, r: closed_lat.append(r.latency))
                    return opened, closed

            opened, closed = asyncio.run(main())
        assert opened.ok == 640 and closed.errors == 0
        assert _percentile(open_lat, 0.99) > 0.2
        assert sum(1 for x in open_lat if x > 0.05) > 640 * 0.1  # ~20% of arrivals fall in a freeze
        assert max(closed_lat) > 0.2  # the closed loop did meet the freeze ...
        assert _percentile(closed_lat, 0.99) < 0.1  # ... in too few samples to show at p99

    def test_sse_first_token_and_gaps(self) -> None:
        """Streaming: ttfb is the first token's arrival, itl the gaps between tokens."""
        seen: Record = []
        with LocalServer("sse", tokens=5, gap=0.05, first=0.1) as server:

            async def main() -> LoopStats:
                async with HttpClient(server.url) as client:
                    return await run_open_loop([0.0, 0.05], client.sender("GET", "/", stream=True),
                                               on_result=lambda t, r: seen.append((t, r)))

            stats = asyncio.run(main())
        assert stats.ok == 2
        for _, result in seen:
            assert result.ttfb is not None and 0.09 <= result.ttfb < 0.3
            assert result.itl is not None and len(result.itl) == 4
            assert all(0.03 <= gap < 0.15 for gap in result.itl)
            assert result.latency >= result.ttfb + 0.19
            assert result.bytes == 5 * len(b"data: tok0\n\n")


def test_lateness_is_kept_in_bounded_memory_with_exact_counts() -> None:
    from agentfleet.loadtest._engine import _Lateness

    late = _Lateness(late_after=0.005)
    values = [(i % 100) / 1000 for i in range(200_000)]  # 0..99 ms, 95 of every 100 above 5 ms
    for v in values:
        late.append(v)
    assert len(late._chunk) < _Lateness.CHUNK  # folded as it went: no list of every send
    count, p50, p99, worst, n_late = late.figures()
    assert count == 200_000 and worst == 0.099
    assert n_late == sum(1 for v in values if v > 0.005)
    assert abs(p50 - 0.049) < 0.001 and abs(p99 - 0.098) < 0.001
