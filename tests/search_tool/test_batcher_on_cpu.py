"""The micro-batcher (masksearch.search_tool.batcher): merging, splitting, bounded queue, errors."""

from __future__ import annotations

import asyncio

import pytest

from masksearch.search_tool.batcher import MicroBatcher, QueueFull


def run(coro):
    return asyncio.run(coro)


class TestMicroBatcher:
    def test_concurrent_requests_are_merged(self, make_stub):
        stub = make_stub(delay_s=0.05)

        async def go():
            batcher = MicroBatcher(stub.search, max_batch_queries=64)
            batcher.start()
            results = await asyncio.gather(*(batcher.submit([f"q{i}"], 1 + i % 3) for i in range(20)))
            await batcher.stop()
            return batcher, results

        batcher, results = run(go())
        # The first call takes one request; the other 19 queue up meanwhile and go in one call.
        assert len(stub.calls) < 20
        assert batcher.metrics.largest_batch > 1
        for i, rows in enumerate(results):
            assert len(rows) == 1 and len(rows[0]) == 1 + i % 3  # each caller gets its own topk
            assert rows[0][0].id == f"q{i}-0"  # and its own query's hits

    def test_batch_size_cap(self, make_stub):
        stub = make_stub(delay_s=0.02)

        async def go():
            batcher = MicroBatcher(stub.search, max_batch_queries=4)
            batcher.start()
            await asyncio.gather(*(batcher.submit([f"q{i}", f"r{i}"], 1) for i in range(10)))
            await batcher.stop()

        run(go())
        assert max(len(queries) for queries, _ in stub.calls) <= 4

    def test_queue_full(self, make_stub):
        stub = make_stub(delay_s=0.2)

        async def go():
            batcher = MicroBatcher(stub.search, max_pending_queries=3)
            batcher.start()
            first = asyncio.ensure_future(batcher.submit(["a", "b"], 1))
            await asyncio.sleep(0)
            with pytest.raises(QueueFull):
                await batcher.submit(["c", "d"], 1)  # 2 + 2 > 3
            assert len(await first) == 2
            assert batcher.pending_queries == 0
            assert batcher.metrics.rejected_full == 1
            await batcher.stop()

        run(go())

    def test_retriever_error_reaches_every_caller(self, make_stub):
        stub = make_stub(fail=True)

        async def go():
            batcher = MicroBatcher(stub.search)
            batcher.start()
            outcomes = await asyncio.gather(
                batcher.submit(["a"], 1), batcher.submit(["b"], 1), return_exceptions=True
            )
            await batcher.stop()
            return batcher, outcomes

        batcher, outcomes = run(go())
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert batcher.metrics.errors >= 1 and batcher.pending_queries == 0

    def test_empty_submit(self, make_stub):
        stub = make_stub()

        async def go():
            batcher = MicroBatcher(stub.search)
            batcher.start()
            out = await batcher.submit([], 3)
            await batcher.stop()
            return out

        assert run(go()) == [] and stub.calls == []
