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
        let pairs = match input.map(str::trim) {
            None | Some("") => Vec::new(),
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                parse_url(s)?
            }
            Some(s) if s.contains("://") => {
                return Err(usage!(
                "database URL scheme in `{}` is not supported: use postgres:// or postgresql://",
                redact_url(s)
            ))
            }
            Some(s) => parse_keyword_value(s)?,
        };
        let mut info = ConnInfo {
            params: Vec::new(),
            password: None,
        };
        for (key, value) in pairs {
            if !LIBPQ_KEYWORDS.contains(&key.as_str()) {
                return Err(usage!(
                    "database connection option `{key}` is unknown: use libpq keywords such as host, port, dbname, user, sslmode"
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
        Ok(info)
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
        if self.get("connect_timeout").is_none() {
            pairs.push(("connect_timeout", "10".into()));
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

/// The URL with its password replaced, for error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.into()
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// Parses libpq's URI form: `postgres://[user[:password]@][host][:port][,...][/dbname][?k=v&...]`.
fn parse_url(url: &str) -> Result<Vec<(String, String)>> {
    let bad = |why: &str| {
        usage!("database URL `{}` is malformed: {why}: use postgres://user:password@host:5432/dbname (percent-encode special characters)", redact_url(url))
    };
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
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
                return Err(bad(&format!(
                    "port `{port}` is not a number from 1 to 65535"
                )));
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
            .ok_or_else(|| bad(&format!("query parameter `{param}` has no `=`")))?;
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
        usage!("database connection string is malformed: {why}: use key=value pairs such as `host=db.example.com dbname=app user=backup`")
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
            return Err(bad(format!("`{key}` has no `=` after it")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(
                        chars
                            .next()
                            .ok_or_else(|| bad(format!("unterminated quote in `{key}`")))?,
                    ),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad(format!("unterminated quote in `{key}`"))),
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
    fn redaction_hides_the_password_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
