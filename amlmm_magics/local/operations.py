"""Asynchronous operations (image builds, service deployments) of the embedded backend.

An operation is a row in the store (what ``GET .../operations/{id}`` answers) plus work run
on a small thread pool. Work raises :class:`ApiError` (or anything) to fail; the operation
then ends Failed with the error, and the work's own ``on_error`` marks its resource.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from amlmm_magics.local.errors import ApiError
from amlmm_magics.local.store import Store, new_id, now_iso

log = logging.getLogger("amlmm_magics.local.operations")

INTERRUPTED = (
    "The embedded backend stopped while this operation was running; nothing was left "
    "half-done. Run the operation again."
)


def error_body(exc: BaseException) -> dict[str, Any]:
    """The ErrorResponse an operation (and its resource) reports for a failure."""
    if isinstance(exc, ApiError):
        return exc.body()
    return {"code": "InternalError", "message": f"{type(exc).__name__}: {exc}",
            "statusCode": 500}


class Operations:
    def __init__(self, store: Store, workers: int = 4) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="amlmm-op")
        self.futures: dict[str, Future[None]] = {}

    def start(
        self,
        scope: str,
        operation_type: str,
        resource_location: str,
        work: Callable[[str], None],
        on_error: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Record a NotStarted operation and run ``work(operation_id)`` in the background."""
        body = {
            "id": new_id(),
            "operationType": operation_type,
            "state": "NotStarted",
            "createdTime": now_iso(),
            "resourceLocation": resource_location,
        }
        self.store.insert("operation", scope, body)
        self.futures[body["id"]] = self._pool.submit(self._run, body, work, on_error)
        return body

    def _run(self, body: dict[str, Any], work: Callable[[str], None],
             on_error: Callable[[dict[str, Any]], None]) -> None:
        op_id = body["id"]
        self._set(body, state="Running")
        try:
            work(op_id)
        except BaseException as exc:
            if not isinstance(exc, ApiError):
                log.error("operation %s failed unexpectedly:\n%s", op_id, traceback.format_exc())
            error = error_body(exc)
            try:
                on_error(error)
            finally:
                self._set(body, state="Failed", endTime=now_iso(), error=error)
            return
        finally:
            self.futures.pop(op_id, None)
        self._set(body, state="Succeeded", endTime=now_iso())

    def _set(self, body: dict[str, Any], **changes: Any) -> None:
        body.update(changes)
        self.store.update("operation", body["id"], body=body)

    def recover(self) -> int:
        """Fail the operations a previous daemon left running; answer how many."""
        stale = [row for row in self.store.all("operation")
                 if row.body.get("state") in ("NotStarted", "Running")]
        for row in stale:
            row.body.update(state="Failed", endTime=now_iso(),
                            error={"code": "Interrupted", "message": INTERRUPTED,
                                   "statusCode": 500})
            self.store.update("operation", row.id, body=row.body)
        return len(stale)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
