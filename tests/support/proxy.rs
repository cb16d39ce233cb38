//! A fault-injecting HTTP/1.1 proxy in front of a real S3 endpoint (plain HTTP).
//!
//! The binary is pointed at `Proxy::url()` with `--force-path-style`; each request is forwarded
//! byte for byte (the Host header stays as the client sent it, so SigV4 signatures stay valid)
//! unless a rule says otherwise. It serves from std threads, so no test runtime is needed.
//! One request per client connection: every response is relayed with `Connection: close`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// An S3 operation, classified from the method, the query string and `x-amz-copy-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    PutObject,
    CopyObject,
    DeleteObjects,
    DeleteObject,
    GetObject,
    HeadObject,
    Other,
}

/// What the proxy does instead of (or before) forwarding a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answers with this status and an S3 XML error body (Code InternalError).
    Status(u16),
    /// 503 with Code SlowDown.
    SlowDown,
    /// Code ExpiredToken with this status: AWS documents 400 for S3; 403 is also seen.
    ExpiredToken(u16),
    /// Reads half of the request body, then closes the socket without answering.
    ResetMidBody,
    /// Answers with this status and body, verbatim (e.g. a 200 DeleteObjects result with errors).
    Reply(u16, String),
    /// Waits, then forwards the request normally.
    Delay(Duration),
    /// Forwards the request, relays the response head and half its body, then waits.
    StallBody(Duration),
    /// Relays all but the last N bytes of the response body, then waits before the rest
    /// (a gzip object's 8-byte trailer, say).
    StallBodyEnd(usize, Duration),
    /// Forwards the request; a 404 answer becomes a bare 403, as AWS answers HeadObject of a
    /// missing key to a caller without s3:ListBucket.
    NotFoundAsForbidden,
    /// The inner fault on the rule's Nth request and on every later one.
    Always(Box<Fault>),
}

/// A request or response head: raw bytes, first line, headers.
type Head = (Vec<u8>, String, Vec<(String, String)>);

struct Rule {
    op: Op,
    nth: usize,
    fault: Fault,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    counts: HashMap<Op, usize>,
    log: Vec<(Op, String)>,
    /// Every request's headers, in order, with its operation.
    headers: Vec<(Op, Vec<(String, String)>)>,
    /// A stricter store's rules, checked before forwarding.
    strict: Strict,
    /// Sizes of the parts sent, by upload id and part number.
    parts: HashMap<String, std::collections::BTreeMap<u32, usize>>,
}

/// Rules of S3-compatible stores stricter than S3, which no server here has.
#[derive(Default, Clone, Copy)]
struct Strict {
    /// Cloudflare R2: CompleteMultipartUpload fails unless every part but the last has the
    /// same size.
    equal_parts: bool,
    /// Scaleway: part numbers only up to this (1,000).
    max_parts: Option<u32>,
    /// Stores without conditional writes: a request with `If-None-Match` is 501 NotImplemented.
    no_conditional_writes: bool,
}

pub struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:9000`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("plain http upstream")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, up) = (st.clone(), upstream.clone());
                thread::spawn(move || {
                    let _ = serve(conn, &up, &st);
                });
            }
        });
        Proxy { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A proxy that answers as AWS does a caller without s3:ListBucket (the backup policy):
    /// HeadObject of a missing key is 403, not 404.
    pub fn like_aws_without_list_bucket(upstream: &str) -> Proxy {
        let proxy = Proxy::start(upstream);
        proxy.fail(
            Op::HeadObject,
            1,
            Fault::Always(Box::new(Fault::NotFoundAsForbidden)),
        );
        proxy
    }

    /// A proxy that answers like Cloudflare R2 (and the stores that copied it): a completed
    /// multipart upload whose non-trailing parts differ in size is refused with R2's error.
    pub fn like_r2(upstream: &str) -> Proxy {
        let proxy = Proxy::start(upstream);
        proxy.state.lock().unwrap().strict.equal_parts = true;
        proxy
    }

    /// A proxy for a store that implements no conditional writes: any request carrying
    /// `If-None-Match` is answered 501 NotImplemented (the lock, PutObject and
    /// CompleteMultipartUpload alike).
    pub fn without_conditional_writes(upstream: &str) -> Proxy {
        let proxy = Proxy::start(upstream);
        proxy.state.lock().unwrap().strict.no_conditional_writes = true;
        proxy
    }

    /// A proxy that refuses part numbers above `max` (Scaleway allows 1,000).
    pub fn with_max_parts(upstream: &str, max: u32) -> Proxy {
        let proxy = Proxy::start(upstream);
        proxy.state.lock().unwrap().strict.max_parts = Some(max);
        proxy
    }

    /// The sizes of the parts of every upload seen, in part-number order.
    pub fn part_sizes(&self) -> Vec<Vec<usize>> {
        let st = self.state.lock().unwrap();
        st.parts
            .values()
            .map(|p| p.values().copied().collect())
            .collect()
    }

    /// Applies `fault` to the `nth` (1-based) request of `op`.
    pub fn fail(&self, op: Op, nth: usize, fault: Fault) -> &Self {
        assert!(nth >= 1, "nth is 1-based");
        self.state
            .lock()
            .unwrap()
            .rules
            .push(Rule { op, nth, fault });
        self
    }

    /// Requests of `op` seen so far, faulted ones included.
    pub fn count(&self, op: Op) -> usize {
        *self.state.lock().unwrap().counts.get(&op).unwrap_or(&0)
    }

    /// The headers of every `op` request seen, in order (names as sent).
    pub fn request_headers(&self, op: Op) -> Vec<Vec<(String, String)>> {
        let st = self.state.lock().unwrap();
        st.headers
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Every request seen, in order: operation and request line.
    pub fn log(&self) -> Vec<(Op, String)> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn classify(method: &str, target: &str, headers: &[(String, String)]) -> Op {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
    };
    let copy = header(headers, "x-amz-copy-source").is_some();
    match method {
        "PUT" if has("partNumber") && has("uploadId") => Op::UploadPart,
        "PUT" if copy => Op::CopyObject,
        "PUT" if !has("uploadId") => Op::PutObject,
        "POST" if has("uploads") => Op::CreateMultipartUpload,
        "POST" if has("uploadId") => Op::CompleteMultipartUpload,
        "POST" if has("delete") => Op::DeleteObjects,
        "DELETE" if has("uploadId") => Op::AbortMultipartUpload,
        "DELETE" => Op::DeleteObject,
        // Path style: `/bucket/key`; bucket-level GETs (listings) have no key.
        "GET" if path_has_key(target) && !has("uploadId") => Op::GetObject,
        "HEAD" if path_has_key(target) => Op::HeadObject,
        _ => Op::Other,
    }
}

fn path_has_key(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    path.trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a head (request or response) up to the blank line: raw bytes, first line, headers.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut first = None;
    let mut headers = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            break;
        }
        if first.is_none() {
            first = Some(text);
        } else if let Some((k, v)) = text.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((raw, first.unwrap_or_default(), headers)))
}

/// Copies a chunked body verbatim (chunks, terminator and trailers) into `out`.
fn read_chunked(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        out.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size_hex = text
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let size = usize::from_str_radix(&size_hex, 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_hex:?}")))?;
        if size == 0 {
            // Trailers up to the blank line.
            loop {
                let mut t = Vec::new();
                if r.read_until(b'\n', &mut t)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                out.extend_from_slice(&t);
                if t == b"\r\n" || t == b"\n" {
                    return Ok(());
                }
            }
        }
        let start = out.len();
        out.resize(start + size + 2, 0);
        r.read_exact(&mut out[start..])?;
    }
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    header(headers, "content-length").and_then(|v| v.parse().ok())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn error_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn query_value<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Records part sizes, and answers with the stricter store's error where it would refuse.
fn strict_answer(
    state: &Mutex<State>,
    op: Op,
    target: &str,
    headers: &[(String, String)],
    body_len: usize,
) -> Option<Vec<u8>> {
    let mut st = state.lock().unwrap();
    if st.strict.no_conditional_writes && header(headers, "if-none-match").is_some() {
        return Some(error_response(
            501,
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
        ));
    }
    let id = query_value(target, "uploadId")?.to_string();
    match op {
        Op::UploadPart => {
            let number: u32 = query_value(target, "partNumber")?.parse().ok()?;
            if st.strict.max_parts.is_some_and(|max| number > max) {
                return Some(error_response(
                    400,
                    "InvalidArgument",
                    "Part number must be an integer between 1 and 1000, inclusive",
                ));
            }
            let size = header(headers, "x-amz-decoded-content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(body_len);
            st.parts.entry(id).or_default().insert(number, size);
            None
        }
        Op::CompleteMultipartUpload if st.strict.equal_parts => {
            let sizes: Vec<usize> = st.parts.get(&id)?.values().copied().collect();
            let leading = &sizes[..sizes.len().saturating_sub(1)];
            // R2 also refuses a last part larger than the others.
            let last_too_big = leading
                .first()
                .is_some_and(|&first| sizes.last().is_some_and(|&last| last > first));
            if leading.windows(2).any(|w| w[0] != w[1]) || last_too_big {
                return Some(error_response(
                    400,
                    "InvalidPart",
                    "All non-trailing parts must have the same length.",
                ));
            }
            None
        }
        _ => None,
    }
}

fn serve(client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let Some((head, line, headers)) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let op = classify(&method, &target, &headers);

    let fault = {
        let mut st = state.lock().unwrap();
        let n = {
            let c = st.counts.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        st.log.push((op, line.clone()));
        st.headers.push((op, headers.clone()));
        st.rules.iter().find_map(|r| match &r.fault {
            _ if r.op != op => None,
            Fault::Always(inner) if n >= r.nth => Some((**inner).clone()),
            f if n == r.nth => Some(f.clone()),
            _ => None,
        })
    };

    // A client that waits for `100 Continue` gets it from us; the upstream's is skipped below.
    if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    if let Some(Fault::ResetMidBody) = fault {
        let len = content_length(&headers).unwrap_or(2);
        let mut half = vec![0u8; (len / 2).max(1)];
        let _ = reader.read_exact(&mut half);
        // Unread data in the receive buffer makes the kernel send RST on close.
        drop(reader);
        let _ = writer.shutdown(Shutdown::Both);
        return Ok(());
    }

    let mut body = Vec::new();
    if is_chunked(&headers) {
        read_chunked(&mut reader, &mut body)?;
    } else if let Some(len) = content_length(&headers) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }

    let strict = strict_answer(state, op, &target, &headers, body.len());
    let canned = match fault {
        Some(Fault::Status(s)) => Some(error_response(
            s,
            if s == 501 {
                "NotImplemented"
            } else if s >= 500 {
                "InternalError"
            } else {
                "InvalidRequest"
            },
            "Injected by the test proxy.",
        )),
        Some(Fault::SlowDown) => Some(error_response(503, "SlowDown", "Reduce your request rate.")),
        Some(Fault::ExpiredToken(status)) => Some(error_response(
            status,
            "ExpiredToken",
            "The provided token has expired.",
        )),
        Some(Fault::Reply(status, ref body)) => Some(
            format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ),
        Some(Fault::Delay(d)) => {
            thread::sleep(d);
            None
        }
        _ => strict,
    };
    if let Some(resp) = canned {
        writer.write_all(&resp)?;
        writer.flush()?;
        let _ = writer.shutdown(Shutdown::Write);
        return Ok(());
    }

    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    up.flush()?;
    let mut up_reader = BufReader::new(up);
    let (status_line, resp_headers) = loop {
        let Some((_, status_line, resp_headers)) = read_head(&mut up_reader)? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let code: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&code) {
            continue;
        }
        break (status_line, resp_headers);
    };
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut resp_body = Vec::new();
    let no_body = method == "HEAD" || code == 204 || code == 304;
    if !no_body {
        if is_chunked(&resp_headers) {
            read_chunked(&mut up_reader, &mut resp_body)?;
        } else if let Some(len) = content_length(&resp_headers) {
            resp_body.resize(len, 0);
            up_reader.read_exact(&mut resp_body)?;
        } else {
            up_reader.read_to_end(&mut resp_body)?;
        }
    }
    // STS answers carry credentials: they become secrets that no output may show.
    let text = String::from_utf8_lossy(&resp_body);
    for tag in ["SecretAccessKey", "SessionToken"] {
        for part in text.split(&format!("<{tag}>")).skip(1) {
            if let Some((value, _)) = part.split_once(&format!("</{tag}>")) {
                crate::support::secret(value);
            }
        }
    }
    if matches!(fault, Some(Fault::NotFoundAsForbidden)) && code == 404 {
        let resp = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        writer.write_all(resp)?;
        writer.flush()?;
        return Ok(());
    }
    let mut out = format!("{status_line}\r\n");
    for (k, v) in &resp_headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    writer.write_all(out.as_bytes())?;
    let stall = match fault {
        Some(Fault::StallBody(d)) => Some((resp_body.len() / 2, d)),
        Some(Fault::StallBodyEnd(n, d)) => Some((resp_body.len().saturating_sub(n), d)),
        _ => None,
    };
    if let Some((at, d)) = stall {
        writer.write_all(&resp_body[..at])?;
        writer.flush()?;
        thread::sleep(d);
        writer.write_all(&resp_body[at..])?;
        writer.flush()?;
        return Ok(());
    }
    writer.write_all(&resp_body)?;
    writer.flush()?;
    let _ = writer.shutdown(Shutdown::Write);
    Ok(())
}
