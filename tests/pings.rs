//! Health-check pings (healthchecks.io's protocol) against a sink that records what it gets:
//! start, then success with the JSON outcome or fail with the error line; a dead, slow or
//! failing target only warns; the URL, which holds the check's token, is never printed.

use crate::support::{script, secret, unique, Pg, Run, Store};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// How the sink answers.
#[derive(Clone, Copy)]
pub enum Answer {
    Ok,
    Status(u16),
    /// Reads the request and never answers.
    Never,
    /// Never answers a request whose path (before `?`) ends with this; answers the others 200.
    NeverOn(&'static str),
    /// Answers 307 to this origin, same path (a monitor sending the client elsewhere).
    Redirect(&'static str),
}

/// One request the sink received: method, path (with query), body.
pub type Hit = (String, String, String);

pub struct Sink {
    pub base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Sink {
    pub fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.lock().unwrap().push((
                        method,
                        path.clone(),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    let mut stream = stream;
                    let silent = match answer {
                        Answer::Never => true,
                        Answer::NeverOn(end) => path.split('?').next().unwrap_or("").ends_with(end),
                        _ => false,
                    };
                    if silent {
                        std::thread::sleep(std::time::Duration::from_secs(60));
                        return;
                    }
                    let (status, location) = match answer {
                        Answer::Redirect(origin) => (
                            "307 Elsewhere".to_string(),
                            format!("Location: {origin}{path}\r\n"),
                        ),
                        Answer::Status(code) => (format!("{code} Oops"), String::new()),
                        _ => ("200 OK".to_string(), String::new()),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        Self { base, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

/// A check URL as healthchecks.io gives it, registered as a secret (its mask line is the only
/// place it may appear), and its token.
pub fn check_url(sink: &Sink) -> (String, String) {
    let token = format!("{}-4f1c-9a2b-{}", unique("chk"), "7d3e5f60a1b2");
    let url = format!("{}/ping/{token}", sink.base);
    secret(&url);
    (url, token)
}

fn db() -> String {
    let db = unique("ping");
    Pg::create_db(&db);
    Pg::psql(
        &Pg::url(&db),
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g",
    );
    db
}

/// Success: `/start`, then the check URL itself with the JSON outcome. Failure (a pg_dump that
/// fails): `/start`, then `/fail` with the error line the run printed.
#[tokio::test]
async fn pings_frame_a_backup_that_succeeds_and_one_that_fails() {
    let store = Store::Moto;
    let bucket = store.bucket("ping").await;
    let db = db();
    let sink = Sink::start(Answer::Ok);
    let (url, token) = check_url(&sink);
    let path = format!("/ping/{token}");
    let key = Run::backup(store, &bucket, &Pg::url(&db), &["--ping-url", &url]).key();
    let hits = sink.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(
        (hits[0].0.as_str(), hits[0].1.clone()),
        ("POST", format!("{path}/start"))
    );
    assert_eq!(
        (hits[1].0.as_str(), hits[1].1.clone()),
        ("POST", path.clone())
    );
    let outcome: serde_json::Value = serde_json::from_str(&hits[1].2).expect("a JSON outcome");
    assert_eq!(outcome["key"], key);
    assert_eq!(outcome["database"], db);

    let failing = script(
        "pg_dump",
        "if [ \"$1\" = \"--version\" ]; then echo \"pg_dump (PostgreSQL) 99.1\"; exit 0; fi\n\
         echo 'pg_dump: error: query failed: permission denied for table t' >&2; exit 1",
    );
    let out = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &[
            "--ping-url",
            &url,
            "--pg-dump-path",
            failing.to_str().unwrap(),
        ],
    )
    .env("PING_URL", "http://127.0.0.1:1/ignored-the-flag-wins")
    .run();
    let line = out.fails(1, &["pg_dump"]).to_string();
    assert!(!out.stderr.contains(&token), "{}", out.stderr);
    let hits = sink.hits();
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert_eq!(hits[2].1, format!("{path}/start"));
    assert_eq!(hits[3].1, format!("{path}/fail"));
    assert_eq!(
        format!("error: {}", hits[3].2),
        line,
        "the /fail body is the error line"
    );
    // Only what the other checks see: no backup of the failed run.
    assert_eq!(store.keys_in(&bucket).await, vec![key]);
}

/// A target that refuses connections, answers 500 or never answers: each ping is tried twice
/// and then warned about, by host only; the backup's outcome is unchanged (exit 0).
#[tokio::test]
async fn a_dead_failing_or_silent_ping_target_only_warns() {
    let store = Store::S3sFs;
    let bucket = store.bucket("ping-dead").await;
    let db = db();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!(
            "http://127.0.0.1:{port}/ping/{}",
            unique("dead-token-abcdef")
        )
    };
    secret(&dead);
    let failing = Sink::start(Answer::Status(500));
    let silent = Sink::start(Answer::Never);
    for (url, sink, why) in [
        (dead.clone(), None, "cannot connect"),
        (
            check_url(&failing).0,
            Some(&failing),
            "it answered HTTP 500",
        ),
        (check_url(&silent).0, Some(&silent), "no answer within 1 s"),
    ] {
        let out = Run::backup(store, &bucket, &Pg::url(&db), &["--ping-url", &url])
            .env("PGS3_DEBUG_PING_TIMEOUT_SECS", "1")
            .run();
        let json = out.ok();
        assert!(json["key"].as_str().is_some());
        let token = url.rsplit('/').next().unwrap();
        assert!(!out.stderr.contains(token), "{}", out.stderr);
        let origin = url.split("/ping/").next().unwrap();
        for what in ["(start)", "(success)"] {
            assert!(
                out.stderr.contains(&format!(
                    "health-check ping {what} to {origin}/… failed: {why}"
                )),
                "{what} {why}: {}",
                out.stderr
            );
        }
        if let Some(sink) = sink {
            // Two attempts each: start, start, success, success.
            assert_eq!(sink.hits().len(), 4, "{why}: {:?}", sink.hits());
            sink.hits.lock().unwrap().clear();
        }
    }
}

/// A ping URL that is not one is a usage error before anything runs, and is not quoted.
#[tokio::test]
async fn a_bad_ping_url_is_refused_before_anything_runs() {
    let store = Store::Moto;
    let bucket = store.bucket("ping-bad").await;
    let db = db();
    for (bad, why) in [
        (
            "ftp://hc.example/secret-token-1",
            "does not start with http:// or https://",
        ),
        // The part before the first `:` parses as the scheme: it is not quoted either.
        (
            "secret-token-4:https://hc.example/x",
            "does not start with http:// or https://",
        ),
        ("hc-ping.com/secret-token-2", "not a URL"),
        ("https://hc.example/secret-token-3#x", "fragment"),
    ] {
        let out = Run::backup(store, &bucket, &Pg::url(&db), &["--ping-url", bad]).run();
        let line = out.fails(2, &["--ping-url", why]);
        assert!(!line.contains("secret-token"), "{line}");
    }
    assert!(store.keys_in(&bucket).await.is_empty());
}

/// A backup stopped by SIGTERM mid-dump exits 143 and still tells the monitor: `/fail` with
/// the line it printed, within the few seconds a cancelled job allows.
#[tokio::test]
async fn a_stopped_backup_pings_fail() {
    let store = Store::Moto;
    let bucket = store.bucket("ping-stop").await;
    let db = db();
    let sink = Sink::start(Answer::Ok);
    let (url, token) = check_url(&sink);
    let slow = crate::support::fake_pg_dump("sleep 30");
    let child = Run::backup(
        store,
        &bucket,
        &Pg::url(&db),
        &["--ping-url", &url, "--pg-dump-path", slow.to_str().unwrap()],
    )
    .spawn();
    let started = std::time::Instant::now();
    while sink.hits().is_empty() && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = std::time::Instant::now();
    let out: crate::support::Done = child.wait_with_output().unwrap().into();
    assert_eq!(out.code, 143, "{}", out.stderr);
    assert!(stopped.elapsed().as_secs() < 8, "{:?}", stopped.elapsed());
    let hits = sink.hits();
    let paths: Vec<&str> = hits.iter().map(|h| h.1.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{token}/start"),
            format!("/ping/{token}/fail")
        ]
    );
    assert!(
        out.stderr.contains(&format!("error: {}", hits[1].2)),
        "{}\n{:?}",
        out.stderr,
        hits[1]
    );
}

/// A signal while a ping waits for a silent monitor (10 s, twice) neither outlasts the grace nor
/// changes what the run says: during `start`, the backup stops before anything is written and
/// `/fail` is sent; during the success ping, the run says the backup is complete, not that it
/// "stopped before it finished cleaning up".
#[tokio::test]
async fn a_signal_during_a_slow_ping_stops_within_the_grace_and_says_what_happened() {
    let store = Store::Moto;
    let bucket = store.bucket("ping-sig").await;
    let db = db();
    for (end, says) in [
        ("/start", "stopped before anything was written"),
        ("/p", "stopped as it finished: what it printed is complete"),
    ] {
        let sink = Sink::start(Answer::NeverOn(end));
        let url = format!("{}/ping/tok-{}/p", sink.base, unique("sig"));
        secret(&url);
        let child = Run::backup(store, &bucket, &Pg::url(&db), &["--ping-url", &url]).spawn();
        let started = std::time::Instant::now();
        while !sink
            .hits()
            .iter()
            .any(|h| h.1.split('?').next().unwrap().ends_with(end))
            && started.elapsed().as_secs() < 30
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let stopped = std::time::Instant::now();
        let out: crate::support::Done = child.wait_with_output().unwrap().into();
        assert_eq!(out.code, 143, "{}", out.stderr);
        assert!(stopped.elapsed().as_secs() < 4, "{:?}", stopped.elapsed());
        assert!(out.stderr.contains(says), "{end}: {}", out.stderr);
        assert!(!out.stderr.contains("cleaning up"), "{end}: {}", out.stderr);
        if end == "/start" {
            let hits = sink.hits();
            assert!(hits.iter().any(|h| h.1.ends_with("/p/fail")), "{hits:?}");
        }
    }
}

/// A monitor that redirects is not followed: the body and the URL (as `Referer`) would go to
/// wherever it points. The ping warns; the backup is unchanged.
#[tokio::test]
async fn a_redirecting_monitor_is_not_followed() {
    let store = Store::Moto;
    let bucket = store.bucket("ping-redir").await;
    let db = db();
    let elsewhere = Sink::start(Answer::Ok);
    let origin: &'static str = Box::leak(
        elsewhere
            .base
            .replace("127.0.0.1", "localhost")
            .into_boxed_str(),
    );
    let sink = Sink::start(Answer::Redirect(origin));
    let (url, token) = check_url(&sink);
    let out = Run::backup(store, &bucket, &Pg::url(&db), &["--ping-url", &url]).run();
    assert!(out.ok()["key"].as_str().is_some());
    assert!(out.stderr.contains("HTTP 307"), "{}", out.stderr);
    assert!(!out.stderr.contains(&token), "{}", out.stderr);
    assert_eq!(sink.hits().len(), 4, "{:?}", sink.hits());
    assert!(elsewhere.hits().is_empty(), "{:?}", elsewhere.hits());
}
