"""The frames between the worker and its hook host: whole messages out of any split, the size limit."""

from __future__ import annotations

import socket

import pytest

from alive_worker import _wire


def test_messages_come_out_whole_however_the_bytes_arrive() -> None:
    messages: list[_wire.Message] = [
        {"op": "call", "args": ["SELECT $1", ["é", None]]},
        {"op": "done"},
        {"op": "log", "message": ""},
    ]
    stream = b"".join(_wire.encode(message) for message in messages)
    reader = _wire.Reader()
    received = []
    for index in range(len(stream)):
        reader.feed(stream[index : index + 1])
        while (message := reader.next()) is not None:
            received.append(message)
    assert received == messages


def test_a_message_over_the_limit_is_refused_naming_its_size_and_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_wire, "MAX_MESSAGE", 100)
    with pytest.raises(_wire.MessageTooLarge, match=r"of 1\d\d bytes is over the limit of 100 bytes"):
        _wire.encode({"rows": ["x" * 100]})
    reader = _wire.Reader()
    reader.feed((1000).to_bytes(4, "big"))
    with pytest.raises(_wire.MessageTooLarge, match="1000 bytes is over the limit of 100 bytes"):
        reader.next()


def test_a_closed_connection_ends_receive() -> None:
    ours, theirs = socket.socketpair()
    _wire.send_all(theirs, {"op": "ready"})
    theirs.close()
    reader = _wire.Reader()
    assert _wire.receive(ours, reader) == {"op": "ready"}
    with pytest.raises(_wire.ConnectionClosed):
        _wire.receive(ours, reader)
    ours.close()


def test_something_else_than_an_object_is_refused() -> None:
    reader = _wire.Reader()
    body = b"[1, 2]"
    reader.feed(len(body).to_bytes(4, "big") + body)
    with pytest.raises(ValueError, match="not a JSON object"):
        reader.next()
