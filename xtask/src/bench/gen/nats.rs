//! NATS core for the generator: the handshake (INFO, then CONNECT, an
//! optional SUB and a PING answered by PONG), PUB frames, and the in-place
//! scanner of the receive path (`MSG <subject> <sid> [reply]
//! <len>\r\n<payload>\r\n`, no allocation per message).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::super::wire;
use super::conn::fill;

/// Longest control line accepted (INFO lines are a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

/// Why bytes are not NATS.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Malformed(pub(crate) String);

/// The bytes before the payload of `PUB <subject> <len>`.
pub(crate) fn pub_prefix(subject: &str, payload_len: usize) -> Vec<u8> {
    format!("PUB {subject} {payload_len}\r\n").into_bytes()
}

/// What follows every PUB payload.
pub(crate) const PUB_SUFFIX: &[u8] = b"\r\n";

/// What a scan found besides payloads.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub(crate) struct Scanned {
    /// Bytes consumed (the rest is an incomplete operation).
    pub(crate) consumed: usize,
    /// PINGs to answer.
    pub(crate) pings: u32,
    /// The last `-ERR` text, if any.
    pub(crate) error: Option<String>,
}

/// Parses the decimal at the end of `line` (after its last space).
#[inline]
fn last_number(line: &[u8]) -> Option<usize> {
    let start = line.iter().rposition(|&b| b == b' ')? + 1;
    let digits = &line[start..];
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    Some(n)
}

/// Scans whole operations at the front of `data`, handing each MSG (and
/// HMSG) payload to `on_msg`.
#[inline]
pub(crate) fn scan(data: &[u8], mut on_msg: impl FnMut(&[u8])) -> Result<Scanned, Malformed> {
    let mut out = Scanned::default();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(Malformed("control line too long".into()));
            }
            break;
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        let after = pos + nl + 1;
        if line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") {
            // HMSG's last number is the total (headers + payload).
            let len = last_number(line).ok_or_else(|| {
                Malformed(format!("bad MSG line: {}", String::from_utf8_lossy(line)))
            })?;
            if data.len() < after + len + 2 {
                break;
            }
            on_msg(&data[after..after + len]);
            if &data[after + len..after + len + 2] != b"\r\n" {
                return Err(Malformed("MSG payload not followed by CRLF".into()));
            }
            pos = after + len + 2;
            continue;
        }
        if line == b"PING" {
            out.pings += 1;
        } else if line.starts_with(b"-ERR") {
            let text = String::from_utf8_lossy(&line[4..]);
            out.error = Some(text.trim().trim_matches('\'').to_owned());
        } else if !(line == b"PONG" || line == b"+OK" || line.starts_with(b"INFO")) {
            return Err(Malformed(format!(
                "unknown operation: {}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )));
        }
        pos = after;
    }
    out.consumed = pos;
    Ok(out)
}

/// Waits for the server's INFO (it speaks first; with TLS this comes
/// before the TLS handshake).
pub(crate) async fn read_info<S>(stream: &mut S, buf: &mut Vec<u8>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match wire::nats_take(buf).map_err(|e| e.0)? {
            Some(wire::NatsOp::Info) => return Ok(()),
            Some(other) => return Err(format!("expected INFO, got {other:?}")),
            None => fill(stream, buf).await?,
        }
    }
}

/// CONNECT as `name`, SUB `subject` (sid 1) when given, PING, and waits
/// for the PONG (the server handled the SUB before answering). Bytes read
/// past the PONG stay in `buf`.
pub(crate) async fn connect<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    name: &str,
    subject: Option<&str>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = wire::nats_connect(name).into_bytes();
    if let Some(subject) = subject {
        out.extend_from_slice(wire::nats_sub(subject, 1).as_bytes());
    }
    out.extend_from_slice(wire::NATS_PING);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    loop {
        match wire::nats_take(buf).map_err(|e| e.0)? {
            Some(wire::NatsOp::Pong) => return Ok(()),
            Some(wire::NatsOp::Err(e)) => return Err(format!("-ERR {e}")),
            Some(wire::NatsOp::Ping) => stream
                .write_all(wire::NATS_PONG)
                .await
                .map_err(|e| e.to_string())?,
            Some(_) => {}
            None => fill(stream, buf).await?,
        }
    }
}

/// The whole plain-TCP handshake: INFO, then [`connect`].
pub(crate) async fn handshake<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    name: &str,
    subject: Option<&str>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_info(stream, buf).await?;
    connect(stream, buf, name, subject).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_bytes() {
        let mut frame = pub_prefix("room", 5);
        frame.extend_from_slice(b"hello");
        frame.extend_from_slice(PUB_SUFFIX);
        assert_eq!(frame, b"PUB room 5\r\nhello\r\n");
    }

    #[test]
    fn numbers_at_line_end() {
        assert_eq!(last_number(b"MSG room 1 64"), Some(64));
        assert_eq!(last_number(b"MSG room 1 _INBOX.x 0"), Some(0));
        assert_eq!(last_number(b"MSG room 1 6x"), None);
        assert_eq!(last_number(b"MSG"), None);
        assert_eq!(last_number(b"MSG a 1 "), None);
    }

    #[test]
    fn scans_operations_at_every_split() {
        // The payload holds CR LF and "MSG" to prove it is skipped by length.
        let wire: &[u8] = b"INFO {\"a\":1}\r\n+OK\r\nMSG room 1 8\r\nab\r\nMSG \r\nPING\r\nMSG d.7 9 _INBOX.r 3\r\nxyz\r\nHMSG h 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\nPING\r\n";
        for split in 0..=wire.len() {
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut carry = wire[..split].to_vec();
            let first = scan(&carry, |p| got.push(p.to_vec())).unwrap();
            carry.drain(..first.consumed);
            carry.extend_from_slice(&wire[split..]);
            let second = scan(&carry, |p| got.push(p.to_vec())).unwrap();
            assert_eq!(second.consumed, carry.len(), "split {split}");
            assert_eq!(first.pings + second.pings, 2, "split {split}");
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(got[0], b"ab\r\nMSG ");
            assert_eq!(got[1], b"xyz");
            assert_eq!(got[2], b"NATS/1.0\r\n\r\nhi");
        }
    }

    #[test]
    fn errors_and_garbage() {
        let scanned = scan(b"-ERR 'Slow Consumer'\r\n", |_| {}).unwrap();
        assert_eq!(scanned.error.as_deref(), Some("Slow Consumer"));
        assert!(scan(b"WHAT\r\n", |_| {}).is_err());
        assert!(
            scan(b"MSG a 1 2\r\nabXY", |_| {}).is_err(),
            "no CRLF after payload"
        );
        assert!(scan(b"MSG a 1 x\r\n", |_| {}).is_err());
        assert_eq!(scan(b"MSG a 1 5\r\nab", |_| {}).unwrap().consumed, 0);
        assert!(scan(&vec![b'x'; MAX_LINE + 1], |_| {}).is_err());
    }

    #[tokio::test]
    async fn handshake_with_subscription() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            server.write_all(b"INFO {}\r\n").await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 512];
            while !got.ends_with(b"PING\r\n") {
                let n = server.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8(got).unwrap();
            assert!(text.contains("\r\nSUB up.> 1\r\nPING\r\n"), "{text}");
            server
                .write_all(b"PONG\r\nMSG up.1 1 0\r\n\r\n")
                .await
                .unwrap();
            server
        });
        let mut buf = Vec::new();
        handshake(&mut client, &mut buf, "s", Some("up.>"))
            .await
            .unwrap();
        // What followed the PONG may still be on its way; whatever arrived is kept.
        assert!(b"MSG up.1 1 0\r\n\r\n".starts_with(&buf));
        drop(task.await.unwrap());
    }
}
