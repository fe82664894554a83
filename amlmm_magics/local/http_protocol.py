"""The daemon's HTTP/1.1 protocol: uvicorn's httptools protocol, with request bodies handed
to the app without two more copies on the event loop.

Why: uvicorn appends each body chunk the parser gives it to a bytearray, and ``receive()``
copies that out again as bytes. That is two copies of every byte received, on the one
thread that receives everything; for a model upload to the embedded blob store it is the
busiest thread of the daemon. Measured on the 2-core VM this project is built on, 1 GiB
uploaded: the event loop spent 0.73 user CPU-s with uvicorn's protocol and 0.55 with this
one, and in three runs of 8-10 interleaved rounds the upload's median went from 1.66, 1.96
and 1.99 s to 1.41, 1.85 and 1.65 s.

Here a chunk that arrives while the app holds nothing unread is kept as it is: ``bytes()``
of a bytes object is the object itself, so the app gets the parser's chunk. Chunks that
pile up before the app reads them are joined as uvicorn joins them.

This replaces one method of uvicorn's, and only where uvicorn's method and the ``receive()``
that reads what it stores are the code it was written against (``replaces_uvicorn``);
with any other uvicorn the daemon serves with uvicorn's own protocol, as before.
"""

from __future__ import annotations

import inspect
import logging
import textwrap

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger(__name__)

# uvicorn's code this protocol was written against (0.54): what it replaces, and the reader
# of what that stores.
_UVICORN_ON_BODY = """\
def on_body(self, body: bytes) -> None:
    if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
        return
    self.cycle.body += body
    if len(self.cycle.body) > HIGH_WATER_LIMIT:
        self.flow.pause_reading()
    self.cycle.message_event.set()
"""
_UVICORN_RECEIVE_READS = (
    'message: HTTPRequestEvent = {"type": "http.request", "body": bytes(self.body), '
    '"more_body": self.more_body}\n'
    "        self.body = bytearray()\n"
)


class BodyChunksProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, keeping a request body chunk as the parser made it."""

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        # receive() resets cycle.body to an empty bytearray once the app has read it.
        cycle.body = cycle.body + body if cycle.body else body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


def replaces_uvicorn() -> bool:
    """Whether the installed uvicorn has the code BodyChunksProtocol was written against."""
    try:
        on_body = textwrap.dedent(inspect.getsource(HttpToolsProtocol.on_body))
        receive = inspect.getsource(RequestResponseCycle.receive)
    except (OSError, TypeError):  # no source installed
        return False
    return on_body == _UVICORN_ON_BODY and _UVICORN_RECEIVE_READS in receive


def http_protocol() -> type[HttpToolsProtocol] | str:
    """What the daemon's uvicorn ``Config(http=...)`` gets."""
    if replaces_uvicorn():
        return BodyChunksProtocol
    log.info("This uvicorn's request body handling is not the code BodyChunksProtocol was "
             "written against: serving with uvicorn's own protocol.")
    return "auto"
