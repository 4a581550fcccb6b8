"""Wire conformance tests: the Python client against a live pike-server.

Run by `.ci/conformance.sh`, which builds and starts the server on a
temporary configuration and passes it in the environment:

  PIKE_CONF_TCP, PIKE_CONF_HTTP   "127.0.0.1:port" of the plain TCP and HTTP listeners
  PIKE_CONF_TLS, PIKE_CONF_TLS_CA "127.0.0.1:port" of the TLS listener, its certificate (PEM)
  PIKE_CONF_APP, PIKE_CONF_API_KEY, PIKE_CONF_SECRET   the app, its API key and token secret
  PIKE_CONF_BIZ                   the business whose uplink webhook is the test backend
  PIKE_CONF_QUIET_BIZ             a business without uplink webhooks
  PIKE_CONF_WEBHOOK_PORT          the port the configuration points that webhook at
  PIKE_CONF_HEARTBEAT_SECS        heartbeat interval = timeout configured (seconds)
  PIKE_CONF_LOGIN_TIMEOUT_SECS    limits.login_timeout_secs
  PIKE_CONF_UPLINK_WINDOW         limits.uplink_window
  PIKE_CONF_SERVER_PID            the server's pid: the go-away test sends it SIGTERM
  PIKE_CONF_SIGTERM_MARKER        a file the go-away test creates once it did

The tests run in the order listed in SUITE (go-away last: it stops the
server). Each test uses fresh aliases and device ids, so they do not share
state through the server.
"""

import os
import signal
import sys
import time
import unittest
import uuid

from backend import Backend
from pike_client import (
    CLOSE,
    DOWNLINK,
    DOWNLINK_ACK,
    ERROR,
    GO_AWAY,
    OK,
    ROOM_BATCH,
    ROOM_JOIN,
    ROOM_PULL,
    UPLINK,
    UPLINK_ACK,
    ConnectionClosed,
    HttpApi,
    PikeConnection,
    ch,
    mint_credential,
    tn,
)

ENV = os.environ
TCP_HOST, TCP_PORT = ENV["PIKE_CONF_TCP"].rsplit(":", 1)
TLS_HOST, TLS_PORT = ENV["PIKE_CONF_TLS"].rsplit(":", 1)
TLS_CA = ENV["PIKE_CONF_TLS_CA"]
APP = ENV["PIKE_CONF_APP"]
SECRET = ENV["PIKE_CONF_SECRET"]
BIZ = ENV["PIKE_CONF_BIZ"]
QUIET_BIZ = ENV["PIKE_CONF_QUIET_BIZ"]
HEARTBEAT_SECS = int(ENV["PIKE_CONF_HEARTBEAT_SECS"])
LOGIN_TIMEOUT_SECS = int(ENV["PIKE_CONF_LOGIN_TIMEOUT_SECS"])
UPLINK_WINDOW = int(ENV["PIKE_CONF_UPLINK_WINDOW"])
API = HttpApi(ENV["PIKE_CONF_HTTP"], ENV["PIKE_CONF_API_KEY"])
# gateway.md, "Credential expiry": expires_at_ms is exp plus 30 s.
EXPIRY_LEEWAY_SECS = 30
# A bounded quiet period: long enough for a frame the server would still
# send after what the test waited for (loopback, debug build).
QUIET_SECS = 1.0
# Most time any one awaited frame may take.
WAIT_SECS = 5.0

BACKEND = None
# What the tests observed beyond pass/fail, printed at the end.
OBSERVED = {
    "room offsets received twice": 0,
    "server pings": 0,
    "frames before a LOGIN_RESULT": 0,
}


def setUpModule():
    global BACKEND
    BACKEND = Backend(int(ENV["PIKE_CONF_WEBHOOK_PORT"]))


def tearDownModule():
    BACKEND.stop()


def fresh(kind):
    """A name no other test uses."""
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def credential(alias, **kw):
    return mint_credential(SECRET, APP, BIZ, alias, **kw)


class PikeTest(unittest.TestCase):
    """Connections opened through `connect` are closed after the test."""

    def setUp(self):
        self.conns = []

    def tearDown(self):
        BACKEND.release_all()
        for conn in self.conns:
            OBSERVED["server pings"] += conn.server_pings
            OBSERVED["frames before a LOGIN_RESULT"] += conn.early_frames
            conn.close()

    def connect(self, device):
        conn = PikeConnection(TCP_HOST, int(TCP_PORT), timeout=WAIT_SECS)
        self.conns.append(conn)
        conn.hello(APP, device)
        return conn

    def login(self, device, alias, **kw):
        """A connection of `device` logged in as `alias` on stream 0."""
        conn = self.connect(device)
        result = conn.login(0, BIZ, alias, credential(alias), **kw)
        self.assertEqual(result.code, OK, result.message)
        return conn, result

    def expect_downlinks(self, conn, seqs):
        """Exactly these reliable seqs arrive, in order, then nothing more
        within a quiet period."""
        got = [conn.wait_for(DOWNLINK).seq for _ in seqs]
        self.assertEqual(got, list(seqs))
        self.assertEqual(conn.frames_within(QUIET_SECS), [])


class T1Handshake(PikeTest):
    def test_hello_fields(self):
        conn = PikeConnection(TCP_HOST, int(TCP_PORT))
        self.conns.append(conn)
        before_ms = time.time() * 1000
        hello = conn.hello(APP, fresh("dev"))
        self.assertEqual(hello.version, 1)
        self.assertRegex(hello.connection_token, r"^[0-9a-f]{32}$")
        self.assertEqual(hello.heartbeat_interval_ms, HEARTBEAT_SECS * 1000)
        self.assertEqual(hello.heartbeat_timeout_ms, HEARTBEAT_SECS * 1000)
        self.assertLess(abs(hello.server_time_ms - before_ms), 60_000)
        self.assertEqual(hello.compression, tn.COMPRESSION_NONE)  # none offered
        self.assertEqual(hello.max_frame_length, 1 << 20)  # the default
        self.assertLessEqual(hello.reconnect.min_delay_ms, hello.reconnect.max_delay_ms)
        OBSERVED["hello resume_token bytes"] = len(hello.resume_token)
        OBSERVED["hello reconnect advice ms"] = (
            hello.reconnect.min_delay_ms,
            hello.reconnect.max_delay_ms,
        )

    def test_tls_hello_login_and_downlink(self):
        conn = PikeConnection(TLS_HOST, int(TLS_PORT), timeout=WAIT_SECS, tls_ca=TLS_CA)
        self.conns.append(conn)
        self.assertEqual(conn.hello(APP, fresh("dev")).version, 1)
        alias = fresh("u")
        self.assertEqual(conn.login(0, BIZ, alias, credential(alias)).code, OK)
        API.push(BIZ, alias, "over tls")
        message = conn.wait_for(DOWNLINK)
        self.assertEqual((message.seq, message.payload), (1, b"over tls"))

    def test_login_result(self):
        alias, now = fresh("u"), int(time.time())
        conn = self.connect(fresh("dev"))
        result = conn.login(0, BIZ, alias, credential(alias, now=now, ttl_secs=600))
        self.assertEqual(result.code, OK, result.message)
        self.assertEqual(result.stream, 0)
        self.assertNotEqual(result.route_id, "")
        OBSERVED["route id of the only webhook"] = result.route_id
        self.assertEqual(result.uplink_window, UPLINK_WINDOW)
        self.assertNotEqual(result.epoch, 0)
        self.assertEqual(result.last_seq, 0)  # a new alias
        self.assertEqual(result.expires_at_ms, (now + 600 + EXPIRY_LEEWAY_SECS) * 1000)
        # A second business login on the same connection gets its own stream.
        other = fresh("u")
        second = conn.login(1, BIZ, other, credential(other))
        self.assertEqual((second.stream, second.code), (1, OK), second.message)

    def test_bad_credential_is_auth_failed(self):
        alias = fresh("u")
        conn = self.connect(fresh("dev"))
        forged = mint_credential("not-the-secret-0123456789", APP, BIZ, alias)
        result = conn.login(0, BIZ, alias, forged)
        self.assertEqual(result.code, tn.ERROR_CODE_AUTH_FAILED)
        conn.sync()  # the connection stays up

    def test_expiry_leeway_is_30_seconds(self):
        now = int(time.time())
        conn = self.connect(fresh("dev"))
        # exp 15 s ago: still inside the leeway.
        alias = fresh("u")
        late = credential(alias, now=now - 600, ttl_secs=600 - 15)
        result = conn.login(0, BIZ, alias, late)
        self.assertEqual(result.code, OK, result.message)
        self.assertEqual(result.expires_at_ms, (now - 15 + EXPIRY_LEEWAY_SECS) * 1000)
        # exp 45 s ago: past it.
        alias = fresh("u")
        expired = credential(alias, now=now - 600, ttl_secs=600 - 45)
        result = conn.login(1, BIZ, alias, expired)
        self.assertEqual(result.code, tn.ERROR_CODE_TOKEN_EXPIRED, result.message)

    def test_unknown_app_is_closed(self):
        conn = PikeConnection(TCP_HOST, int(TCP_PORT))
        self.conns.append(conn)
        with self.assertRaisesRegex(ConnectionClosed, "UNKNOWN_APP|code: 11"):
            conn.hello("no-such-app", fresh("dev"))

    def test_unsupported_version_is_closed(self):
        conn = PikeConnection(TCP_HOST, int(TCP_PORT))
        self.conns.append(conn)
        with self.assertRaisesRegex(ConnectionClosed, "UNSUPPORTED_VERSION|code: 2"):
            conn.hello(APP, fresh("dev"), versions=(99,))


class T1Requests(PikeTest):
    """Requests the server refuses while the connection stays up."""

    def test_requests_on_a_stream_not_logged_in(self):
        conn, _ = self.login(fresh("dev"), fresh("u"))
        conn.uplink(4, 1, fresh("k"), b"x")
        conn.send(ROOM_JOIN, ch.RoomJoin(stream=4, room=fresh("live")))
        conn.pull(4, fresh("live"), 0)
        for frame_type in (UPLINK, ROOM_JOIN, ROOM_PULL):
            error = conn.wait_for(ERROR)
            self.assertEqual(error.code, tn.ERROR_CODE_NOT_LOGGED_IN, error.message)
            self.assertEqual((error.stream, error.frame_type), (4, frame_type))
        conn.sync()

    def test_unknown_biz_is_forbidden(self):
        alias = fresh("u")
        conn = self.connect(fresh("dev"))
        forged = mint_credential(SECRET, APP, "no-such-biz", alias)
        result = conn.login(0, "no-such-biz", alias, forged)
        self.assertEqual(result.code, tn.ERROR_CODE_FORBIDDEN, result.message)

    def test_uplink_of_a_biz_without_backend_is_backend_unavailable(self):
        alias = fresh("u")
        conn = self.connect(fresh("dev"))
        result = conn.login(0, QUIET_BIZ, alias, mint_credential(SECRET, APP, QUIET_BIZ, alias))
        self.assertEqual(result.code, OK, result.message)
        conn.uplink(0, 1, fresh("k"), b"x")
        ack = conn.wait_for(UPLINK_ACK)
        self.assertEqual((ack.seq, ack.code), (1, tn.ERROR_CODE_BACKEND_UNAVAILABLE))


class T1Framing(PikeTest):
    """Frames the protocol refuses (docs/protocol.md, "Frame layout")."""

    def answer_to(self, raw):
        """The server's answer to raw bytes sent after a login: a frame."""
        conn, _ = self.login(fresh("dev"), fresh("u"))
        conn.sock.sendall(raw)
        return conn.next_frame()

    def test_reserved_bit_is_malformed(self):
        frame = self.answer_to(bytes([0x40 | 0x28, 0x00]))
        self.assertEqual((frame.type, frame.body.code), (CLOSE, tn.ERROR_CODE_MALFORMED_FRAME))

    def test_length_not_minimally_encoded_is_malformed(self):
        frame = self.answer_to(bytes([0x28, 0x80, 0x00]))
        self.assertEqual((frame.type, frame.body.code), (CLOSE, tn.ERROR_CODE_MALFORMED_FRAME))

    def test_undefined_control_type_is_unknown(self):
        frame = self.answer_to(bytes([0x05, 0x00]))
        self.assertEqual((frame.type, frame.body.code), (CLOSE, tn.ERROR_CODE_UNKNOWN_FRAME_TYPE))

    def test_unassigned_application_type_is_answered_not_ignored(self):
        frame = self.answer_to(bytes([0x3E, 0x00]))
        # "ERROR/CLOSE UNKNOWN_FRAME_TYPE, never by ignoring it"
        self.assertIn(frame.type, (ERROR, CLOSE), frame)
        self.assertEqual(frame.body.code, tn.ERROR_CODE_UNKNOWN_FRAME_TYPE)
        OBSERVED["unassigned application type answered with"] = frame.name


class T2ReliableDownlink(PikeTest):
    def test_withheld_acks_are_redelivered_after_resume(self):
        alias, device = fresh("u"), fresh("dev")
        conn, first = self.login(device, alias)
        epoch = first.epoch
        for i in range(1, 6):
            self.assertEqual(API.push(BIZ, alias, f"m{i}")["online"], 1)
        got = [conn.wait_for(DOWNLINK) for _ in range(5)]
        self.assertEqual([d.seq for d in got], [1, 2, 3, 4, 5])
        self.assertEqual([d.payload for d in got], [f"m{i}".encode() for i in range(1, 6)])
        conn.ack(0, 3)
        conn.sync()
        conn.close()

        # Resume from the acked position: 4 and 5 again, nothing else.
        conn, result = self.login(device, alias, last_acked_seq=3, epoch=epoch)
        self.assertEqual(result.epoch, epoch)
        self.assertEqual(result.last_seq, 5)
        self.expect_downlinks(conn, [4, 5])
        conn.ack(0, 5)
        conn.sync()
        conn.close()

        conn, _ = self.login(device, alias, last_acked_seq=5, epoch=epoch)
        self.expect_downlinks(conn, [])
        conn.close()

        # The position is stored for the hello's device id: a login that
        # reports none resumes from it ...
        conn, _ = self.login(device, alias, last_acked_seq=0, epoch=epoch)
        self.expect_downlinks(conn, [])
        conn.close()
        # ... and another device of the alias gets everything from seq 1.
        conn, _ = self.login(fresh("dev"), alias)
        self.expect_downlinks(conn, [1, 2, 3, 4, 5])

    def test_a_position_of_another_epoch_is_ignored(self):
        alias, device = fresh("u"), fresh("dev")
        conn, first = self.login(device, alias)
        for i in range(1, 6):
            API.push(BIZ, alias, f"m{i}")
        self.assertEqual([conn.wait_for(DOWNLINK).seq for _ in range(5)], [1, 2, 3, 4, 5])
        conn.ack(0, 3)
        conn.sync()
        conn.close()
        # protocol.md, "Log epochs": a nonzero epoch that is not the
        # server's makes it ignore last_acked_seq and resume after the
        # position it stored for the device (3).
        other_epoch = first.epoch ^ 1
        conn, result = self.login(device, alias, last_acked_seq=5, epoch=other_epoch)
        self.assertEqual(result.epoch, first.epoch)
        self.expect_downlinks(conn, [4, 5])

    def test_transient_has_seq_zero_and_a_message_id(self):
        alias, device = fresh("u"), fresh("dev")
        conn, _ = self.login(device, alias)
        answer = API.push(BIZ, alias, "t1", reliable=False)
        self.assertEqual(answer["online"], 1)
        message = conn.wait_for(DOWNLINK)
        self.assertEqual(message.seq, 0)
        self.assertNotEqual(message.message_id, 0)
        self.assertEqual(message.message_id, int(answer["message_id"]))
        self.assertEqual(message.payload, b"t1")
        # Never acked (a client obligation), never stored: a new login of
        # the device finds no sequence used and nothing to redeliver.
        conn.close()
        conn, result = self.login(device, alias)
        self.assertEqual(result.last_seq, 0)
        self.expect_downlinks(conn, [])


class T3Uplink(PikeTest):
    def test_order_dedup_and_resend_after_reconnect(self):
        alias, device, prefix = fresh("u"), fresh("dev"), fresh("k")
        keys = [f"{prefix}-{seq}" for seq in range(1, 7)]
        conn, result = self.login(device, alias)
        for seq in range(1, 6):
            conn.uplink(0, seq, keys[seq - 1], f"up{seq}".encode())
        for seq in range(1, 6):
            ack = conn.wait_for(UPLINK_ACK, lambda a, s=seq: a.seq == s)
            self.assertEqual(ack.code, OK, ack.message)
        calls = BACKEND.calls_of(alias)
        self.assertEqual([c.key for c in calls], keys[:5])  # in order, once
        self.assertEqual([c.seq for c in calls], [1, 2, 3, 4, 5])
        self.assertEqual([c.payload for c in calls], [f"up{s}".encode() for s in range(1, 6)])
        self.assertTrue(all(c.device == device for c in calls))
        self.assertTrue(all(c.path == "/pike/uplink" for c in calls))  # the configured URL
        self.assertTrue(all(c.route == result.route_id for c in calls))

        # A resend of an acked message is answered from memory.
        conn.uplink(0, 3, keys[2], b"up3")
        ack = conn.wait_for(UPLINK_ACK, lambda a: a.seq == 3)
        self.assertEqual(ack.code, OK, ack.message)
        self.assertEqual(len(BACKEND.calls_of(alias)), 5)

        # Seq 6 is with the backend when the connection drops; the resend
        # on the next connection keeps seq and key and reaches it no more.
        BACKEND.hold(keys[5])
        conn.uplink(0, 6, keys[5], b"up6")
        BACKEND.wait_for_key(keys[5])
        conn.close()
        conn, _ = self.login(device, alias, route_id=result.route_id)
        conn.uplink(0, 6, keys[5], b"up6")
        conn.sync()
        BACKEND.release_all()
        ack = conn.wait_for(UPLINK_ACK, lambda a: a.seq == 6)
        self.assertEqual(ack.code, OK, ack.message)
        calls = BACKEND.calls_of(alias)
        self.assertEqual([c.key for c in calls], keys)
        self.assertEqual(calls[-1].seq, 6)

    def test_a_first_attempt_is_delivered_and_its_resend_is_still_deduplicated(self):
        # docs/protocol.md "Deduplication across connections": first_attempt
        # spares the lookup, not the record.
        alias, device, prefix = fresh("u"), fresh("dev"), fresh("k")
        key = f"{prefix}-1"
        conn, result = self.login(device, alias)
        conn.uplink(0, 1, key, b"fresh", first_attempt=True)
        ack = conn.wait_for(UPLINK_ACK, lambda a: a.seq == 1)
        self.assertEqual(ack.code, OK, ack.message)
        self.assertEqual([c.key for c in BACKEND.calls_of(alias)], [key])
        conn.close()
        # The ack was lost, say: the resend on the next connection is not a
        # first attempt and is answered from the record.
        conn, _ = self.login(device, alias, route_id=result.route_id)
        conn.uplink(0, 1, key, b"fresh")
        ack = conn.wait_for(UPLINK_ACK, lambda a: a.seq == 1)
        self.assertEqual(ack.code, OK, ack.message)
        self.assertEqual([c.key for c in BACKEND.calls_of(alias)], [key])


class T4Rooms(PikeTest):
    def repeated(self):
        """Counts an offset received twice (dropped by the client)."""
        OBSERVED["room offsets received twice"] += 1
        key = f"room offsets received twice in {self._testMethodName}"
        OBSERVED[key] = OBSERVED.get(key, 0) + 1

    def receive_offsets(self, conn, room, wanted, pushed):
        """Batches of `room` until every wanted offset came; offsets seen
        twice are dropped (a client obligation) and counted."""
        seen = {}
        deadline = time.monotonic() + WAIT_SECS
        while not set(wanted) <= set(seen):
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, f"offsets {sorted(set(wanted) - set(seen))} missing")
            batch = conn.wait_for(ROOM_BATCH, lambda b: b.room == room, timeout=left)
            if pushed is not None:
                self.assertEqual(batch.pushed, pushed)
            for message in batch.messages:
                if message.offset in seen:
                    self.repeated()
                    continue
                seen[message.offset] = message.payload
        self.assertEqual(set(seen), set(wanted))
        return seen

    def publish(self, room, count, tag):
        offsets = [API.publish(room, f"{tag}{i}") for i in range(count)]
        self.assertEqual(offsets, list(range(offsets[0], offsets[0] + count)))
        return offsets

    def check_push_room(self, room, pull_first):
        conn, _ = self.login(fresh("dev"), fresh("u"))
        joined = conn.join_room(0, room)
        self.assertEqual(joined.code, OK, joined.message)
        self.assertLessEqual(joined.head, joined.tail)
        if pull_first:  # as rooms.md's "every client joins, then pulls"
            conn.pull(0, room, joined.tail, wait_ms=2000)
        offsets = self.publish(room, 5, "p")
        self.assertGreaterEqual(offsets[0], joined.tail)
        seen = self.receive_offsets(conn, room, offsets, pushed=None if pull_first else True)
        self.assertEqual([seen[o] for o in offsets], [f"p{i}".encode() for i in range(5)])

    def test_push_mode_room(self):
        self.check_push_room(fresh("push:live"), pull_first=False)

    def test_push_mode_room_with_a_pull_racing_the_first_publish(self):
        self.check_push_room(fresh("push:live"), pull_first=True)

    def test_auto_mode_room_with_few_members_pushes(self):
        self.check_push_room(fresh("live"), pull_first=False)

    def test_pull_mode_room_long_poll_and_offsets(self):
        room = fresh("pull:live")
        conn, _ = self.login(fresh("dev"), fresh("u"))
        joined = conn.join_room(0, room)
        self.assertEqual(joined.code, OK, joined.message)
        # A long poll with nothing new is held ...
        conn.pull(0, room, joined.tail, wait_ms=5000)
        self.assertEqual(conn.frames_within(QUIET_SECS / 2), [])
        # ... and answered by the first publish.
        (first,) = self.publish(room, 1, "q")
        batch = conn.wait_for(ROOM_BATCH, lambda b: b.room == room)
        self.assertFalse(batch.pushed)
        self.assertEqual(batch.stream, 0)
        self.assertEqual([m.offset for m in batch.messages], [first])
        self.assertEqual(batch.next_offset, first + 1)
        # wait_ms = 0 with nothing new: answered at once, empty.
        conn.pull(0, room, batch.next_offset, wait_ms=0)
        empty = conn.wait_for(ROOM_BATCH, lambda b: b.room == room)
        self.assertEqual((list(empty.messages), empty.next_offset), ([], first + 1))
        # More messages, pulled in a loop from the next offset.
        more = self.publish(room, 3, "r")
        seen, offset = set(), first + 1
        deadline = time.monotonic() + WAIT_SECS
        while not set(more) <= seen and time.monotonic() < deadline:
            conn.pull(0, room, offset, wait_ms=2000)
            batch = conn.wait_for(ROOM_BATCH, lambda b: b.room == room)
            for message in batch.messages:
                if message.offset in seen:
                    self.repeated()
                seen.add(message.offset)
            offset = batch.next_offset
        self.assertEqual(seen, set(more))
        # Pulling from an earlier offset reads the room's history again.
        conn.pull(0, room, joined.tail, wait_ms=0)
        history = conn.wait_for(ROOM_BATCH, lambda b: b.room == room)
        self.assertEqual(sorted(m.offset for m in history.messages), [first, *more])
        self.assertEqual(history.missed, 0)


class T5KeepAlive(PikeTest):
    def test_ping_is_answered_with_the_nonce(self):
        conn, _ = self.login(fresh("dev"), fresh("u"))
        self.assertEqual(conn.ping(0xDEADBEEFCAFE), 0xDEADBEEFCAFE)
        self.assertEqual(conn.ping(0), 0)

    def expect_close(self, conn, code, within):
        """The next frame other than a ping is CLOSE `code`, then end of stream."""
        started = time.monotonic()
        frame = conn.next_frame(timeout=within)
        self.assertEqual((frame.type, frame.body.code), (CLOSE, code), frame)
        with self.assertRaises(ConnectionClosed):
            conn.next_frame(timeout=WAIT_SECS)
        return time.monotonic() - started, frame.body

    def test_a_silent_connection_is_closed_with_idle_timeout(self):
        conn, _ = self.login(fresh("dev"), fresh("u"))
        conn.auto_pong = False  # send nothing at all
        # config.md: closed after interval + timeout + 10 s of silence.
        limit = 2 * HEARTBEAT_SECS + 10
        took, close = self.expect_close(conn, tn.ERROR_CODE_IDLE_TIMEOUT, within=limit + 2)
        OBSERVED["idle close after s"] = (round(took, 2), close.message)
        self.assertGreaterEqual(took, limit - 1)

    def test_no_login_within_the_login_timeout_is_closed(self):
        conn = self.connect(fresh("dev"))
        took, close = self.expect_close(
            conn, tn.ERROR_CODE_IDLE_TIMEOUT, within=LOGIN_TIMEOUT_SECS + 2
        )
        self.assertIn("login", close.message)
        OBSERVED["login-deadline close after s"] = (round(took, 2), close.message)
        self.assertGreaterEqual(took, LOGIN_TIMEOUT_SECS - 0.5)


class T6EnforcedRules(PikeTest):
    """Rules of docs/protocol.md that the server enforces (issue 12)."""

    def test_alias_with_a_colon_is_invalid(self):
        alias = "chat:" + fresh("u")
        conn = self.connect(fresh("dev"))
        result = conn.login(0, BIZ, alias, credential(alias))
        self.assertEqual(result.code, tn.ERROR_CODE_INVALID_ARGUMENT, result.message)

    def test_ack_above_what_was_sent_is_invalid(self):
        alias = fresh("u")
        conn, _ = self.login(fresh("dev"), alias)
        API.push(BIZ, alias, "a1")
        self.assertEqual(conn.wait_for(DOWNLINK).seq, 1)
        conn.ack(0, 2)
        error = conn.wait_for(ERROR)
        self.assertEqual(error.code, tn.ERROR_CODE_INVALID_ARGUMENT, error.message)
        self.assertTrue(error.HasField("stream"))
        self.assertEqual((error.stream, error.frame_type), (0, DOWNLINK_ACK))
        conn.ack(0, 1)  # a right ack still passes
        self.assertEqual(conn.frames_within(QUIET_SECS / 2), [])

    def test_ack_on_a_stream_not_logged_in(self):
        conn, _ = self.login(fresh("dev"), fresh("u"))
        conn.ack(7, 1)
        error = conn.wait_for(ERROR)
        self.assertEqual(error.code, tn.ERROR_CODE_NOT_LOGGED_IN, error.message)
        self.assertEqual((error.stream, error.frame_type), (7, DOWNLINK_ACK))

    def test_uplink_seq_going_back_is_refused(self):
        alias, prefix = fresh("u"), fresh("k")
        conn, _ = self.login(fresh("dev"), alias)
        conn.uplink(0, 5, f"{prefix}-5", b"five")
        self.assertEqual(conn.wait_for(UPLINK_ACK, lambda a: a.seq == 5).code, OK)
        conn.uplink(0, 3, f"{prefix}-3", b"three")
        ack = conn.wait_for(UPLINK_ACK, lambda a: a.seq == 3)
        self.assertEqual(ack.code, tn.ERROR_CODE_INVALID_ARGUMENT, ack.message)
        self.assertEqual([c.key for c in BACKEND.calls_of(alias)], [f"{prefix}-5"])

    def test_pull_of_a_room_not_joined_is_unknown_room(self):
        conn, _ = self.login(fresh("dev"), fresh("u"))
        room = "pull:" + fresh("r")
        conn.pull(0, room, 0)
        error = conn.wait_for(ERROR)
        self.assertEqual(error.code, tn.ERROR_CODE_UNKNOWN_ROOM, error.message)
        self.assertEqual((error.stream, error.frame_type), (0, ROOM_PULL))


class T7GoAway(PikeTest):
    """Last: it stops the server."""

    def test_sigterm_sends_go_away_with_reconnect_advice(self):
        leaving, _ = self.login(fresh("dev"), fresh("u"))
        staying, _ = self.login(fresh("dev"), fresh("u"))
        os.kill(int(ENV["PIKE_CONF_SERVER_PID"]), signal.SIGTERM)
        with open(ENV["PIKE_CONF_SIGTERM_MARKER"], "w"):  # tells the script
            pass
        started = time.monotonic()
        for conn in (leaving, staying):
            frame = conn.next_frame(timeout=WAIT_SECS)
            # gateway.md, "Shutdown": a go-away with a reconnect window of 1 to 10 s.
            self.assertEqual(frame.type, GO_AWAY, frame)
            self.assertEqual(frame.body.code, tn.ERROR_CODE_GOING_AWAY)
            advice = frame.body.reconnect
            self.assertEqual((advice.min_delay_ms, advice.max_delay_ms), (1000, 10_000))
        leaving.close()  # the client leaves, as asked
        # A client that stays is closed with GOING_AWAY once the drain is
        # over (gateway.md: up to 15 s; channel.md: a 30 s grace).
        frame = staying.next_frame_pinging(30 + WAIT_SECS, interval=HEARTBEAT_SECS)
        self.assertEqual((frame.type, frame.body.code), (CLOSE, tn.ERROR_CODE_GOING_AWAY), frame)
        with self.assertRaises(ConnectionClosed):
            staying.next_frame(timeout=WAIT_SECS)
        took = time.monotonic() - started
        OBSERVED["a client staying after GO_AWAY closed after s"] = round(took, 2)
        self.assertLessEqual(took, 15 + 2)


SUITE = [
    T1Handshake,
    T1Requests,
    T1Framing,
    T2ReliableDownlink,
    T3Uplink,
    T4Rooms,
    T5KeepAlive,
    T6EnforcedRules,
    T7GoAway,
]


def main():
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(case) for case in SUITE)
    if len(sys.argv) > 1:  # names to run, e.g. T4Rooms or test_push_mode_room
        wanted = sys.argv[1:]
        suite = unittest.TestSuite(
            t for case in suite for t in case if any(w in t.id() for w in wanted)
        )
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    for what, count in OBSERVED.items():
        print(f"observed: {what}: {count}")
    failed = len(result.failures) + len(result.errors)
    print(f"conformance: {result.testsRun - failed} passed, {failed} failed")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
