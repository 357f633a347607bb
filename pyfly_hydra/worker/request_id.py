"""``server.request_id``: every request carries an ``X-Request-ID``, the client's when it is a sane one.

A proxy or the client may send one, and then logs across services share it; a missing one, or one that is
too long or holds anything but the characters ids are made of, is replaced by a new random one (a client
must not be able to write arbitrary text into every log line that names the id). The app sees it as a
request header and the client gets it back as a response header.
"""

from __future__ import annotations

import re
import uuid

HEADER = b"x-request-id"
WSGI_KEY = "HTTP_X_REQUEST_ID"
# Letters, digits and the punctuation UUIDs, ULIDs, base64 and trace ids use; 128 at most.
_VALID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def kept_or_new(incoming: bytes | None) -> tuple[bytes, bool]:
    """The request's id, and whether it is new (none came, or the one that came is refused)."""
    if incoming is not None and _VALID.fullmatch(incoming):
        return incoming, False
    return uuid.uuid4().hex.encode(), True


def asgi_request_id(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, list[tuple[bytes, bytes]] | None]:
    """The id of a request with these headers, and its headers with the id in (None: unchanged)."""
    incoming = next((value for name, value in headers if name.lower() == HEADER), None)
    request_id, new = kept_or_new(incoming)
    if not new:
        return request_id, None
    return request_id, [*((n, v) for n, v in headers if n.lower() != HEADER), (HEADER, request_id)]
