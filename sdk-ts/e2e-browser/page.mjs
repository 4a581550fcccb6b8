// The test page's side of the browser end to end: the SDK, as a web page
// uses it, with the browser's own WebSocket. run.mjs drives it through
// `window.pikeTest` (page.evaluate) and reads what happened from
// `pikeTest.snapshot()`; nothing here waits without a bound.
import { PikeChannel, PikeClient, factoryFromConstructor } from "/dist/src/index.js";

const decode = (bytes) => new TextDecoder().decode(bytes);
const seen = { received: [], rooms: [], connectivity: [], clientEvents: [] };
let channel;
let client;

window.pikeTest = {
  /** Starts a channel and a client logged in as `biz`/`alias`. */
  start({ url, appId, deviceId, biz, alias, credential }) {
    channel = new PikeChannel({
      url,
      appId,
      deviceId,
      webSocket: factoryFromConstructor(WebSocket),
      handshakeTimeoutMs: 3_000,
      backoff: { baseMs: 200, maxMs: 2_000 },
    });
    client = new PikeClient(channel, { biz, alias, credential });
    client.on((e) => {
      seen.clientEvents.push(e.type);
      if (e.type === "receive") seen.received.push(`${e.message.seq}:${decode(e.message.payload)}`);
      if (e.type === "roomMessages") seen.rooms.push(...e.messages.map((m) => decode(m.payload)));
    });
    channel.on((e) => seen.connectivity.push(e.type === "disconnected" ? `disconnected:${e.reason.kind}` : e.type));
    client.start();
  },
  /** What happened so far (plain data: it crosses into the test). */
  snapshot() {
    return { channel: channel?.state, client: client?.state, ...seen };
  },
  /** Sends `text` uplink; the outcome. */
  async send(text) {
    const result = await client.send(new TextEncoder().encode(text)).result;
    return result.ok ? { ok: true, key: result.key } : { ok: false, key: result.key, message: result.message };
  },
  /** Joins `room`; whether it worked. */
  async join(room) {
    const result = await client.joinRoom(room);
    return result.ok ? { ok: true } : { ok: false, message: result.message };
  },
  stop() {
    client.stop();
    return channel.state;
  },
  /** Opens a bare `pike.v1` WebSocket to `url`: "open", or how it ended. */
  probe(url) {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, ["pike.v1"]);
      const timer = setTimeout(() => {
        ws.close();
        resolve("no answer in 5 s");
      }, 5_000);
      ws.onopen = () => {
        clearTimeout(timer);
        ws.close();
        resolve("open");
      };
      ws.onclose = (e) => {
        clearTimeout(timer);
        resolve(`closed before opening (code ${e.code})`);
      };
    });
  },
};
window.pikeReady = true;
