"""The audit sinks' parts: the syslog frame, the spool, the senders and the dispatcher.

Frames are read back with the independent RFC 5424 / RFC 6587 parser in
``tests.sink_receivers``; the webhook and syslog senders talk to real local
servers.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dbward.audit.chain import GENESIS, ChainRecord, event_line, link
from dbward.audit.events import AuditEvent, EventKind
from dbward.audit.export import record_dict
from dbward.audit.sinks import spool as spool_module
from dbward.audit.sinks.dispatch import Sink
from dbward.audit.sinks.formats import spool_line, syslog_frame
from dbward.audit.sinks.senders import DeliveryError, SyslogSender, WebhookSender
from dbward.audit.sinks.spool import Spool
from tests.conftest import free_port
from tests.integration.throwaway_pg import CertAuthority
from tests.sink_receivers import (
    SyslogReceiver,
    WebhookReceiver,
    parse_syslog,
    read_frames,
    signature_valid,
    wait_until,
)

CHAIN = "unit-0"
SECRET = b"webhook shared secret"


def _records(count: int, *, first: int = 1, **data: Any) -> list[ChainRecord]:
    """Chained statement records ``first``..``first + count - 1``."""
    previous = GENESIS
    records = []
    for seq in range(first, first + count):
        event = AuditEvent(
            EventKind.STATEMENT,
            "s1",
            identity="dev@example.com",
            identity_kind="human",
            target="app",
            source="127.0.0.1:5000",
            data={"statement": f"SELECT {seq}", "decision": "allow", **data},
        )
        line = event_line(CHAIN, seq, event)
        previous = link(previous, line.encode())
        records.append(ChainRecord(CHAIN, seq, previous.hex(), line))
    return records


def _item(record: ChainRecord) -> dict[str, Any]:
    return record_dict(record.stored(), record.hash)


def _line(seq: int, pad: int = 20) -> bytes:
    return json.dumps({"chain": CHAIN, "seq": seq, "pad": "x" * pad}).encode()


def _seqs(lines: list[bytes]) -> list[int]:
    return [json.loads(line)["seq"] for line in lines]


# ------------------------------------------------------------------------------------------
# The syslog frame
# ------------------------------------------------------------------------------------------


def test_syslog_frame_is_an_octet_counted_rfc5424_message_carrying_the_record() -> None:
    (record,) = _records(1, statement="SELECT 'café \"q\" \\ ]' -- ✓ 🙂")
    item = _item(record)
    frame = syslog_frame(item, "db-host.example")

    frames, rest = read_frames(frame)
    assert rest == b""
    assert len(frames) == 1  # the octet count is the message's length in bytes, not chars
    message = parse_syslog(frames[0])
    assert message.version == 1
    assert (message.facility, message.severity) == (13, 6)
    assert message.hostname == "db-host.example"
    assert message.app == "dbward"
    assert message.procid == str(os.getpid())
    assert message.msgid == "statement"
    assert message.timestamp.endswith("Z")
    assert message.time.utcoffset() == datetime.timedelta(0)
    assert abs(message.time.timestamp() - item["ts"]) < 1e-6
    assert message.sd == {
        "dbward@32473": {"chain": CHAIN, "seq": str(record.seq), "hash": record.hash}
    }
    assert message.body() == item


def test_syslog_frame_time_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/St_Johns")  # UTC-03:30: a shift would show
    time.tzset()
    try:
        (record,) = _records(1)
        item = {**_item(record), "ts": 1767225600.5}  # 2026-01-01 00:00:00.5 UTC
        message = parse_syslog(read_frames(syslog_frame(item, "h"))[0][0])
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert message.timestamp == "2026-01-01T00:00:00.500000Z"


def test_syslog_frame_escapes_quote_backslash_and_bracket_in_structured_data() -> None:
    (record,) = _records(1)
    odd = 'we"ird\\cha]in [x]'
    item = {**_item(record), "chain": odd, "hash": 'h"]\\'}
    message = parse_syslog(read_frames(syslog_frame(item, "h"))[0][0])
    assert message.sd["dbward@32473"] == {"chain": odd, "seq": "1", "hash": 'h"]\\'}
    assert message.body() == item


def test_syslog_frame_header_fields_stay_printable_ascii() -> None:
    (record,) = _records(1)
    item = {**_item(record), "kind": "odd kind\twith spaces and a very long name beyond 32"}
    message = parse_syslog(read_frames(syslog_frame(item, "my host ünïcode"))[0][0])
    assert len(message.msgid) <= 32
    assert " " not in message.hostname
    assert message.body() == item


@pytest.mark.parametrize(
    ("kind", "data", "severity"),
    [
        ("statement", {"decision": "allow", "rows": 1}, 6),
        ("connection.start", {}, 6),
        ("connection.end", {}, 6),
        ("statement", {"decision": "deny"}, 4),
        ("statement", {"decision": "deny", "sqlstate": "42501"}, 4),
        ("statement", {"decision": "review"}, 4),
        ("login.failed", {"sqlstate": "28P01"}, 4),
        ("statement", {"decision": "allow", "sqlstate": "42P01"}, 5),
    ],
)
def test_syslog_severity(kind: str, data: dict[str, Any], severity: int) -> None:
    (record,) = _records(1)
    item = {**_item(record), "kind": kind, "data": data}
    message = parse_syslog(read_frames(syslog_frame(item, "h"))[0][0])
    assert message.pri == 13 * 8 + severity
    assert message.msgid == kind


def test_syslog_frames_concatenated_split_back_in_order() -> None:
    records = _records(5, statement="multi\nline ✓")
    stream = b"".join(syslog_frame(_item(r), "h") for r in records)
    frames, rest = read_frames(stream[:-3])  # a frame cut short stays for later
    assert len(frames) == 4
    frames, rest = read_frames(rest + stream[-3:])
    assert rest == b""
    assert parse_syslog(frames[0]).body() == _item(records[4])


def test_spool_line_is_compact_utf8_json() -> None:
    assert spool_line({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


# ------------------------------------------------------------------------------------------
# The spool
# ------------------------------------------------------------------------------------------


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of about two lines each."""
    monkeypatch.setattr(spool_module, "_SEGMENT_BYTES", 64)


def _segment_files(directory: Path) -> list[str]:
    return sorted((p.name for p in directory.glob("spool-*.jsonl")), key=lambda n: int(n[6:-6]))


@pytest.mark.usefixtures("small_segments")
def test_spool_reads_and_advances_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.new
    for seq in range(1, 11):
        spool.append([_line(seq)])
    assert len(_segment_files(spool.directory)) == 5

    lines, cursor = spool.read(3)
    assert _seqs(lines) == [1, 2, 3]
    assert _seqs(spool.read(3)[0]) == [1, 2, 3]  # not advanced: read again
    spool.advance(cursor)
    assert _segment_files(spool.directory) == [f"spool-{n}.jsonl" for n in (2, 3, 4, 5)]

    lines, cursor = spool.read(100)
    assert _seqs(lines) == list(range(4, 11))
    spool.advance(cursor)
    assert spool.read(100)[0] == []
    assert not spool.pending()
    assert _segment_files(spool.directory) == ["spool-5.jsonl"]

    spool.append([_line(11), _line(12)])
    assert spool.pending()
    assert _seqs(spool.read(100)[0]) == [11, 12]


@pytest.mark.usefixtures("small_segments")
def test_spool_cursor_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for seq in range(1, 8):
        spool.append([_line(seq)])
    spool.advance(spool.read(4)[1])

    reopened = Spool(tmp_path / "spool")
    assert not reopened.new
    assert reopened.last_line() == json.loads(_line(7))
    reopened.append([_line(8)])  # after the last segment, not over the first
    assert _seqs(reopened.read(100)[0]) == [5, 6, 7, 8]


def test_spool_with_an_unreadable_cursor_starts_again_from_its_first_segment(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([_line(1), _line(2)])
    spool.advance(spool.read(1)[1])
    (spool.directory / "cursor").write_text("garbage\n")
    assert _seqs(Spool(tmp_path / "spool").read(100)[0]) == [1, 2]  # at least once


def test_spool_does_not_read_a_torn_last_line_until_it_is_complete(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([_line(1), _line(2)])
    segment = spool.directory / "spool-1.jsonl"
    third = _line(3)
    with segment.open("ab") as out:
        out.write(third[:10])  # a line being written

    lines, cursor = spool.read(100)
    assert _seqs(lines) == [1, 2]
    spool.advance(cursor)
    assert spool.read(100)[0] == []
    assert not spool.pending()

    with segment.open("ab") as out:
        out.write(third[10:] + b"\n")
    assert spool.read(100)[0] == [third]


def test_spool_last_line_after_reopening_skips_a_torn_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.last_line() is None
    spool.append([_line(1), _line(2)])
    with (spool.directory / "spool-1.jsonl").open("ab") as out:
        out.write(_line(3)[:15])  # a crash mid-write
    assert Spool(tmp_path / "spool").last_line() == json.loads(_line(2))


def test_spool_does_not_glue_a_record_to_a_torn_line_left_by_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([_line(1)])
    with (spool.directory / "spool-1.jsonl").open("ab") as out:
        out.write(_line(2)[:15])  # the crash

    reopened = Spool(tmp_path / "spool")
    reopened.append([_line(2), _line(3)])  # the writer spools seq 2 again after a restart
    lines, _ = reopened.read(100)
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]


def test_spool_wait_wakes_up_on_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    threading.Timer(0.1, spool.append, args=([_line(1)],)).start()
    started = time.monotonic()
    spool.wait(5)
    assert time.monotonic() - started < 2


# ------------------------------------------------------------------------------------------
# The webhook sender
# ------------------------------------------------------------------------------------------


@pytest.fixture
def webhook() -> Any:
    receiver = WebhookReceiver(SECRET).start()
    yield receiver
    receiver.stop()


def test_webhook_posts_signed_batches(webhook: WebhookReceiver) -> None:
    records = _records(3)
    lines = [spool_line(_item(r)) for r in records]
    before = int(time.time())
    WebhookSender(webhook.url, SECRET, timeout=2).send(lines)

    (post,) = webhook.posts
    assert post.path == "/audit"
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.body) == {"source": "dbward", "records": [_item(r) for r in records]}
    assert before - 1 <= int(post.headers["X-Dbward-Timestamp"]) <= time.time() + 1
    assert post.signed
    assert signature_valid(SECRET, post.headers, post.body)
    assert not signature_valid(b"another secret", post.headers, post.body)
    assert not signature_valid(SECRET, post.headers, post.body + b" ")
    stale = {**post.headers, "X-Dbward-Timestamp": str(int(post.headers["X-Dbward-Timestamp"]) - 1)}
    assert not signature_valid(SECRET, stale, post.body)  # the timestamp is signed too


@pytest.mark.parametrize("status", [200, 202, 204])
def test_webhook_2xx_delivers(webhook: WebhookReceiver, status: int) -> None:
    webhook.answer = lambda _: status
    WebhookSender(webhook.url, SECRET, timeout=2).send([_line(1)])
    assert len(webhook.posts) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
def test_webhook_error_answer_raises(webhook: WebhookReceiver, status: int) -> None:
    webhook.answer = lambda _: status
    with pytest.raises(DeliveryError, match=f"HTTP {status}"):
        WebhookSender(webhook.url, SECRET, timeout=2).send([_line(1)])


@pytest.mark.parametrize("status", [301, 302, 303])
def test_webhook_redirect_is_not_a_delivery(webhook: WebhookReceiver, status: int) -> None:
    webhook.answer = lambda _: status
    sender = WebhookSender(webhook.url, SECRET, timeout=2)
    try:
        sender.send([_line(1)])
    except DeliveryError:
        pass
    else:
        assert webhook.gets == ["/redirected"]  # what happened instead: a GET, no records
        pytest.fail(f"HTTP {status} counted as delivered")
    assert len(webhook.posts) == 1


def test_webhook_refused_connection_raises() -> None:
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/audit", SECRET, timeout=2)
    with pytest.raises(DeliveryError, match="cannot reach"):
        sender.send([_line(1)])


def test_webhook_that_never_answers_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        sender = WebhookSender(f"http://127.0.0.1:{silent.getsockname()[1]}/", SECRET, timeout=0.3)
        started = time.monotonic()
        with pytest.raises((DeliveryError, OSError)):
            sender.send([_line(1)])
    assert time.monotonic() - started < 3


# ------------------------------------------------------------------------------------------
# The syslog sender
# ------------------------------------------------------------------------------------------


def test_syslog_sender_reconnects_after_the_receiver_went_away() -> None:
    records = _records(5)
    lines = [spool_line(_item(r)) for r in records]
    receiver = SyslogReceiver().start()
    sender = SyslogSender("127.0.0.1", receiver.port, timeout=2)
    try:
        sender.send(lines[:2])
        sender.send(lines[2:3])
        wait_until(lambda: len(receiver.frames) == 3, what="3 frames")
        assert {f.connection for f in receiver.frames} == {1}
        assert [f.record for f in receiver.frames] == [_item(r) for r in records[:3]]
        receiver.stop()
        time.sleep(0.05)  # the close reaches the sender

        with pytest.raises(ConnectionRefusedError):
            sender.send(lines[3:])  # nobody listens
        again = SyslogReceiver(port=receiver.port).start()
        try:
            sender.send(lines[3:])
            # The frames the first receiver may not have read come again, then the new ones.
            wait_until(lambda: len(again.frames) == 5, what="5 frames")
            assert [f.key for f in again.frames] == [(CHAIN, seq) for seq in range(1, 6)]
            assert again.errors == []
        finally:
            again.stop()
    finally:
        sender.close()
        receiver.stop()
    assert receiver.errors == []


@pytest.fixture(scope="module")
def tls_receiver_context(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    directory = tmp_path_factory.mktemp("syslog-tls")
    ca = CertAuthority.create(directory, "dbward syslog test CA")
    cert, key = ca.issue(directory, "syslog", dns=["localhost"], ips=["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return ca.ca_file, context


def test_syslog_sender_over_tls_sends_several_batches_on_one_connection(
    tls_receiver_context: tuple[Path, Any],
) -> None:
    ca_file, context = tls_receiver_context
    receiver = SyslogReceiver(tls=context).start()
    sender = SyslogSender("127.0.0.1", receiver.port, tls=True, ca_file=ca_file, timeout=2)
    lines = [spool_line(_item(r)) for r in _records(3)]
    try:
        sender.send(lines[:1])
        wait_until(lambda: len(receiver.frames) == 1, what="the first frame")
        time.sleep(0.1)  # the server's session tickets arrive
        sender.send(lines[1:])
        wait_until(lambda: len(receiver.frames) == 3, what="3 frames")
    finally:
        sender.close()
        receiver.stop()
    assert [f.key[1] for f in receiver.frames] == [1, 2, 3]


def test_syslog_sender_over_tls_refuses_a_certificate_of_another_ca(
    tls_receiver_context: tuple[Path, Any], tmp_path: Path
) -> None:
    _, context = tls_receiver_context
    other = CertAuthority.create(tmp_path, "another CA")
    receiver = SyslogReceiver(tls=context).start()
    sender = SyslogSender("127.0.0.1", receiver.port, tls=True, ca_file=other.ca_file)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            sender.send([spool_line(_item(_records(1)[0]))])
    finally:
        sender.close()
        receiver.stop()
    assert receiver.frames == []


# ------------------------------------------------------------------------------------------
# The dispatcher
# ------------------------------------------------------------------------------------------


class FakeSender:
    """Records each delivered batch; fails the first ``failures`` sends."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[list[int]] = []
        self.attempts: list[float] = []

    def send(self, lines: list[bytes]) -> None:
        self.attempts.append(time.monotonic())
        if self.failures:
            self.failures -= 1
            raise OSError("the receiver is down")
        self.batches.append(_seqs(lines))

    def delivered(self) -> list[int]:
        return [seq for batch in self.batches for seq in batch]

    def close(self) -> None:
        pass


def test_sink_delivers_in_order_in_batches_and_retries_with_a_growing_pause(
    tmp_path: Path,
) -> None:
    sender = FakeSender(failures=3)
    sink = Sink("t", sender, tmp_path / "spool", batch=3)
    records = _records(8)
    sink.start(CHAIN, 0, [])
    sink.offer(records[:5])
    sink.offer(records[3:8])  # offered again: spooled once
    try:
        wait_until(lambda: len(sender.delivered()) >= 8, what="8 records")
    finally:
        sink.close()
    assert sender.delivered() == list(range(1, 9))
    assert max(len(batch) for batch in sender.batches) == 3
    assert sink.failures == 3
    assert sink.last_error is None
    pauses = [b - a for a, b in zip(sender.attempts, sender.attempts[1:4], strict=False)]
    assert pauses[0] < pauses[1] < pauses[2]


def test_new_sink_starts_at_the_chains_head(tmp_path: Path) -> None:
    sender = FakeSender()
    sink = Sink("t", sender, tmp_path / "spool")
    records = _records(7)
    sink.start(CHAIN, 5, records[:5])  # history before the sink existed is not sent
    sink.offer(records)
    try:
        wait_until(lambda: sender.delivered(), what="a delivery")
    finally:
        sink.close()
    assert sender.delivered() == [6, 7]


def test_sink_delivers_after_a_restart_what_it_spooled_before(tmp_path: Path) -> None:
    records = _records(6)
    down = FakeSender(failures=1_000)
    first = Sink("t", down, tmp_path / "spool")
    first.start(CHAIN, 0, [])
    first.offer(records[:4])
    wait_until(lambda: down.attempts, what="a failed attempt")
    started = time.monotonic()
    first.close(drain=5)
    assert time.monotonic() - started < 1  # no drain while the receiver is down

    up = FakeSender()
    second = Sink("t", up, tmp_path / "spool")
    assert second.spooled(CHAIN) == 4
    # the writer passes what the store holds after what was spooled
    second.start(CHAIN, 6, [r for r in records if r.seq > second.spooled(CHAIN)])
    try:
        wait_until(lambda: len(up.delivered()) >= 6, what="6 records")
    finally:
        second.close()
    assert up.delivered() == [1, 2, 3, 4, 5, 6]


def test_sink_close_delivers_what_is_spooled(tmp_path: Path) -> None:
    sender = FakeSender()
    sink = Sink("t", sender, tmp_path / "spool", batch=2)
    sink.start(CHAIN, 0, [])
    sink.offer(_records(5))
    sink.close()
    assert sender.delivered() == [1, 2, 3, 4, 5]


def test_sink_keeps_records_it_could_not_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = FakeSender()
    sink = Sink("t", sender, tmp_path / "spool")
    sink.start(CHAIN, 0, [])
    records = _records(5)
    append = sink.spool.append
    calls = []

    def full_disk_once(lines: list[bytes]) -> None:
        calls.append(len(lines))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        append(lines)

    monkeypatch.setattr(sink.spool, "append", full_disk_once)
    sink.offer(records[:3])
    sink.offer(records[3:])
    try:
        wait_until(lambda: sender.delivered(), what="a delivery")
        time.sleep(0.2)
    finally:
        sink.close()
    assert sender.delivered() == [1, 2, 3, 4, 5]
