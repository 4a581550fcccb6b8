"""A minimal Pike wire client, written from docs/ and proto/proto alone.

It speaks protocol version 1 over plain TCP or TLS: the frame layout (a header
byte, a LEB128 body length, a protobuf body), the hello exchange, logins,
reliable and transient downlink with cumulative acks, uplink with
idempotency keys, live rooms and heartbeats. It is deliberately small and
blocking (one socket, a read deadline on every call) so that it reads as an
example for SDK authors; it keeps no state across connections: positions,
epochs and unacked uplink are the caller's (the tests), as an SDK keeps them.

The protobuf classes are generated from proto/proto with protoc
(`.ci/conformance.sh` does it into a temporary directory and puts it on
PYTHONPATH): `pike.tunnel.v1.tunnel_pb2` and `pike.channel.v1.channel_pb2`.

Helpers outside the wire: `mint_credential` (the JWT HS256 a business
backend hands its devices) and `HttpApi` (pushes and room publishes).
"""

import base64
import hashlib
import hmac
import json
import socket
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from pike.channel.v1 import channel_pb2 as ch
from pike.tunnel.v1 import tunnel_pb2 as tn

# Frame types (docs/protocol.md, "Frame types").
CLIENT_HELLO = 0x01
SERVER_HELLO = 0x02
CLOSE = 0x03
LOGIN = 0x10
LOGIN_RESULT = 0x11
LOGOUT = 0x12
TAGS = 0x13
TAGS_RESULT = 0x14
DOWNLINK = 0x18
DOWNLINK_ACK = 0x19
UPLINK = 0x1A
UPLINK_ACK = 0x1B
ROOM_JOIN = 0x20
ROOM_JOIN_RESULT = 0x21
ROOM_LEAVE = 0x22
ROOM_PULL = 0x23
ROOM_BATCH = 0x24
PING = 0x28
PONG = 0x29
GO_AWAY = 0x2A
ERROR = 0x2B

# The protobuf message of each frame type.
BODIES = {
    CLIENT_HELLO: tn.ClientHello,
    SERVER_HELLO: tn.ServerHello,
    CLOSE: tn.Close,
    LOGIN: ch.Login,
    LOGIN_RESULT: ch.LoginResult,
    LOGOUT: ch.Logout,
    TAGS: ch.Tags,
    TAGS_RESULT: ch.TagsResult,
    DOWNLINK: ch.Downlink,
    DOWNLINK_ACK: ch.DownlinkAck,
    UPLINK: ch.Uplink,
    UPLINK_ACK: ch.UplinkAck,
    ROOM_JOIN: ch.RoomJoin,
    ROOM_JOIN_RESULT: ch.RoomJoinResult,
    ROOM_LEAVE: ch.RoomLeave,
    ROOM_PULL: ch.RoomPull,
    ROOM_BATCH: ch.RoomBatch,
    PING: ch.Ping,
    PONG: ch.Pong,
    GO_AWAY: ch.GoAway,
    ERROR: ch.Error,
}
NAMES = {
    value: name
    for name, value in globals().items()
    if isinstance(value, int) and value in BODIES and name.isupper()
}

# Header bits (docs/protocol.md, "Frame layout").
COMPRESSED_BIT = 0x80
RESERVED_BIT = 0x40
TYPE_MASK = 0x3F
# The length prefix is at most 4 LEB128 bytes.
MAX_LENGTH_BYTES = 4
MAX_FRAME_LENGTH = (1 << 28) - 1
# What this client accepts, advertised in its hello.
OWN_MAX_FRAME_LENGTH = 1 << 20

# Error codes used by the tests (pike.tunnel.v1.ErrorCode).
OK = tn.ERROR_CODE_UNSPECIFIED


class ProtocolViolation(Exception):
    """The server sent something the protocol does not allow."""


class ConnectionClosed(Exception):
    """The server closed the socket (end of stream)."""


@dataclass
class Frame:
    """One received frame: its type and decoded protobuf body."""

    type: int
    body: object

    @property
    def name(self):
        return NAMES.get(self.type, hex(self.type))

    def __repr__(self):
        text = str(self.body).replace("\n", " ").strip()
        return f"{self.name}({text})"


def encode_varint(value):
    """Unsigned LEB128, least significant group first."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_frame(frame_type, message):
    """Header byte (C = R = 0), LEB128 body length, body."""
    body = message.SerializeToString()
    if len(body) > MAX_FRAME_LENGTH:
        raise ValueError("body above the protocol's largest frame")
    return bytes([frame_type & TYPE_MASK]) + encode_varint(len(body)) + body


class PikeConnection:
    """One connection to a Pike gateway: plain TCP, or TLS with `tls_ca`
    (the PEM certificate to trust).

    Every read has a deadline (`timeout` seconds unless a call gives its
    own); a frame the caller did not ask for is kept, in order, for later
    `next_frame` calls. Pings from the server are answered with a pong
    unless `auto_pong` is false, and counted in `server_pings`.
    """

    def __init__(self, host, port, timeout=5.0, tls_ca=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ca is not None:  # TLS 1.3 only, ALPN pike/1, the server's certificate trusted
            context = ssl.create_default_context(cafile=tls_ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            context.set_alpn_protocols(["pike/1"])
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
            if self.sock.selected_alpn_protocol() != "pike/1":
                raise ProtocolViolation("the server did not agree to ALPN pike/1")
        self.buffer = bytearray()
        self.pending = []  # frames received but not yet handed out
        self.auto_pong = True
        self.server_pings = 0
        self.server_hello = None
        self.early_frames = 0  # frames that arrived before a LOGIN_RESULT awaited

    # --- bytes and frames --------------------------------------------------

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame before the deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("no frame before the deadline") from e
        if not chunk:
            raise ConnectionClosed("the server closed the connection")
        self.buffer += chunk

    def _read_frame(self, deadline):
        while not self.buffer:
            self._fill(deadline)
        header = self.buffer[0]
        if header & RESERVED_BIT:
            raise ProtocolViolation(f"reserved bit set in header {header:#04x}")
        if header & COMPRESSED_BIT:
            raise ProtocolViolation("compressed frame, but this client offered no compression")
        length, shift, pos = 0, 0, 1
        while True:
            while len(self.buffer) <= pos:
                self._fill(deadline)
            byte = self.buffer[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                if byte == 0 and pos > 2:
                    raise ProtocolViolation("length not minimally encoded")
                break
            shift += 7
            if pos > MAX_LENGTH_BYTES:
                raise ProtocolViolation("length prefix longer than 4 bytes")
        if length > OWN_MAX_FRAME_LENGTH:
            raise ProtocolViolation(f"frame of {length} bytes above our limit")
        while len(self.buffer) < pos + length:
            self._fill(deadline)
        body = bytes(self.buffer[pos : pos + length])
        del self.buffer[: pos + length]
        frame_type = header & TYPE_MASK
        cls = BODIES.get(frame_type)
        if cls is None:
            raise ProtocolViolation(f"unknown frame type {frame_type:#04x}")
        message = cls()
        message.ParseFromString(body)
        return Frame(frame_type, message)

    def send(self, frame_type, message):
        """Writes one frame."""
        self.sock.sendall(encode_frame(frame_type, message))

    def next_frame(self, timeout=None):
        """The next frame (kept ones first); TimeoutError when none comes in time."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self._read_frame(deadline)
            if frame.type == PING:
                self.server_pings += 1
                if self.auto_pong:
                    self.send(PONG, ch.Pong(nonce=frame.body.nonce))
                continue
            return frame

    def wait_for(self, frame_type, match=lambda body: True, timeout=None):
        """The first frame of `frame_type` whose body matches; others are kept."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for i, frame in enumerate(self.pending):
            if frame.type == frame_type and match(frame.body):
                return self.pending.pop(i).body
        skipped = []
        try:
            while True:
                frame = self._read_frame(deadline)
                if frame.type == PING:
                    self.server_pings += 1
                    if self.auto_pong:
                        self.send(PONG, ch.Pong(nonce=frame.body.nonce))
                    continue
                if frame.type == frame_type and match(frame.body):
                    return frame.body
                if frame.type == CLOSE:
                    raise ConnectionClosed(f"closed while waiting for {NAMES[frame_type]}: {frame}")
                skipped.append(frame)
        finally:
            self.pending.extend(skipped)

    def next_frame_pinging(self, timeout, interval):
        """The next frame other than a PONG, pinging every `interval`
        seconds meanwhile (a client's heartbeat while it waits)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame before the deadline")
            try:
                frame = self.next_frame(timeout=min(interval, left))
            except TimeoutError:
                self.send(PING, ch.Ping(nonce=1))
                continue
            if frame.type != PONG:
                return frame

    def frames_within(self, seconds):
        """Every frame that arrives within `seconds` (a bounded quiet period)."""
        deadline = time.monotonic() + seconds
        frames, self.pending = self.pending, []
        while True:
            try:
                frames.append(self.next_frame(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                return frames

    def close(self):
        """Drops the connection without a close frame (as a lost network would)."""
        try:
            self.sock.close()
        except OSError:
            pass

    # --- the protocol ------------------------------------------------------

    def hello(self, app_id, device_id, versions=(1,)):
        """CLIENT_HELLO, then the SERVER_HELLO (or the server's CLOSE, raised)."""
        self.send(
            CLIENT_HELLO,
            tn.ClientHello(
                versions=list(versions),
                app_id=app_id,
                device_id=device_id,
                sdk_name="pike-conformance-py",
                sdk_version="0.1.0",
                max_frame_length=OWN_MAX_FRAME_LENGTH,
            ),
        )
        frame = self.next_frame()
        if frame.type == CLOSE:
            raise ConnectionClosed(f"hello refused: {frame}")
        if frame.type != SERVER_HELLO:
            raise ProtocolViolation(f"expected SERVER_HELLO, got {frame}")
        self.server_hello = frame.body
        return frame.body

    def login(self, stream, biz, alias, credential, last_acked_seq=0, epoch=0, route_id=""):
        """LOGIN, then its LOGIN_RESULT (frames arriving before it are kept)."""
        self.send(
            LOGIN,
            ch.Login(
                stream=stream,
                biz=biz,
                alias=alias,
                credential=credential,
                route_id=route_id,
                last_acked_seq=last_acked_seq,
                epoch=epoch,
            ),
        )
        kept = len(self.pending)
        result = self.wait_for(LOGIN_RESULT, lambda r: r.stream == stream)
        self.early_frames += len(self.pending) - kept
        return result

    def ack(self, stream, seq):
        """Cumulative DOWNLINK_ACK: every message of `stream` up to `seq`."""
        self.send(DOWNLINK_ACK, ch.DownlinkAck(stream=stream, seq=seq))

    def uplink(self, stream, seq, key, payload, first_attempt=False):
        """Sends one UPLINK; its UPLINK_ACK comes later (`wait_for(UPLINK_ACK, ...)`).
        `first_attempt`: no connection carried it before and the key is new."""
        self.send(UPLINK, ch.Uplink(stream=stream, seq=seq, idempotency_key=key, payload=payload,
                                    first_attempt=first_attempt))

    def join_room(self, stream, room):
        """ROOM_JOIN, then its ROOM_JOIN_RESULT."""
        self.send(ROOM_JOIN, ch.RoomJoin(stream=stream, room=room))
        return self.wait_for(ROOM_JOIN_RESULT, lambda r: r.room == room and r.stream == stream)

    def pull(self, stream, room, offset, wait_ms=0, max_messages=0):
        """Sends a ROOM_PULL; the answer (if any) is a ROOM_BATCH."""
        self.send(
            ROOM_PULL,
            ch.RoomPull(stream=stream, room=room, offset=offset, max=max_messages, wait_ms=wait_ms),
        )

    def ping(self, nonce):
        """PING, then the PONG (its nonce is returned)."""
        self.send(PING, ch.Ping(nonce=nonce))
        return self.wait_for(PONG).nonce

    def sync(self):
        """A ping round trip: every frame sent before it has been read by the server."""
        self.ping(0x5EED)


# --- outside the wire ------------------------------------------------------


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_credential(secret, app, biz, alias, ttl_secs=3600, device=None, now=None):
    """A JWT HS256 for (app, biz, alias), keyed by the secret's UTF-8 bytes.

    Claims per docs/http-api.md (`POST /v1/tokens`): app, biz, sub = alias,
    iat, exp, and optionally device.
    """
    now = int(time.time()) if now is None else now
    claims = {"app": app, "biz": biz, "sub": alias, "iat": now, "exp": now + ttl_secs}
    if device is not None:
        claims["device"] = device
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class HttpApi:
    """The few HTTP API calls the tests need (docs/http-api.md)."""

    def __init__(self, address, api_key, timeout=10.0):
        self.base = f"http://{address}"
        self.api_key = api_key
        self.timeout = timeout

    def post(self, path, body):
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def push(self, biz, alias, payload, reliable=True):
        """POST /v1/push to one alias; the answer's JSON."""
        return self.post(
            "/v1/push", {"biz": biz, "alias": alias, "payload": payload, "reliable": reliable}
        )

    def publish(self, room, payload, reliable=True):
        """POST /v1/rooms/{room}/publish; the message's offset."""
        path = "/v1/rooms/" + urllib.parse.quote(room, safe=":") + "/publish"
        body = {"payload": payload, "class": "reliable" if reliable else "droppable"}
        return self.post(path, body)["offset"]
