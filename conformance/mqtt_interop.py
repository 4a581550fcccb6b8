"""MQTT interop against the real pike-server (docs/mqtt.md): Debian's
mosquitto_pub / mosquitto_sub (3.1.1 and 5.0), Python paho-mqtt, and the
`pike` CLI as a Pike-protocol device. Run by .ci/mqtt-interop.sh, which
starts the server and passes its addresses in the environment. Every wait
is bounded. Prints 'N passed, N failed' last.
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import subprocess
import sys
import time
import traceback
import urllib.request

import paho.mqtt.client as mqtt

from backend import Backend

HOST, PORT = os.environ["PIKE_MQTT"].rsplit(":", 1)
PORT = int(PORT)
HTTP = os.environ["PIKE_HTTP"]
TCP = os.environ["PIKE_TCP"]
APP = os.environ["PIKE_APP"]
API_KEY = os.environ["PIKE_API_KEY"]
SECRET = os.environ["PIKE_SECRET"]
PIKE = os.environ["PIKE_CLI"]
BIZ = "iot"
PATIENCE = 10.0


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(alias, secret=SECRET):
    """A Pike credential (docs/protocol.md "Login"), HS256."""
    now = int(time.time())
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"app": APP, "biz": BIZ, "sub": alias, "iat": now, "exp": now + 600}
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def post_push(body):
    request = urllib.request.Request(
        f"http://{HTTP}/v1/push",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        assert response.status == 200, response.status


def push(alias, payload, reliable=True):
    post_push({"biz": BIZ, "alias": alias, "payload": payload, "reliable": reliable})


def push_tag(tag, payload):
    """A reliable push to the aliases bound to `tag`."""
    post_push({"biz": BIZ, "tag": tag, "payload": payload, "reliable": True})


class Sub:
    """mosquitto_sub in debug mode: its SUBACK and messages, line by line."""

    def __init__(self, version, client_id, alias, extra=(), topic=f"pike/{BIZ}/down"):
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-V", version, "-h", HOST, "-p", str(PORT), "-i", client_id,
             "-u", APP, "-P", token(alias), "-q", "1", "-t", topic, "-d", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines = queue.Queue()
        import threading
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + PATIENCE
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"mosquitto_sub: no {what}; saw {seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"mosquitto_sub exited before {what}; saw {seen}")
            seen.append(line)
            if predicate(line):
                return line

    def messages(self, n):
        """The next n payload lines (mosquitto_sub prints payloads bare)."""
        debug = ("Client ", "Subscribed (mid")
        return [self.wait_for(lambda l: not l.startswith(debug), "a message") for _ in range(n)]

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=PATIENCE)


class Paho:
    """A paho-mqtt client whose events go to queues."""

    def __init__(self, client_id, protocol, clean=True, password=None, alias=None):
        kwargs = {"clean_session": clean} if protocol == mqtt.MQTTv311 else {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol, **kwargs)
        self.client.username_pw_set(APP, password if password is not None else token(alias or client_id))
        self.events = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.events.put(("connack", flags, rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.events.put(("suback", rcs))
        self.client.on_message = lambda c, u, m: self.events.put(("message", m.payload, m.qos))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.events.put(("disconnect", rc))
        self.client.on_publish = lambda c, u, mid, rc, props: self.events.put(("puback", mid, rc))
        self.protocol = protocol
        self.clean = clean

    def connect(self):
        if self.protocol == mqtt.MQTTv5:
            props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.clean else 3600
            self.client.connect(HOST, PORT, keepalive=30, clean_start=self.clean, properties=props)
        else:
            self.client.connect(HOST, PORT, keepalive=30)
        self.client.loop_start()
        return self.next("connack")

    def next(self, kind):
        deadline = time.monotonic() + PATIENCE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"paho: no {kind}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event[0] == kind:
                return event
            if kind != "disconnect" and event[0] == "disconnect":
                raise AssertionError(f"paho: disconnected ({event[1]}) while waiting for {kind}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_mosquitto_sub_receives_http_pushes_in_both_versions():
    for version in ("mqttv311", "mqttv5"):
        alias = f"sub-{version}"
        sub = Sub(version, f"dev-{version}", alias)
        try:
            sub.wait_for(lambda l: "SUBACK" in l, "SUBACK")
            push(alias, f"hello {version}")
            got = sub.messages(1)
            assert got == [f"hello {version}"], got
        finally:
            sub.stop()


def test_mosquitto_sub_on_a_tag_topic_receives_the_tags_pushes_once():
    # Subscribing to pike/<biz>/tag/<tag> binds the tag to the login's
    # alias; its pushes arrive (on pike/<biz>/down), once each: the
    # untagged marker pushed next is the next message.
    for version in ("mqttv311", "mqttv5"):
        alias, tag = f"tagged-{version}", f"fleet-{version}"
        sub = Sub(version, f"tag-dev-{version}", alias, topic=f"pike/{BIZ}/tag/{tag}")
        try:
            sub.wait_for(lambda l: "SUBACK" in l, "SUBACK")
            push_tag(tag, f"to {tag}")
            push(alias, "marker")
            got = sub.messages(2)
            assert got == [f"to {tag}", "marker"], got
        finally:
            sub.stop()


def test_paho_on_a_tag_topic_only_gets_the_tags_push_on_the_down_topic():
    alias, tag = "tagged-paho", "fleet-paho"
    paho = Paho("tag-paho", mqtt.MQTTv5, alias=alias)
    paho.client.on_message = lambda c, u, m: paho.events.put(("message", m.payload, m.qos, m.topic))
    paho.connect()
    paho.client.subscribe(f"pike/{BIZ}/tag/{tag}", qos=1)
    _, codes = paho.next("suback")
    assert [c.value for c in codes] == [1], codes
    push_tag(tag, "to paho")
    _, payload, qos, topic = paho.next("message")
    assert (payload, qos, topic) == (b"to paho", 1, f"pike/{BIZ}/down"), (payload, qos, topic)
    paho.close()


def test_a_bad_tag_topic_is_refused_with_the_spec_codes():
    bad = f"pike/{BIZ}/tag/" + "t" * 129  # tags are 1-128 bytes
    v4 = Paho("badtag-4", mqtt.MQTTv311, alias="badtag")
    v4.connect()
    v4.client.subscribe(bad, qos=1)
    _, codes = v4.next("suback")
    assert [int(c.value) if hasattr(c, "value") else c for c in codes] == [128], codes
    v4.close()
    v5 = Paho("badtag-5", mqtt.MQTTv5, alias="badtag")
    v5.connect()
    v5.client.subscribe(bad, qos=1)
    _, codes = v5.next("suback")
    assert [c.value for c in codes] == [0x8F], codes
    v5.close()


def test_a_persistent_session_gets_what_it_missed_exactly_once():
    alias = "lock-1"
    first = Paho("lock-1", mqtt.MQTTv311, clean=False)
    _, flags, rc = first.connect()
    assert rc == 0, rc
    first.client.subscribe(f"pike/{BIZ}/down", qos=1)
    first.next("suback")
    first.close()
    push(alias, "missed")
    second = Paho("lock-1", mqtt.MQTTv311, clean=False)
    _, flags, rc = second.connect()
    assert rc == 0 and flags.session_present, (rc, flags)
    _, payload, qos = second.next("message")
    assert (payload, qos) == (b"missed", 1), (payload, qos)
    push(alias, "marker")
    _, payload, _ = second.next("message")
    assert payload == b"marker", f"got {payload!r}: 'missed' came twice"
    second.close()


def test_uplink_reaches_the_webhook_once_per_message_id(backend):
    args = ["mosquitto_pub", "-V", "mqttv311", "-h", HOST, "-p", str(PORT), "-i", "meter-1",
            "-u", APP, "-P", token("meter-1"), "-q", "1", "-t", f"pike/{BIZ}/up"]
    for _ in range(2):
        subprocess.run([*args, "-m", "pike-id:reading-1\n{\"kwh\":7}"], check=True, timeout=PATIENCE)
    backend.wait_for_key("reading-1", PATIENCE)
    subprocess.run([*args, "-V", "mqttv5", "-m", "pike-id:reading-2\nnext"], check=True, timeout=PATIENCE)
    backend.wait_for_key("reading-2", PATIENCE)
    calls = backend.calls_of("meter-1")
    assert [(c.key, c.payload) for c in calls] == [
        ("reading-1", b'{"kwh":7}'), ("reading-2", b"next")], calls


def test_bad_credentials_are_refused_with_the_right_code():
    bad = token("cab-1", secret="not-the-secret")
    # paho reports a 3.1.1 CONNACK code 4 under its 5.0 name.
    _, _, rc = Paho("cab-1", mqtt.MQTTv311, password=bad).connect()
    assert str(rc) == "Bad user name or password", f"3.1.1: expected code 4, got {rc}"
    _, _, rc = Paho("cab-1", mqtt.MQTTv5, password=bad).connect()
    assert rc.value == 0x86, f"5.0: expected 0x86, got {rc}"
    # mosquitto_pub names the 3.1.1 code itself.
    for version, text in (("mqttv311", "connection refused: bad user name or password"),
                          ("mqttv5", "bad user name or password")):
        result = subprocess.run(
            ["mosquitto_pub", "-V", version, "-h", HOST, "-p", str(PORT), "-i", "cab-1", "-u", APP,
             "-P", bad, "-t", f"pike/{BIZ}/up", "-m", "x"],
            capture_output=True, text=True, timeout=PATIENCE)
        output = (result.stdout + result.stderr).lower()
        assert result.returncode != 0 and text in output, (version, result)


def test_wildcards_retain_and_qos2_are_refused_with_the_spec_codes():
    v4 = Paho("ref-4", mqtt.MQTTv311, alias="ref")
    v4.connect()
    v4.client.subscribe(f"pike/+/down", qos=1)
    _, codes = v4.next("suback")
    assert [int(c.value) if hasattr(c, "value") else c for c in codes] == [128], codes
    v4.close()
    v5 = Paho("ref-5", mqtt.MQTTv5, alias="ref")
    v5.connect()
    v5.client.subscribe(f"pike/{BIZ}/#", qos=1)
    _, codes = v5.next("suback")
    assert [c.value for c in codes] == [0xA2], codes
    v5.client.publish(f"pike/{BIZ}/up", b"x", qos=0, retain=True)
    _, rc = v5.next("disconnect")
    assert rc.value == 0x9A, rc
    v5.client.loop_stop()
    v5 = Paho("ref-5", mqtt.MQTTv5, alias="ref")
    v5.connect()
    v5.client.publish(f"pike/{BIZ}/up", b"x", qos=2)
    _, rc = v5.next("disconnect")
    assert rc.value == 0x9B, rc
    v5.client.loop_stop()


def test_a_pike_device_and_an_mqtt_device_on_one_alias_both_get_each_push_once():
    alias = "shared-1"
    sub = Sub("mqttv311", "shared-mqtt", alias, extra=("-c",))
    listen = subprocess.Popen(
        [PIKE, "listen", "--app", APP, "--token-secret", SECRET, "--server", TCP,
         "--alias", f"{BIZ}:{alias}", "--device", "shared-pike", "--count", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda l: "SUBACK" in l, "SUBACK")
        # Reliable: the Pike device gets both even if its login comes later.
        push(alias, "one")
        push(alias, "two")
        got = sub.messages(2)
        assert got == ["one", "two"], got
        out, err = listen.communicate(timeout=PATIENCE)
        assert listen.returncode == 0, err
        payloads = [json.loads(line)["payload"] for line in out.splitlines()]
        assert payloads == ["one", "two"], payloads
    finally:
        sub.stop()
        if listen.poll() is None:
            listen.kill()


def main():
    backend = Backend(int(os.environ["PIKE_WEBHOOK_PORT"]))
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_")]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn(backend) if fn.__code__.co_argcount else fn()
            passed += 1
            print(f"ok   {name}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
    backend.stop()
    print(f"mqtt interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
