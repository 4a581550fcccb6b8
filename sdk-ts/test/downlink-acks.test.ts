import { test } from "node:test";
import assert from "node:assert/strict";
import { DownlinkAcks } from "../src/downlink.js";

test("DownlinkAcks: verdicts, gaps, and acks never above what this connection received", () => {
  const acks = new DownlinkAcks();
  assert.deepEqual(acks.receive(0n, 5n), { kind: "transient" });
  assert.equal(acks.due(5n), undefined, "a position from an earlier connection is not acked before anything arrives");
  assert.deepEqual(acks.receive(4n, 5n), { kind: "duplicate", ack: 4n });
  assert.deepEqual(acks.receive(6n, 5n), { kind: "deliver", missedFrom: undefined });
  assert.deepEqual(acks.receive(9n, 6n), { kind: "deliver", missedFrom: 7n });
  assert.equal(acks.handedOver(), 1);
  assert.equal(acks.handedOver(), 2);
  assert.equal(acks.due(9n), 9n);
  acks.sent(9n);
  assert.equal(acks.due(9n), undefined, "nothing new to acknowledge");
  assert.equal(acks.handedOver(), 1, "sending resets the count");
});
