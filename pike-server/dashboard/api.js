// The HTTP API, authenticated with the signed-in app's key.
//
// The key lives in sessionStorage (this tab only; gone when it closes) and
// goes out as `Authorization: Bearer <key>`. Every request is bounded by a
// timeout. API errors ({"error": {"code", "message"}}) become ApiError with
// the API's own message.

const KEY = "pike.dashboard.key";

/** Longest wait for one request, milliseconds. */
export const REQUEST_TIMEOUT_MS = 10_000;

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set(key) {
    sessionStorage.setItem(KEY, key);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the API at `path` (relative to /v1), a GET, or a POST of `body` as
 * JSON, with `key` (the session's by default). Resolves to the JSON answer.
 */
export async function api(path, { body, key = session.key } = {}) {
  const headers = { authorization: `Bearer ${key ?? ""}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(`../v1/${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (e) {
    throw new ApiError(0, "network", `the gateway did not answer (${e.name === "TimeoutError" ? "timeout" : e.message})`);
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    // Not JSON: reported below by status.
  }
  if (!res.ok) {
    throw new ApiError(res.status, json?.error?.code ?? "http", json?.error?.message ?? `HTTP ${res.status}`);
  }
  return json;
}
