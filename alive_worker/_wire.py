"""Messages between the worker and its hook host: JSON, each after its length.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON (an
object).  JSON rather than pickle: the worker must never run code because of
what the host sends.  Both sides refuse a frame over :data:`MAX_MESSAGE`
with :class:`MessageTooLarge`, which names the limit.  Pure Python, no
PostgreSQL: the host imports it, and so do the unit tests.
"""

from __future__ import annotations

import json
import struct
from typing import Any

# A statement's rows travel in one message: 64 MB of text is more than a hook
# should move through the worker in a tick.
MAX_MESSAGE = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")

Message = dict[str, Any]


class MessageTooLarge(ValueError):
    """A message over MAX_MESSAGE, named with its size."""


class ConnectionClosed(EOFError):
    """The other side closed its end (or ended)."""


def encode(message: Message) -> bytes:
    """The frame for ``message``; MessageTooLarge if it is over the limit."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if len(body) > MAX_MESSAGE:
        raise MessageTooLarge(
            f"alive_worker hook host message of {len(body)} bytes is over the limit of {MAX_MESSAGE} bytes"
        )
    return _HEADER.pack(len(body)) + body


class Reader:
    """Splits a byte stream into messages; feed() what arrives, next() what is whole."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> Message | None:
        """The next whole message, or None until more bytes arrive."""
        if len(self._buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_MESSAGE:
            raise MessageTooLarge(
                f"alive_worker hook host message of {length} bytes is over the limit of {MAX_MESSAGE} bytes"
            )
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        message = json.loads(body.decode("utf-8", "surrogatepass"))
        if not isinstance(message, dict):
            raise ValueError("alive_worker hook host message is not a JSON object")
        return message


def send_all(sock: Any, message: Message) -> None:
    """Sends the whole frame on a blocking socket."""
    sock.sendall(encode(message))


def receive(sock: Any, reader: Reader) -> Message:
    """The next message from a blocking socket; ConnectionClosed at its end."""
    while True:
        message = reader.next()
        if message is not None:
            return message
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionClosed("alive_worker hook host connection closed")
        reader.feed(data)
