//! Pike mode's publisher: a business backend pushing through the HTTP API,
//! `POST /v1/push/batch` over keep-alive HTTP/1.1 connections, one request
//! in flight on each (as `pike bench unicast --batch N
//! --http-connections C` does for the pike contender).
//!
//! The generator's payloads are binary (the stamp), so each item carries
//! them as `payload_base64`; the device receives the bytes. The answer is
//! read whole (`Content-Length`) and each item's result counted: a receipt
//! (`message_id`) or an `error`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conn;
use super::pike_mqtt::push_base64;

/// Longest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest answer body accepted (1,000 receipts are ~70 KB).
const MAX_BODY: usize = 4 << 20;
/// Longest wait for one request's answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection to the HTTP API.
#[derive(Debug)]
pub(crate) struct HttpConn {
    stream: TcpStream,
    /// Bytes read past the last answer (none with one request in flight,
    /// kept for safety).
    buf: Vec<u8>,
    pub(crate) addr: SocketAddr,
    pub(crate) source: Option<IpAddr>,
}

/// An HTTP answer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl HttpConn {
    /// Dials the API at `addr` from `source`.
    pub(crate) async fn open(addr: SocketAddr, source: Option<IpAddr>) -> Result<Self, String> {
        let stream = conn::dial(addr, source, None).await?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(8 * 1024),
            addr,
            source,
        })
    }

    /// Writes `request` and reads its answer, within [`REQUEST_TIMEOUT`].
    pub(crate) async fn exchange(&mut self, request: &[u8]) -> Result<Answer, String> {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.stream
                .write_all(request)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut chunk = [0u8; 16 * 1024];
            loop {
                if let Some((answer, used)) = take_answer(&self.buf)? {
                    self.buf.drain(..used);
                    return Ok(answer);
                }
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("the API closed the connection".to_owned());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

/// The `POST /v1/push/batch` request with JSON `body`.
pub(crate) fn batch_request(host: &str, api_key: &str, body: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/push/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// Appends one transient push of `payload` to `alias` of `biz` (both
/// plain names: [`super::pike_mqtt::is_name`]) to a batch body.
pub(crate) fn push_item(biz: &str, alias: &str, payload: &[u8], out: &mut String) {
    out.push_str(r#"{"biz":""#);
    out.push_str(biz);
    out.push_str(r#"","reliable":false,"alias":""#);
    out.push_str(alias);
    out.push_str(r#"","payload_base64":""#);
    push_base64(payload, out);
    out.push_str(r#""}"#);
}

/// One whole answer at the front of `data` and the bytes it took;
/// `Ok(None)` when more bytes are needed.
pub(crate) fn take_answer(data: &[u8]) -> Result<Option<(Answer, usize)>, String> {
    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        if data.len() > MAX_HEAD {
            return Err("answer head too long".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&data[..end]).map_err(|_| "answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!("Transfer-Encoding {value:?} is not read"));
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(format!("answer body of {length} bytes"));
    }
    let start = end + 4;
    if data.len() < start + length {
        return Ok(None);
    }
    let answer = Answer {
        status,
        body: data[start..start + length].to_vec(),
    };
    Ok(Some((answer, start + length)))
}

/// Per item of a 200 batch answer, whether it was pushed (a receipt with a
/// `message_id`, not an `error`).
pub(crate) fn item_results(body: &[u8]) -> Result<Vec<bool>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("batch answer: {e}"))?;
    let results = value["results"]
        .as_array()
        .ok_or("batch answer without `results`")?;
    Ok(results
        .iter()
        .map(|r| r.get("message_id").is_some() && r.get("error").is_none())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let mut body = String::from(r#"{"pushes":["#);
        push_item("bench", "x1d7", b"\x00\xffhi", &mut body);
        body.push_str("]}");
        assert_eq!(
            body,
            r#"{"pushes":[{"biz":"bench","reliable":false,"alias":"x1d7","payload_base64":"AP9oaQ=="}]}"#
        );
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["pushes"][0]["alias"], "x1d7");
        let request = batch_request("127.0.0.1:9380", "k", &body);
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("POST /v1/push/batch HTTP/1.1\r\nHost: 127.0.0.1:9380\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer k\r\n"));
        assert!(text.contains(&format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len())));
    }

    #[test]
    fn answers_at_every_split() {
        let body = r#"{"results":[{"message_id":"1","stored":0,"online":1,"dropped":0},{"error":{"code":"unavailable","message":"x"}}]}"#;
        let wire = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}HTTP/1.1 401",
            body.len()
        );
        let wire = wire.as_bytes();
        let whole = wire.len() - "HTTP/1.1 401".len();
        for split in 0..whole {
            assert_eq!(take_answer(&wire[..split]).unwrap(), None, "split {split}");
        }
        let (answer, used) = take_answer(wire).unwrap().unwrap();
        assert_eq!(used, whole);
        assert_eq!(answer.status, 200);
        assert_eq!(item_results(&answer.body).unwrap(), [true, false]);
        // No body.
        let unauthorized = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        let (answer, used) = take_answer(unauthorized).unwrap().unwrap();
        assert_eq!((answer.status, used), (401, unauthorized.len()));
        assert!(answer.body.is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(take_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(take_answer(b"SMTP 220\r\n\r\n").is_err());
        assert!(take_answer(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(take_answer(&vec![b'a'; MAX_HEAD + 1]).is_err());
        assert!(item_results(b"{}").is_err());
        assert!(item_results(b"not json").is_err());
    }

    /// One exchange against a scripted API on loopback, the answer cut in
    /// two writes.
    #[tokio::test]
    async fn exchange_reads_one_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.ends_with(b"]}") {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"resu")
                .await
                .unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"lts\":[]}").await.unwrap();
            got
        });
        let mut conn = HttpConn::open(addr, None).await.unwrap();
        let request = batch_request(&addr.to_string(), "k", r#"{"pushes":[]}"#);
        let answer = conn.exchange(&request).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(item_results(&answer.body).unwrap(), Vec::<bool>::new());
        assert_eq!(server.await.unwrap(), request);
    }
}
