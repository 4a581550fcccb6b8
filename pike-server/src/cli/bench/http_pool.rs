//! The publisher's HTTP client: a few keep-alive HTTP/1.1 connections to
//! the gateway's API, one request in flight on each, written and read by
//! hand.
//!
//! A general client (reqwest) costs tens of microseconds of CPU per
//! request; the generator shares one core with thousands of receivers, so
//! the publisher builds each request as bytes with a prepared head and
//! reads just the status line, `content-length` and the body. Only what
//! the gateway's API answers is understood (`content-length` bodies, no
//! chunked encoding); anything else is an error on that connection, which
//! is then dropped and dialled again for its next request.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest response body accepted (the API's answers are tiny).
const MAX_BODY: usize = 1024 * 1024;

/// What the gateway answered to one publish or push.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    /// Taken. `online`: connections that got it (pushes; `None` for room
    /// publishes); `dropped`: connections whose queue was full.
    Accepted { online: Option<u64>, dropped: u64 },
    /// A droppable room message shed by the room's rate caps.
    Shed,
    /// Not taken: a status other than 2xx (status and body).
    Refused(String),
}

impl Answer {
    /// Classifies a response of `POST /v1/push` or
    /// `POST /v1/rooms/{room}/publish`.
    pub(crate) fn classify(status: u16, body: &[u8]) -> Self {
        if !(200..300).contains(&status) {
            return Self::Refused(format!("{status}: {}", String::from_utf8_lossy(body)));
        }
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if value["dropped"].as_bool() == Some(true) {
            return Self::Shed;
        }
        Self::Accepted {
            online: value["online"].as_u64(),
            dropped: value["dropped"].as_u64().unwrap_or(0),
        }
    }
}

/// The answer of `POST /v1/push/batch`, as far as the publisher reads it.
#[derive(Debug, Deserialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
}

/// One item's result: a receipt or an error.
#[derive(Debug, Deserialize)]
struct BatchItem {
    #[serde(default)]
    online: Option<u64>,
    #[serde(default)]
    dropped: u64,
    #[serde(default)]
    error: Option<BatchError>,
}

/// A failed item's error.
#[derive(Debug, Deserialize)]
struct BatchError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Answer {
    /// Classifies a response of `POST /v1/push/batch` of `items` pushes:
    /// one answer per item when the batch was taken (2xx), else the error
    /// of the whole request (status and body).
    pub(crate) fn classify_batch(
        status: u16,
        body: &[u8],
        items: usize,
    ) -> Result<Vec<Self>, String> {
        if !(200..300).contains(&status) {
            return Err(format!("{status}: {}", String::from_utf8_lossy(body)));
        }
        let answer: BatchAnswer = serde_json::from_slice(body)
            .map_err(|e| format!("{status}: unreadable batch answer: {e}"))?;
        if answer.results.len() != items {
            return Err(format!(
                "{status}: {} results for {items} pushes",
                answer.results.len()
            ));
        }
        Ok(answer
            .results
            .into_iter()
            .map(|item| match item.error {
                Some(error) => Self::Refused(format!("{}: {}", error.code, error.message)),
                None => Self::Accepted {
                    online: item.online,
                    dropped: item.dropped,
                },
            })
            .collect())
    }
}

/// The head of a response.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct Head {
    status: u16,
    /// Bytes of the head, with its blank line.
    len: usize,
    content_length: usize,
    /// The server closes the connection after this response.
    close: bool,
}

/// Parses the response head at the start of `buf`: `Ok(None)` while it is
/// incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("response head too long".into())
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let mut content_length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line: {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| format!("bad content-length: {value:?}"))?;
            if n > MAX_BODY {
                return Err(format!("response body too long: {n}"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unsupported transfer-encoding: {value:?}"));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(Head {
        status,
        len: end + 4,
        content_length: content_length.unwrap_or(0),
        close,
    }))
}

/// Requests to one API path: the head is prepared once.
#[derive(Clone, Debug)]
pub(crate) struct RequestTemplate {
    /// Everything up to the `content-length` value.
    head: String,
}

impl RequestTemplate {
    /// `POST path` to `host` with the API key as bearer token and a JSON
    /// body.
    pub(crate) fn post_json(host: &str, path: &str, api_key: &str) -> Self {
        Self {
            head: format!(
                "POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {api_key}\r\n\
                 content-type: application/json\r\ncontent-length: "
            ),
        }
    }

    /// The request with `body`.
    pub(crate) fn with_body(&self, body: &str) -> Vec<u8> {
        let length = body.len().to_string();
        let mut bytes = Vec::with_capacity(self.head.len() + length.len() + 4 + body.len());
        bytes.extend_from_slice(self.head.as_bytes());
        bytes.extend_from_slice(length.as_bytes());
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

/// One keep-alive connection, dialled when first used and again after an
/// error.
#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Sends `request` and reads the answer, within `limit`; `read` makes
    /// the answer of the status and body. A kept-alive connection that the
    /// server closed while it was idle (the gateway closes connections idle
    /// past its header-read timeout) is dialled again and the request sent
    /// once more: nothing of it was answered, so it was not handled.
    async fn round_trip<T>(
        &mut self,
        request: &[u8],
        limit: Duration,
        read: impl FnOnce(u16, &[u8]) -> T,
    ) -> Result<T, String> {
        let exchange = async {
            let reused = self.stream.is_some();
            match self.exchange(request).await {
                Err(Failure::Unanswered(_)) if reused => {
                    self.stream = None;
                    self.exchange(request).await
                }
                other => other,
            }
        };
        let result = match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(Failure::Unanswered(e) | Failure::Broken(e))) => Err(e),
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        let head = match result {
            Ok(head) => head,
            Err(e) => {
                self.stream = None;
                return Err(e);
            }
        };
        let end = head.len + head.content_length;
        let answer = read(head.status, &self.buf[head.len..end]);
        self.buf.drain(..end);
        if head.close {
            self.stream = None;
        }
        Ok(answer)
    }

    /// Sends `request` and reads the head and body of the answer into
    /// `buf`.
    async fn exchange(&mut self, request: &[u8]) -> Result<Head, Failure> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| Failure::Broken(format!("connect {}: {e}", self.addr)))?;
                let _ = stream.set_nodelay(true);
                self.buf.clear();
                self.stream.insert(stream)
            }
        };
        stream
            .write_all(request)
            .await
            .map_err(|e| Failure::Unanswered(format!("write: {e}")))?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf).map_err(Failure::Broken)? {
                break head;
            }
            let answered = !self.buf.is_empty();
            read_more(stream, &mut self.buf).await.map_err(|e| {
                if answered {
                    Failure::Broken(e)
                } else {
                    Failure::Unanswered(e)
                }
            })?;
        };
        let end = head.len + head.content_length;
        while self.buf.len() < end {
            read_more(stream, &mut self.buf)
                .await
                .map_err(Failure::Broken)?;
        }
        Ok(head)
    }
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    /// Not a byte of the answer arrived: on a kept-alive connection, the
    /// server had closed it.
    Unanswered(String),
    /// Anything else.
    Broken(String),
}

/// Reads what the socket has into `buf`; end of stream is an error.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// A connection lent out for one request; it goes back to the pool when
/// dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    conn: Option<Conn>,
    back: mpsc::UnboundedSender<Conn>,
}

impl Lease {
    /// Sends `request` and reads the answer, within `limit`.
    pub(crate) async fn round_trip(
        &mut self,
        request: &[u8],
        limit: Duration,
    ) -> Result<Answer, String> {
        match &mut self.conn {
            Some(conn) => conn.round_trip(request, limit, Answer::classify).await,
            None => Err("no connection".into()),
        }
    }

    /// Sends the `POST /v1/push/batch` `request` of `items` pushes and
    /// reads the answer, within `limit`: one [`Answer`] per item, or the
    /// error of the whole request.
    pub(crate) async fn round_trip_batch(
        &mut self,
        request: &[u8],
        items: usize,
        limit: Duration,
    ) -> Result<Vec<Answer>, String> {
        match &mut self.conn {
            Some(conn) => conn
                .round_trip(request, limit, |status, body| {
                    Answer::classify_batch(status, body, items)
                })
                .await
                .and_then(|answers| answers),
            None => Err("no connection".into()),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.back.send(conn);
        }
    }
}

/// A fixed number of connections, at most one request in flight on each.
#[derive(Debug)]
pub(crate) struct HttpPool {
    size: usize,
    idle: Vec<Conn>,
    returned: mpsc::UnboundedReceiver<Conn>,
    back: mpsc::UnboundedSender<Conn>,
}

impl HttpPool {
    /// `size` (at least 1) connections to `addr`, dialled on first use.
    pub(crate) fn new(addr: SocketAddr, size: usize) -> Self {
        let size = size.max(1);
        let (back, returned) = mpsc::unbounded_channel();
        let idle = (0..size)
            .map(|_| Conn {
                addr,
                stream: None,
                buf: Vec::with_capacity(1024),
            })
            .collect();
        Self {
            size,
            idle,
            returned,
            back,
        }
    }

    /// A free connection, waiting for one until `deadline` (`None` then).
    pub(crate) async fn acquire(&mut self, deadline: Instant) -> Option<Lease> {
        while let Ok(conn) = self.returned.try_recv() {
            self.idle.push(conn);
        }
        let conn = match self.idle.pop() {
            Some(conn) => conn,
            None => tokio::time::timeout_at(deadline, self.returned.recv())
                .await
                .ok()??,
        };
        Some(Lease {
            conn: Some(conn),
            back: self.back.clone(),
        })
    }

    /// Connections lent out right now.
    pub(crate) fn lent(&mut self) -> usize {
        while let Ok(conn) = self.returned.try_recv() {
            self.idle.push(conn);
        }
        self.size - self.idle.len()
    }
}

/// The socket address of an `http://host:port` URL (the first address
/// the host resolves to).
pub(crate) fn resolve_http(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("the API URL must start with http:// (got {url:?})"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("no host in the API URL {url:?}"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .map_err(|e| format!("cannot resolve {authority:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
    Ok((addr, authority.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 13\r\n\r\n{\"offset\":42}";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            head,
            Head {
                status: 200,
                len: raw.len() - 13,
                content_length: 13,
                close: false
            }
        );
        // Incomplete.
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        // Close and no body.
        let head = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.content_length, head.close),
            (503, 0, true)
        );
    }

    #[test]
    fn odd_heads_are_errors() {
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_head(&[b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            Answer::classify(200, br#"{"offset":1767225600000017}"#),
            Answer::Accepted {
                online: None,
                dropped: 0
            }
        );
        assert_eq!(
            Answer::classify(200, br#"{"dropped":true,"reason":"room_rate"}"#),
            Answer::Shed
        );
        assert_eq!(
            Answer::classify(
                200,
                br#"{"message_id":"42","stored":0,"online":3,"dropped":1}"#
            ),
            Answer::Accepted {
                online: Some(3),
                dropped: 1
            }
        );
        assert!(matches!(
            Answer::classify(503, br#"{"error":{}}"#),
            Answer::Refused(m) if m.starts_with("503")
        ));
    }

    #[test]
    fn batch_answers_are_classified_per_item() {
        let body = br#"{"results":[{"message_id":"1","stored":0,"online":1,"dropped":0},{"error":{"code":"too_many_recipients","message":"over"}},{"message_id":"3","stored":1,"online":0,"dropped":2}]}"#;
        assert_eq!(
            Answer::classify_batch(200, body, 3),
            Ok(vec![
                Answer::Accepted {
                    online: Some(1),
                    dropped: 0
                },
                Answer::Refused("too_many_recipients: over".into()),
                Answer::Accepted {
                    online: Some(0),
                    dropped: 2
                },
            ])
        );
        assert!(Answer::classify_batch(200, body, 2).is_err());
        assert!(Answer::classify_batch(200, b"{}", 1).is_err());
        let refused = Answer::classify_batch(400, br#"{"error":{}}"#, 1).unwrap_err();
        assert!(refused.starts_with("400"), "{refused}");
    }

    #[test]
    fn requests_carry_their_length() {
        let template = RequestTemplate::post_json("127.0.0.1:9380", "/v1/push", "k");
        let request = String::from_utf8(template.with_body("{\"a\":1}")).unwrap();
        assert!(request.starts_with("POST /v1/push HTTP/1.1\r\nhost: 127.0.0.1:9380\r\n"));
        assert!(request.contains("authorization: Bearer k\r\n"));
        assert!(request.ends_with("content-length: 7\r\n\r\n{\"a\":1}"));
    }

    #[test]
    fn urls_resolve() {
        let (addr, host) = resolve_http("http://127.0.0.1:9380/").unwrap();
        assert_eq!(addr, "127.0.0.1:9380".parse().unwrap());
        assert_eq!(host, "127.0.0.1:9380");
        assert_eq!(
            resolve_http("http://127.0.0.1").unwrap().0,
            "127.0.0.1:80".parse().unwrap()
        );
        assert!(resolve_http("https://127.0.0.1:9380").is_err());
        assert!(resolve_http("http:///x").is_err());
    }

    #[tokio::test]
    async fn a_keep_alive_exchange_against_a_tiny_server() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers two requests on one connection, the second in two pieces.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            for answer in [
                &b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"offset\":42}"[..],
                &b"HTTP/1.1 200 OK\r\ncontent-length: 31\r\n\r\n{\"dropped\":true,\"reason\":\"x\"}  "[..],
            ] {
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                    if seen.ends_with(b"{}") {
                        break;
                    }
                }
                seen.clear();
                let (a, b) = answer.split_at(20);
                socket.write_all(a).await.unwrap();
                socket.flush().await.unwrap();
                socket.write_all(b).await.unwrap();
            }
        });
        let mut pool = HttpPool::new(addr, 1);
        let template = RequestTemplate::post_json("h", "/p", "k");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lease = pool.acquire(deadline).await.unwrap();
        assert_eq!(pool.lent(), 1);
        let answer = lease
            .round_trip(&template.with_body("{}"), Duration::from_secs(5))
            .await;
        assert_eq!(
            answer,
            Ok(Answer::Accepted {
                online: None,
                dropped: 0
            })
        );
        drop(lease);
        let mut lease = pool.acquire(deadline).await.unwrap();
        let answer = lease
            .round_trip(&template.with_body("{}"), Duration::from_secs(5))
            .await;
        assert_eq!(answer, Ok(Answer::Shed));
        drop(lease);
        assert_eq!(pool.lent(), 0);
        server.await.unwrap();
    }

    /// A kept-alive connection the server closed while idle is dialled
    /// again for the next request, which then succeeds.
    #[tokio::test]
    async fn a_connection_closed_while_idle_is_dialled_again() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let answer = &b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"offset\":42}"[..];
            let mut buf = vec![0u8; 4096];
            // First connection: one answer, then closed (as an idle
            // timeout would).
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read(&mut buf).await.unwrap();
            socket.write_all(answer).await.unwrap();
            drop(socket);
            closed_tx.send(()).unwrap();
            // The client comes back on a new connection.
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read(&mut buf).await.unwrap();
            socket.write_all(answer).await.unwrap();
        });
        let mut pool = HttpPool::new(addr, 1);
        let template = RequestTemplate::post_json("h", "/p", "k");
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted = Ok(Answer::Accepted {
            online: None,
            dropped: 0,
        });
        let mut lease = pool.acquire(deadline).await.unwrap();
        let answer = lease
            .round_trip(&template.with_body("{}"), Duration::from_secs(5))
            .await;
        assert_eq!(answer, accepted);
        drop(lease);
        closed_rx.await.unwrap();
        let mut lease = pool.acquire(deadline).await.unwrap();
        let answer = lease
            .round_trip(&template.with_body("{}"), Duration::from_secs(5))
            .await;
        assert_eq!(answer, accepted, "sent again on a new connection");
        drop(lease);
        server.await.unwrap();
    }
}
