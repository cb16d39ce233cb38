//! Database connection strings: parses a URL or a libpq `key=value` string once, then derives
//! what `pg_dump` gets (everything but the password, which goes through `PGPASSWORD`) and what
//! tokio-postgres gets (only the options it supports; it rejects `verify-full` and `sslrootcert`).
//! It does not connect; see `preflight`.

use crate::error::usage;
use anyhow::Result;

/// libpq's connection keywords; anything else is rejected before any connection is tried.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Keywords tokio-postgres understands, passed on to it for the preflight connection.
const PREFLIGHT_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "options",
    "application_name",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
    "channel_binding",
    "load_balance_hosts",
];

/// Environment variables libpq reads for keywords the string left out.
const ENV_FALLBACKS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
];

/// Seconds to wait for a connection (and for the tool's own short queries) by default.
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 30;
const MAX_CONNECT_TIMEOUT: u64 = 3600;

/// libpq's `sslmode`, which decides TLS for both connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(usage!(
                    "sslmode `{other}` is invalid: use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    /// What tokio-postgres can express; certificate checks for `verify-*` are done by our TLS
    /// connector instead.
    fn preflight(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow | Self::Prefer => "prefer",
            Self::Require | Self::VerifyCa | Self::VerifyFull => "require",
        }
    }
}

/// A parsed connection: libpq keywords in order (without the password) and the password apart.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    params: Vec<(String, String)>,
    password: Option<String>,
}

// Never print the password, not even in debug output.
impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("params", &self.params)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ConnInfo {
    /// Parses a `postgres://` URL or a libpq `key=value` string; `None` means "from PG* variables".
    pub fn parse(input: Option<&str>) -> Result<Self> {
        Self::parse_with_connect_timeout(input, None)
    }

    /// [`parse`](Self::parse), with `--connect-timeout` (when given) in place of the string's
    /// or `PGCONNECT_TIMEOUT`'s `connect_timeout`, which is then not judged at all.
    pub fn parse_with_connect_timeout(input: Option<&str>, flag: Option<&str>) -> Result<Self> {
        let pairs = match input.map(str::trim) {
            None | Some("") => Vec::new(),
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                parse_url(s)?
            }
            Some(s) if s.contains("://") => {
                let scheme = s.split_once("://").map_or("", |(scheme, _)| scheme);
                let scheme = if scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                {
                    scheme
                } else {
                    "?"
                };
                return Err(usage!(
                    "database URL scheme `{scheme}://` is not supported: use postgres:// or postgresql://"
                ));
            }
            Some(s) => parse_keyword_value(s)?,
        };
        let mut info = ConnInfo {
            params: Vec::new(),
            password: None,
        };
        // In `key=value` form a broken password value (an unquoted space) reads as more keys:
        // name a key only when no password is written in the string.
        let may_hold_password =
            !input.unwrap_or("").contains("://") && input.unwrap_or("").contains("password");
        for (key, value) in pairs {
            if !LIBPQ_KEYWORDS.contains(&key.as_str()) {
                let named = if may_hold_password {
                    "an option".to_string()
                } else {
                    format!("option `{}`", key.escape_debug())
                };
                return Err(usage!(
                    "database connection {named} is unknown: use libpq keywords such as host, port, dbname, user, sslmode (quote a password with spaces: password='...')"
                ));
            }
            info.set(key, value);
        }
        for (key, var) in ENV_FALLBACKS {
            if info.get(key).is_none() {
                if let Ok(value) = std::env::var(var) {
                    if !value.is_empty() {
                        info.set(key.to_string(), value);
                    }
                }
            }
        }
        if info.password.is_none() {
            info.password = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty());
        }
        info.sslmode()?;
        info.resolve_connect_timeout(flag)?;
        Ok(info)
    }

    /// Every connection gets a bounded wait: `--connect-timeout`, else the string's (or
    /// `PGCONNECT_TIMEOUT`'s) `connect_timeout`, else 30 s. libpq's 0 ("wait forever") and
    /// values past an hour are refused.
    fn resolve_connect_timeout(&mut self, flag: Option<&str>) -> Result<()> {
        let (value, from) = match (flag, self.get("connect_timeout")) {
            (Some(v), _) => (v.to_string(), "--connect-timeout"),
            (None, Some(v)) => (
                v.to_string(),
                "connect_timeout (from the database connection or PGCONNECT_TIMEOUT)",
            ),
            (None, None) => (DEFAULT_CONNECT_TIMEOUT.to_string(), "connect_timeout"),
        };
        let seconds = value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_CONNECT_TIMEOUT).contains(s))
            .ok_or_else(|| {
                usage!(
                    "{from} `{value}` is invalid: use whole seconds from 1 to {MAX_CONNECT_TIMEOUT} (0 would wait forever)"
                )
            })?;
        self.set("connect_timeout".into(), seconds.to_string());
        Ok(())
    }

    /// The longest wait for a connection, and for the tool's own short queries on it.
    pub fn connect_timeout(&self) -> std::time::Duration {
        let seconds = self
            .get("connect_timeout")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        std::time::Duration::from_secs(seconds)
    }

    fn set(&mut self, key: String, value: String) {
        if key == "password" {
            self.password = Some(value);
            return;
        }
        // libpq: a later value of the same keyword wins.
        self.params.retain(|(k, _)| *k != key);
        self.params.push((key, value));
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn sslmode(&self) -> Result<SslMode> {
        self.get("sslmode")
            .map_or(Ok(SslMode::Prefer), SslMode::parse)
    }

    /// The same connection, to the server's database `name`.
    pub fn with_dbname(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.set("dbname".into(), name.into());
        other
    }

    /// The database name libpq will use: `dbname`, else the user name.
    pub fn dbname(&self) -> String {
        self.get("dbname")
            .map_or_else(|| self.user(), str::to_string)
    }

    fn user(&self) -> String {
        self.get("user")
            .map(str::to_string)
            .unwrap_or_else(default_user)
    }

    /// `host:port` for messages (never the password).
    pub fn display_host(&self) -> String {
        let host = self
            .get("host")
            .or(self.get("hostaddr"))
            .unwrap_or("localhost");
        format!("{host}:{}", self.get("port").unwrap_or("5432"))
    }

    /// The connection string for pg_dump's `--dbname`: every keyword but the password.
    pub fn dump_conninfo(&self) -> String {
        render(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The tokio-postgres configuration for the preflight connection.
    pub fn preflight_config(&self) -> Result<tokio_postgres::Config> {
        let mut pairs: Vec<(&str, String)> = self
            .params
            .iter()
            .filter(|(k, _)| PREFLIGHT_KEYWORDS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if self.get("host").is_none() && self.get("hostaddr").is_none() {
            pairs.push(("host", default_host()));
        }
        if self.get("user").is_none() {
            pairs.push(("user", self.user()));
        }
        if self.get("dbname").is_none() {
            pairs.push(("dbname", self.dbname()));
        }
        pairs.push(("sslmode", self.sslmode()?.preflight().into()));
        let text = render(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        let mut config: tokio_postgres::Config = text.parse().map_err(|e| {
            usage!("database connection string is invalid: {e}: check host, port and the other options")
        })?;
        if let Some(password) = &self.password {
            config.password(password);
        }
        Ok(config)
    }
}

/// Renders `key='value'` pairs with libpq's quoting (backslash escapes `\` and `'`).
fn render<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn default_host() -> String {
    // Debian's libpq looks for the server's socket here first.
    if std::path::Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "localhost".into()
    }
}

fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "postgres".into())
}

/// Every string that may be the password in `conn`, a URL or a `key=value` string, read
/// leniently so that input that will not parse is covered too: for a URL, the text after the
/// first `:` of everything before each `@` (a password with an unencoded `/`, `?` or `#`
/// included), as written and percent-decoded; for `key=value`, the value after `password=`,
/// quoted or not. Used to mask secrets before anything is parsed or printed.
pub fn password_candidates(conn: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut add = |raw: &str| {
        for value in [
            raw.to_string(),
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned(),
        ] {
            if !value.is_empty() && !found.contains(&value) {
                found.push(value);
            }
        }
    };
    let conn = conn.trim();
    if let Some((_, rest)) = conn.split_once("://") {
        for (at, _) in rest.match_indices('@') {
            if let Some((_, password)) = rest[..at].split_once(':') {
                add(password);
            }
        }
        // `?password=...` in the query string.
        if let Some((_, query)) = rest.split_once('?') {
            for param in query.split('&') {
                if let Some(value) = param.strip_prefix("password=") {
                    add(value);
                }
            }
        }
        // A one- or two-character piece left by a second `@` would mask that text in every
        // log line; the longer candidates cover the real password.
        if found.iter().any(|c| c.len() >= 3) {
            found.retain(|c| c.len() >= 3);
        }
        return found;
    }
    let mut rest = conn;
    while let Some(pos) = rest.find("password") {
        let after = rest[pos + "password".len()..].trim_start();
        rest = &rest[pos + "password".len()..];
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let raw = match value.strip_prefix('\'') {
            Some(quoted) => {
                let mut out = String::new();
                let mut chars = quoted.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => out.extend(chars.next()),
                        '\'' => break,
                        c => out.push(c),
                    }
                }
                out
            }
            None => value.split_whitespace().next().unwrap_or("").to_string(),
        };
        add(&raw);
        if raw.contains('\\') {
            add(&raw.replace('\\', ""));
        }
    }
    found
}

/// Parses libpq's URI form: `postgres://[user[:password]@][host][:port][,...][/dbname][?k=v&...]`.
fn parse_url(url: &str) -> Result<Vec<(String, String)>> {
    // The URL itself is never echoed: where it does not parse, no one can tell which part of
    // it is the password.
    let bad = |why: &str| {
        usage!("database URL is malformed: {why}: use postgres://user:password@host:5432/dbname, with `@`, `:`, `/`, `?` and `#` in the password percent-encoded (%40, %3A, %2F, %3F, %23)")
    };
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if !rest[..authority_end].contains('@') && rest[authority_end..].contains('@') {
        return Err(bad(
            "it has an `@` after a `/` or `?`, as a password with an unencoded `/` or `?` would",
        ));
    }
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut pairs = Vec::new();
    // libpq takes everything before the first `@` as user info, so a raw `@` or `/` in a
    // password must be percent-encoded.
    let hostlist = match authority.split_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push((
                    "user".to_string(),
                    decode(user).map_err(|_| bad("bad percent-encoding in the user name"))?,
                ));
            }
            if let Some(p) = password {
                pairs.push((
                    "password".to_string(),
                    decode(p).map_err(|_| bad("bad percent-encoding in the password"))?,
                ));
            }
            hosts
        }
        None => authority,
    };
    if hostlist.contains('@') {
        return Err(bad("more than one `@`"));
    }
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for entry in hostlist.split(',').filter(|e| !e.is_empty()) {
        let (host, port) = split_host_port(entry).ok_or_else(|| bad("bad host or port"))?;
        hosts.push(decode(host).map_err(|_| bad("bad percent-encoding in the host"))?);
        if let Some(port) = port {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                // After a user-info part the port cannot be a piece of the password.
                let shown = if authority.contains('@') {
                    format!("port `{}`", port.escape_debug())
                } else {
                    "the port".to_string()
                };
                return Err(bad(&format!("{shown} is not a number from 1 to 65535")));
            }
            ports.push(port.to_string());
        }
    }
    if !hosts.is_empty() && hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".into(), hosts.join(",")));
    }
    if !ports.is_empty() {
        pairs.push(("port".into(), ports.join(",")));
    }
    if !path.is_empty() {
        pairs.push((
            "dbname".into(),
            decode(path).map_err(|_| bad("bad percent-encoding in the database name"))?,
        ));
    }
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param
            .split_once('=')
            .ok_or_else(|| bad("a query parameter has no `=`"))?;
        let k = decode(k).map_err(|_| bad("bad percent-encoding in a query parameter"))?;
        let v = decode(v).map_err(|_| bad("bad percent-encoding in a query parameter"))?;
        // libpq accepts the JDBC-style `ssl=true` as `sslmode=require`.
        if k == "ssl" && v == "true" {
            pairs.push(("sslmode".into(), "require".into()));
        } else {
            pairs.push((k, v));
        }
    }
    Ok(pairs)
}

fn split_host_port(entry: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    Some(match entry.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (entry, None),
    })
}

fn decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(());
        }
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ())
}

/// Parses libpq's `key=value` form: whitespace-separated pairs, values optionally single-quoted,
/// backslash escapes.
fn parse_keyword_value(input: &str) -> Result<Vec<(String, String)>> {
    let bad = |why: String| {
        usage!("database connection string is malformed: {why}: use key=value pairs such as `host=db.example.com dbname=app user=backup`, quoting values with spaces")
    };
    // Keys are named in errors only when no password is written in the string (a broken
    // password value reads as more keys).
    let hide = input.contains("password");
    let name = |key: &str| {
        if hide {
            "an option".to_string()
        } else {
            format!("`{}`", key.escape_debug())
        }
    };
    let mut chars = input.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(format!("{} has no `=` after it", name(&key))));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(
                        chars
                            .next()
                            .ok_or_else(|| bad(format!("unterminated quote in {}", name(&key))))?,
                    ),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad(format!("unterminated quote in {}", name(&key)))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConnInfo {
        ConnInfo::parse(Some(s)).unwrap()
    }

    #[test]
    fn url_with_special_characters_in_password_and_dbname() {
        let info = parse("postgres://u%40x:p%40%3A%2F%25%23%3F%20w@db.example.com:6543/my%20db%2Fx?sslmode=require&application_name=a");
        assert_eq!(info.password(), Some("p@:/%#? w"));
        assert_eq!(info.get("user"), Some("u@x"));
        assert_eq!(info.get("host"), Some("db.example.com"));
        assert_eq!(info.get("port"), Some("6543"));
        assert_eq!(info.dbname(), "my db/x");
        assert_eq!(info.sslmode().unwrap(), SslMode::Require);
        let dump = info.dump_conninfo();
        assert!(!dump.contains("p@"), "password leaked into {dump}");
        assert!(dump.contains("dbname='my db/x'"), "{dump}");
    }

    #[test]
    fn keyword_value_form_with_quotes_and_escapes() {
        let info =
            parse(r"host=localhost port = 5433 dbname='it\'s db' password='a b\\c' user=x\ y");
        assert_eq!(info.dbname(), "it's db");
        assert_eq!(info.password(), Some(r"a b\c"));
        assert_eq!(info.get("user"), Some("x y"));
        assert_eq!(info.get("port"), Some("5433"));
        // Rendering and parsing again gives the same keywords (round trip through libpq quoting).
        let again = parse(&info.dump_conninfo());
        assert_eq!(again.params, info.params);
    }

    #[test]
    fn every_connection_gets_a_bounded_connect_timeout() {
        // The default, what the string says, and the flag over both; pg_dump and tokio-postgres
        // both get it.
        for (input, flag, want) in [
            ("host=h", None, 30),
            ("postgres://u@h/db?connect_timeout=7", None, 7),
            ("host=h connect_timeout=7", Some("5"), 5),
            ("host=h", Some(" 3600 "), 3600),
        ] {
            let info = ConnInfo::parse_with_connect_timeout(Some(input), flag).unwrap();
            assert_eq!(info.connect_timeout().as_secs(), want, "{input} {flag:?}");
            let dump = info.dump_conninfo();
            assert!(
                dump.contains(&format!("connect_timeout='{want}'")),
                "{dump}"
            );
            let config = info.preflight_config().unwrap();
            assert_eq!(
                config.get_connect_timeout(),
                Some(&std::time::Duration::from_secs(want))
            );
        }
        // libpq's 0 waits forever: refused, like anything that is not whole seconds.
        for bad in ["0", "-1", "2.5", "3601", "soon", ""] {
            let err = ConnInfo::parse_with_connect_timeout(Some("host=h"), Some(bad))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("--connect-timeout `{bad}` is invalid")),
                "{err}"
            );
            let bad_string = format!("host=h connect_timeout='{bad}'");
            let err = ConnInfo::parse(Some(&bad_string)).unwrap_err().to_string();
            assert!(err.contains(&format!("connect_timeout (from the database connection or PGCONNECT_TIMEOUT) `{bad}` is invalid")), "{err}");
            // The flag wins: what it replaces is not judged.
            let info = ConnInfo::parse_with_connect_timeout(Some(&bad_string), Some("5")).unwrap();
            assert_eq!(info.connect_timeout().as_secs(), 5);
        }
    }

    #[test]
    fn ipv6_and_multi_host_urls() {
        let info = parse("postgresql://[::1]:5433,h2:5434/db");
        assert_eq!(info.get("host"), Some("::1,h2"));
        assert_eq!(info.get("port"), Some("5433,5434"));
    }

    #[test]
    fn verify_full_is_kept_for_pg_dump_and_mapped_for_tokio_postgres() {
        let info = parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/x/root.crt");
        assert!(info.dump_conninfo().contains("sslmode='verify-full'"));
        assert!(info.dump_conninfo().contains("sslrootcert='/x/root.crt'"));
        let config = info.preflight_config().unwrap();
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn bad_inputs_are_usage_errors_naming_the_value() {
        let cases = [
            ("postgres://u@h/db?sslmode=maybe", "sslmode `maybe`"),
            ("postgres://u@h:99999/db", "port `99999`"),
            ("postgres://u:%zz@h/db", "percent-encoding in the password"),
            ("mysql://u@h/db", "scheme"),
            ("host=h bogus=1", "option `bogus`"),
            ("host=h dbname='x", "unterminated quote"),
            ("host", "`host` has no `=`"),
        ];
        for (input, expected) in cases {
            let err = ConnInfo::parse(Some(input)).unwrap_err();
            assert!(err.is::<crate::error::UsageError>(), "{input}: {err}");
            assert!(err.to_string().contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn errors_never_echo_a_password_that_broke_the_url() {
        for (url, password) in [
            ("postgres://u:Zq7x/Kw9@h/db", "Zq7x/Kw9"),
            ("postgres://u:Zq7x?Kw9@h/db", "Zq7x?Kw9"),
            ("postgres://u:Zq7x/4242@h:5432/db", "Zq7x/4242"),
            ("postgres://u:Zq7x/1@[::1/db", "Zq7x/1"),
            ("postgres://u:4242/Kw9@h/db", "4242/Kw9"),
            ("postgres://u:Zq7xKw9@[::1/db", "Zq7xKw9"),
        ] {
            let err = ConnInfo::parse(Some(url)).unwrap_err().to_string();
            for piece in password.split(['/', '?']).filter(|p| p.len() > 1) {
                assert!(!err.contains(piece), "{url}: {err}");
            }
            assert!(err.contains("percent-encoded"), "{err}");
            assert!(
                password_candidates(url).iter().any(|c| c == password),
                "{url}: {:?}",
                password_candidates(url)
            );
        }
    }

    #[test]
    fn key_value_errors_do_not_name_keys_next_to_a_password() {
        let err = ConnInfo::parse(Some("host=h password=hunter2 secret"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        let err = ConnInfo::parse(Some("host=h password=hunter2 tail=x"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("tail"), "{err}");
    }

    #[test]
    fn password_candidates_cover_both_forms_leniently() {
        let got = password_candidates("postgres://u:p%40ss@h/db?x=1");
        assert!(got.contains(&"p%40ss".to_string()) && got.contains(&"p@ss".to_string()));
        assert_eq!(
            password_candidates(r"host=h password = 'it\'s secret' dbname=x"),
            vec!["it's secret".to_string()]
        );
        assert_eq!(
            password_candidates("host=h password=hunter2 port='oops"),
            vec!["hunter2".to_string()]
        );
        assert!(password_candidates("postgres://h/db").is_empty());
        assert!(
            password_candidates("postgres://u@h/db?sslmode=require&password=hunter2")
                .contains(&"hunter2".to_string())
        );
        let got = password_candidates("postgres://u:p@ss@h/db");
        assert!(
            got.contains(&"p@ss".to_string()) && !got.contains(&"p".to_string()),
            "{got:?}"
        );
    }
}
