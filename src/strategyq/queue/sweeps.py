"""The Redis transitions of a sweep split into chunks (see ``docs/sweeps.md``).

A worker that ran a sweep's plan queues its chunks and acknowledges the
sweep in one script (``sweep_fanout.lua``). Chunks are ordinary tasks for the
rest of the queue (fencing tokens, the reaper, dead letters), except that a
chunk of a cancelled or failed sweep is skipped (``chunk_claim.lua``), that a
finished chunk's result is counted into its sweep once (``chunk_done.lua``),
and that the run that completes the last chunk, or whose strategy fails,
writes the sweep's result (``sweep_finish.lua``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from strategyq.protocol.results import utc_now_iso
from strategyq.queue import keys
from strategyq.queue.transitions import TaskQueue, now_ms
from strategyq.queue.types import Claim, text


class ChunkVerdict(StrEnum):
    ASSEMBLE = "assemble"  # every chunk is in: this run writes the sweep's result
    COUNTED = "counted"  # counted (or already counted by an earlier run of this chunk)
    STALE = "stale"  # another run of this chunk holds its token
    OVER = "over"  # the sweep had ended (cancelled, failed): nothing counted


class SweepQueue:
    """A sweep's transitions, on the same client and lifetimes as its :class:`TaskQueue`."""

    def __init__(self, tasks: TaskQueue) -> None:
        self.tasks = tasks
        self.scripts = tasks.scripts
        self.ttl = tasks.result_ttl_s

    def fan_out(
        self,
        worker_id: str,
        sweep_id: str,
        token: str,
        raw: bytes,
        running: bytes,
        plan: bytes,
        total: int,
        chunks: Sequence[bytes],
    ) -> str:
        """Store the plan, queue the chunks, acknowledge the sweep: ``fanned_out``,
        ``stale`` or ``already``."""
        return text(
            self.scripts.sweep_fanout(
                keys=[
                    keys.result(sweep_id),
                    keys.token(sweep_id),
                    keys.processing(worker_id),
                    keys.sweep(sweep_id),
                    keys.sweep_chunks(sweep_id),
                    self.tasks.name,
                    keys.attempts(sweep_id),
                ],
                args=[token, running, self.ttl, raw, plan, total, len(chunks), *chunks],
            )
        )

    def claim_chunk(
        self, worker_id: str, chunk_id: str, sweep_id: str, running: bytes, cancelled: bytes
    ) -> Claim:
        """Start a run of a chunk unless its sweep has ended (then: skip, and ack it).

        The token is ``<n>/<worker id>`` as :meth:`TaskQueue.claim`'s; a chunk whose
        token a live worker other than ``worker_id`` holds is a ``duplicate``.
        """
        reply = self.scripts.chunk_claim(
            keys=[
                keys.result(chunk_id),
                keys.attempts(chunk_id),
                keys.token(chunk_id),
                keys.FENCE_COUNTER,
                keys.cancel(sweep_id),
                keys.result(sweep_id),
            ],
            args=[self.ttl, running, cancelled, worker_id, keys.PREFIX],
        )
        return Claim.from_reply(reply)

    def chunk_done(
        self,
        worker_id: str,
        chunk_id: str,
        sweep_id: str,
        index: int,
        combinations: int,
        token: str,
        raw: bytes,
        record: bytes,
        data: bytes,
    ) -> ChunkVerdict:
        """Count the chunk's result into its sweep (once, whatever the number of runs)."""
        reply = self.scripts.chunk_done(
            keys=[
                keys.result(chunk_id),
                keys.token(chunk_id),
                keys.processing(worker_id),
                keys.attempts(chunk_id),
                keys.sweep(sweep_id),
                keys.sweep_chunks(sweep_id),
                keys.result(sweep_id),
            ],
            args=[token, record, self.ttl, raw, index, data, combinations, utc_now_iso()],
        )
        return ChunkVerdict(text(reply))

    def read(self, sweep_id: str) -> tuple[Any, int, dict[Any, Any]]:
        """The sweep's plan (None once it ended), the combinations counted, and its chunks'
        results, read together."""
        pipe = self.tasks.client.pipeline(transaction=True)
        pipe.hmget(keys.sweep(sweep_id), ["plan", "done"])
        pipe.hgetall(keys.sweep_chunks(sweep_id))
        (plan, done), chunks = pipe.execute()
        return plan, int(text(done or 0)), chunks

    def finish(
        self,
        worker_id: str,
        chunk_id: str,
        sweep_id: str,
        token: str,
        raw: bytes,
        chunk_record: bytes,
        sweep_record: bytes,
        *,
        failed: bool,
    ) -> str:
        """Write the sweep's terminal result from a chunk's run: ``written``, ``already``
        or ``stale``. A failure also stops the sweep's other chunks."""
        return text(
            self.scripts.sweep_finish(
                keys=[
                    keys.result(sweep_id),
                    keys.done(sweep_id),
                    keys.sweep(sweep_id),
                    keys.sweep_chunks(sweep_id),
                    keys.result(chunk_id),
                    keys.token(chunk_id),
                    keys.processing(worker_id),
                    keys.attempts(chunk_id),
                    keys.cancel(sweep_id),
                    keys.RECENT,
                ],
                args=[
                    token,
                    sweep_record,
                    self.ttl,
                    raw,
                    self.tasks.done_ttl_s,
                    chunk_record,
                    "fail" if failed else "complete",
                    sweep_id,
                    now_ms(),
                    self.tasks.recent_max,
                ],
            )
        )
