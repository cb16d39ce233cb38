//! `--ping-url`, validated: an http(s) URL with a host. It is a secret (whoever has it can
//! report for the job), so nothing here quotes it, and [`PingUrl::shown`] is its host only.

/// A validated health-check URL (see `ping`).
#[derive(Clone)]
pub struct PingUrl(url::Url);

impl std::fmt::Debug for PingUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PingUrl({})", self.shown())
    }
}

impl PingUrl {
    /// An http(s) URL with a host; the error never quotes the value (it may hold a token).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| format!("it is not a URL ({e})"))?;
        // The scheme is not quoted either: `user:password@host` and `TOKEN:...` parse with
        // the user name or the token as the scheme.
        if !matches!(url.scheme(), "http" | "https") {
            return Err("it does not start with http:// or https://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("it has no host".into());
        }
        if url.fragment().is_some() {
            return Err("it has a `#` fragment, which is never sent".into());
        }
        Ok(Self(url))
    }

    /// What messages show: the scheme and host, never the path that holds the check's token.
    pub fn shown(&self) -> String {
        let port = self.0.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}/…",
            self.0.scheme(),
            self.0.host_str().unwrap_or("")
        )
    }

    /// The URL with `suffix` (`start`, `fail`) appended to its path, its query kept.
    pub fn with(&self, suffix: &str) -> url::Url {
        let mut url = self.0.clone();
        if !suffix.is_empty() {
            let path = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!("{path}/{suffix}"));
        }
        url
    }

    /// The whole URL, for `::add-mask::`.
    pub fn as_secret(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_shown_past_their_host() {
        let url = PingUrl::parse("https://hc-ping.com/0f1e2d3c-aaaa-bbbb?rid=7").unwrap();
        assert_eq!(
            url.with("start").as_str(),
            "https://hc-ping.com/0f1e2d3c-aaaa-bbbb/start?rid=7"
        );
        assert_eq!(
            url.with("").as_str(),
            "https://hc-ping.com/0f1e2d3c-aaaa-bbbb?rid=7"
        );
        let slash = PingUrl::parse("http://127.0.0.1:9/ping/abc/").unwrap();
        assert_eq!(
            slash.with("fail").as_str(),
            "http://127.0.0.1:9/ping/abc/fail"
        );
        assert_eq!(url.shown(), "https://hc-ping.com/…");
        assert!(!format!("{url:?}").contains("0f1e2d3c"));
        for bad in [
            "hc-ping.com/x",
            "ftp://h/x",
            "https://",
            "https://h/x#frag",
            "",
            "backup:s3cr3tpass@hc-ping.com/x",
            "f47ac10b-58cc-4372-a567-0e02b2c3d479:x",
        ] {
            let err = PingUrl::parse(bad).unwrap_err();
            assert!(bad.len() < 3 || !err.contains(bad), "{err}");
            assert!(
                !err.contains("s3cr3t") && !err.contains("f47ac10b") && !err.contains("backup:"),
                "{err}"
            );
        }
    }
}
