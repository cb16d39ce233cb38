//! Is a stream a complete pg_dump output? The one definition, used before a backup is
//! completed (pg_dump exiting 0 is not enough: an option can send the dump elsewhere, a wrapper
//! can exit 0 with nothing written) and when a backup is read back. Plain: pg_dump's header at
//! the start and its completion trailer at the end (followed by `\unrestrict KEY` where pg_dump
//! writes one, with the key of the `\restrict` line at the start); custom: the `PGDMP` magic;
//! the globals (`pg_dumpall --globals-only`): pg_dumpall's cluster header and trailer, its
//! `\unrestrict KEY` just before the trailer.

use crate::layout::DumpFormat;
use std::collections::VecDeque;

/// Bytes kept from the start and from the end of the stream.
const HEAD: usize = 1024;
const TAIL: usize = 4096;

const PLAIN_HEADER: &str = "--\n-- PostgreSQL database dump\n--\n";
const PLAIN_TRAILER: &str = "\n--\n-- PostgreSQL database dump complete\n--";
const CUSTOM_MAGIC: &[u8] = b"PGDMP";
const GLOBALS_HEADER: &str = "--\n-- PostgreSQL database cluster dump\n--\n";
const GLOBALS_TRAILER: &str = "\n--\n-- PostgreSQL database cluster dump complete\n--";

/// Watches a stream go by, keeping its first and last bytes.
#[derive(Debug, Default)]
pub struct Watch {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Watch {
    pub fn see(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        let keep = &bytes[bytes.len().saturating_sub(TAIL)..];
        let overflow = (self.tail.len() + keep.len()).saturating_sub(TAIL);
        self.tail.drain(..overflow);
        self.tail.extend(keep);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The first bytes seen (up to 1 KiB).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The last bytes seen (up to 4 KiB).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// `Ok` when the stream is pg_dumpall's complete `--globals-only` script.
    pub fn verdict_globals(&self) -> Result<(), String> {
        if self.total == 0 {
            return Err("pg_dumpall wrote nothing".into());
        }
        globals(&self.head, &self.tail())
    }

    /// `Ok` when the stream is a complete dump of `format`, else what is wrong with it.
    pub fn verdict(&self, format: DumpFormat) -> Result<(), String> {
        if self.total == 0 {
            return Err("pg_dump wrote nothing".into());
        }
        match format {
            DumpFormat::Custom => {
                if self.head.starts_with(CUSTOM_MAGIC) {
                    Ok(())
                } else {
                    Err(format!(
                        "it does not start with pg_dump's custom-format header `PGDMP` but with {}",
                        shown(&self.head)
                    ))
                }
            }
            DumpFormat::Plain => {
                let tail: Vec<u8> = self.tail.iter().copied().collect();
                plain(&self.head, &tail)
            }
        }
    }
}

/// The plain-format checks on the first and the last bytes of a dump.
pub fn plain(head: &[u8], tail: &[u8]) -> Result<(), String> {
    let head_text = String::from_utf8_lossy(head);
    if !head_text.starts_with(PLAIN_HEADER) {
        return Err(format!(
            "it does not start with pg_dump's plain-format header but with {}",
            shown(head)
        ));
    }
    let tail_text = String::from_utf8_lossy(tail);
    let mut end = tail_text.trim_end_matches('\n');
    let mut unrestrict = None;
    if let Some((before, last)) = end.rsplit_once('\n') {
        if let Some(key) = last.strip_prefix("\\unrestrict ") {
            unrestrict = Some(key);
            end = before.trim_end_matches('\n');
        }
    }
    if !end.ends_with(PLAIN_TRAILER) {
        return Err(
            "it does not end with pg_dump's completion trailer (`-- PostgreSQL database dump complete`): the dump is cut short"
                .into(),
        );
    }
    restrict_matches(&head_text, unrestrict, "pg_dump")
}

/// The globals checks on the first and the last bytes of a `pg_dumpall --globals-only` script.
pub fn globals(head: &[u8], tail: &[u8]) -> Result<(), String> {
    let head_text = String::from_utf8_lossy(head);
    if !head_text.starts_with(GLOBALS_HEADER) {
        return Err(format!(
            "it does not start with pg_dumpall's header (`-- PostgreSQL database cluster dump`) but with {}",
            shown(head)
        ));
    }
    let tail_text = String::from_utf8_lossy(tail);
    let Some(before) = tail_text
        .trim_end_matches('\n')
        .strip_suffix(GLOBALS_TRAILER)
    else {
        return Err(
            "it does not end with pg_dumpall's completion trailer (`-- PostgreSQL database cluster dump complete`): it is cut short"
                .into(),
        );
    };
    let last = before.trim_end_matches('\n').rsplit('\n').next();
    let unrestrict = last.and_then(|l| l.strip_prefix("\\unrestrict "));
    restrict_matches(&head_text, unrestrict, "pg_dumpall")
}

/// The `\\restrict KEY` among the header's first lines names the key of the `\\unrestrict` at
/// the end (both absent before pg_dump 15.14): one output of `tool`, not two spliced.
fn restrict_matches(head_text: &str, unrestrict: Option<&str>, tool: &str) -> Result<(), String> {
    let restrict = head_text
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("--") || l.starts_with('\\'))
        .find_map(|l| l.strip_prefix("\\restrict "));
    if restrict != unrestrict {
        return Err(format!(
            "its `\\restrict` and `\\unrestrict` lines do not match: it is not one {tool} output"
        ));
    }
    Ok(())
}

/// The first bytes of a stream, for a message.
fn shown(bytes: &[u8]) -> String {
    let start = &bytes[..bytes.len().min(16)];
    format!("`{}`", String::from_utf8_lossy(start).escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n-- Dumped from database version 15.18\n\nSET x = 1;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n";

    fn watch(chunks: &[&[u8]]) -> Watch {
        let mut w = Watch::default();
        for c in chunks {
            w.see(c);
        }
        w
    }

    #[test]
    fn complete_dumps_pass_whatever_the_chunking() {
        let bytes = DUMP.as_bytes();
        for size in [1, 3, 7, 64, bytes.len()] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(watch(&chunks).verdict(DumpFormat::Plain), Ok(()), "{size}");
        }
        let old = DUMP
            .replace("\\restrict abc123\n", "")
            .replace("\\unrestrict abc123\n", "");
        assert_eq!(watch(&[old.as_bytes()]).verdict(DumpFormat::Plain), Ok(()));
        let big = format!("{}{}{}", &DUMP[..60], "x".repeat(100_000), &DUMP[60..]);
        assert_eq!(watch(&[big.as_bytes()]).verdict(DumpFormat::Plain), Ok(()));
        assert_eq!(
            watch(&[b"PGDMP\x01\x0e\x00rest"]).verdict(DumpFormat::Custom),
            Ok(())
        );
    }

    const GLOBALS: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict k9\n\nSET x = 1;\nCREATE ROLE a;\n\n\\unrestrict k9\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";

    #[test]
    fn globals_are_pg_dumpall_scripts_whole() {
        assert_eq!(watch(&[GLOBALS.as_bytes()]).verdict_globals(), Ok(()));
        let old = GLOBALS
            .replace("\\restrict k9\n", "")
            .replace("\\unrestrict k9\n", "");
        assert_eq!(watch(&[old.as_bytes()]).verdict_globals(), Ok(()));
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "wrote nothing"),
            (GLOBALS[..GLOBALS.len() - 40].into(), "cut short"),
            (DUMP.into(), "pg_dumpall's header"),
            (GLOBALS.replace("\\unrestrict k9\n", ""), "do not match"),
            (
                GLOBALS.replace("unrestrict k9", "unrestrict k8"),
                "do not match",
            ),
            (format!("{GLOBALS}CREATE ROLE b;\n"), "cut short"),
        ];
        for (text, why) in cases {
            let got = watch(&[text.as_bytes()]).verdict_globals().unwrap_err();
            assert!(got.contains(why), "{why}: {got}");
        }
        // A database's dump is not the globals, nor the globals a database's dump.
        assert!(watch(&[GLOBALS.as_bytes()])
            .verdict(DumpFormat::Plain)
            .is_err());
    }

    #[test]
    fn anything_else_is_named() {
        let cut = &DUMP[..DUMP.len() - 60];
        let cases: Vec<(Vec<u8>, DumpFormat, &str)> = vec![
            (Vec::new(), DumpFormat::Plain, "wrote nothing"),
            (Vec::new(), DumpFormat::Custom, "wrote nothing"),
            (cut.into(), DumpFormat::Plain, "cut short"),
            (b"PGDMP\x01".to_vec(), DumpFormat::Plain, "header"),
            (DUMP.into(), DumpFormat::Custom, "PGDMP"),
            (b"toc.dat\0\0\0".to_vec(), DumpFormat::Custom, "PGDMP"),
            (
                DUMP.replace("unrestrict abc123", "unrestrict other").into(),
                DumpFormat::Plain,
                "do not match",
            ),
            (
                DUMP.replace("\\unrestrict abc123\n", "").into(),
                DumpFormat::Plain,
                "do not match",
            ),
            (
                format!("{DUMP}SELECT 1;\n").into(),
                DumpFormat::Plain,
                "cut short",
            ),
        ];
        for (bytes, format, why) in cases {
            let got = watch(&[&bytes]).verdict(format).unwrap_err();
            assert!(got.contains(why), "{why}: {got}");
        }
    }
}
