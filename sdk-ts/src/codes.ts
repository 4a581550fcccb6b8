/** Error-code classes of docs/protocol.md, "Error codes". */
import { ErrorCode } from "../gen/pike/tunnel/v1/tunnel_pb.js";

export { ErrorCode };

/**
 * Whether a `CLOSE` with this code lets the client reconnect on its own
 * (the Rust `ErrorCode::is_retryable`). Final close codes:
 * `UNSUPPORTED_VERSION`, `UNKNOWN_APP`, `REPLACED`, and the request codes
 * that are final (`AUTH_FAILED`, `TOKEN_EXPIRED`, `INVALID_ARGUMENT`).
 * `FORBIDDEN` in a `CLOSE` is a kick: the client reconnects.
 */
export function isRetryableClose(code: ErrorCode): boolean {
  switch (code) {
    case ErrorCode.UNSUPPORTED_VERSION:
    case ErrorCode.UNKNOWN_APP:
    case ErrorCode.REPLACED:
    case ErrorCode.AUTH_FAILED:
    case ErrorCode.TOKEN_EXPIRED:
    case ErrorCode.INVALID_ARGUMENT:
      return false;
    default:
      return true;
  }
}

/**
 * Whether a refused `LOGIN_RESULT` code is final (the client stops and does
 * not retry): everything but `INTERNAL`, `OVERLOADED`, `LIMIT_EXCEEDED` and
 * `GOING_AWAY`, which are retried after a delay.
 */
export function isFinalLoginCode(code: ErrorCode): boolean {
  switch (code) {
    case ErrorCode.INTERNAL:
    case ErrorCode.OVERLOADED:
    case ErrorCode.LIMIT_EXCEEDED:
    case ErrorCode.GOING_AWAY:
    case ErrorCode.RATE_LIMITED:
      return false;
    default:
      return true;
  }
}

/**
 * Whether an `UPLINK_ACK` code may succeed when the message is sent again
 * (`RATE_LIMITED`, `INTERNAL`, `OVERLOADED`); the others are final for the
 * message.
 */
export function isRetryableUplinkCode(code: ErrorCode): boolean {
  return code === ErrorCode.RATE_LIMITED || code === ErrorCode.INTERNAL || code === ErrorCode.OVERLOADED;
}

/** The enum name of a code, e.g. `AUTH_FAILED` (or the number when unknown). */
export function codeName(code: ErrorCode): string {
  return ErrorCode[code] ?? String(code);
}
