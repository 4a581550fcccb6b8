import { test } from "node:test";
import assert from "node:assert/strict";
import { FibonacciBackoff, uniformDelay } from "../src/backoff.js";

test("Fibonacci multiples of 1 s up to 60 s without jitter at the midpoint", () => {
  const b = new FibonacciBackoff(() => 0.5);
  const seq = Array.from({ length: 13 }, () => b.next());
  assert.deepEqual(seq, [1000, 1000, 2000, 3000, 5000, 8000, 13000, 21000, 34000, 55000, 60000, 60000, 60000]);
  b.reset();
  assert.equal(b.next(), 1000);
});

test("jitter spans ±50 %", () => {
  assert.equal(new FibonacciBackoff(() => 0).next(), 500);
  assert.equal(new FibonacciBackoff(() => 0.999999).next(), 1500);
  assert.equal(uniformDelay(() => 0.25, 100, 500), 200);
  assert.equal(uniformDelay(() => 0.9, 300, 300), 300);
});

test("credential refresh time: the margin before expiry, at most half the time left", async () => {
  const { refreshAt } = await import("../src/credential.js");
  // Server clock 4,000 ms ahead of the local clock.
  assert.equal(refreshAt(104_000n + 600_000n, 4_000, 100_000, 60_000), 640_000);
  assert.equal(refreshAt(104_000n + 30_000n, 4_000, 100_000, 60_000), 115_000, "half of 30 s left");
  assert.equal(refreshAt(50_000n, 4_000, 100_000, 60_000), 46_000, "already expired: at once");
});
