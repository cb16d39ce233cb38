//! A fake GitHub Actions OIDC token endpoint on 127.0.0.1: checks the bearer request token and
//! the `audience` parameter like GitHub does, and issues RS256-signed JWTs with GitHub's claim
//! shape that expire in 5 minutes. No real server offers this here, hence the fake.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub const ISSUER: &str = "https://token.actions.githubusercontent.com";
pub const REPOSITORY: &str = "octo-org/octo-repo";
pub const SUB: &str = "repo:octo-org/octo-repo:ref:refs/heads/main";

#[derive(Default)]
struct State {
    requests: usize,
    issued: Vec<String>,
}

pub struct FakeGitHub {
    pub url: String,
    pub request_token: String,
    state: Arc<Mutex<State>>,
}

impl FakeGitHub {
    /// Answers `fail_first` requests with HTTP 500 before behaving.
    pub fn start(audience: &str, fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/token?api-version=2.0",
            listener.local_addr().unwrap()
        );
        let request_token = format!(
            // The `x` ends it, so one token is never a prefix of another's (`…tok1` of
            // `…tok12`), which the secret sweep would take for a leak inside a mask line.
            "ghs_request_{}x",
            crate::support::unique("tok").replace('-', "")
        );
        crate::support::secret(&request_token);
        let state = Arc::new(Mutex::new(State::default()));
        let (st, expected_token, expected_aud) =
            (state.clone(), request_token.clone(), audience.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (status, body) =
                    answer(&mut stream, &st, &expected_token, &expected_aud, fail_first);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            url,
            request_token,
            state,
        }
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// The environment a runner gives a job with `permissions: id-token: write`.
    pub fn job_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_REPOSITORY", REPOSITORY.into()),
            ("GITHUB_RUN_ID", "4242".into()),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", self.url.clone()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", self.request_token.clone()),
        ]
    }
}

fn answer(
    stream: &mut std::net::TcpStream,
    state: &Mutex<State>,
    expected_token: &str,
    expected_aud: &str,
    fail_first: usize,
) -> (&'static str, String) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = value.trim().to_string();
            }
        }
    }
    let mut st = state.lock().unwrap();
    st.requests += 1;
    if st.requests <= fail_first {
        return (
            "500 Internal Server Error",
            r#"{"message":"try again"}"#.into(),
        );
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let audience = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("audience="))
        .map(|a| {
            percent_encoding::percent_decode_str(a)
                .decode_utf8_lossy()
                .into_owned()
        });
    if !authorization.eq_ignore_ascii_case(&format!("bearer {expected_token}")) {
        return (
            "401 Unauthorized",
            r#"{"message":"bad request token"}"#.into(),
        );
    }
    if audience.as_deref() != Some(expected_aud) {
        return (
            "400 Bad Request",
            r#"{"message":"audience not allowed"}"#.into(),
        );
    }
    let token = jwt(expected_aud);
    crate::support::secret(&token);
    st.issued.push(token.clone());
    (
        "200 OK",
        serde_json::json!({ "count": 1, "value": token }).to_string(),
    )
}

/// A signed ID token for `audience` with the fake repository's `sub`.
pub fn jwt(audience: &str) -> String {
    jwt_with(audience, SUB)
}

pub fn jwt_with(audience: &str, sub: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": audience,
        "sub": sub,
        "repository": REPOSITORY,
        "repository_owner": "octo-org",
        "ref": "refs/heads/main",
        "workflow": "backup",
        "run_id": "4242",
        "jti": crate::support::unique("jti"),
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key".into());
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../fixtures/oidc-test-key.pem"))
            .unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
