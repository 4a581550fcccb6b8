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
