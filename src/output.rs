//! Every line a person or the GitHub runner sees. stdout carries only a command's data (JSON, a
//! table, the dump, the policy); messages, warnings, errors, progress and workflow commands go
//! to stderr, and all of them through this module.
//!
//! Text that came from outside (a child's stderr, a name decoded from a key, a store's or the
//! server's message) is data. The runner reads workflow commands from both streams
//! (actions/runner `ActionCommand.cs`): a line that starts with `::` after leading whitespace,
//! and, in the legacy form, `##[` anywhere in a line, both found with culture-sensitive string
//! search, which skips invisible characters. So every line printed here is made inert first
//! ([`inert`]): control and invisible characters are written as `\u{..}` escapes (a `\r` would
//! start a new line for the runner), and in Actions `##[` and a leading `::` are broken up.

use indicatif::ProgressBar;
use std::fmt::Display;
use std::io::Write;
use std::sync::Mutex;

/// The progress bar on a terminal, if one is showing: lines are printed above it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// True when running inside a GitHub Actions job.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Shows `bar` until [`clear_bar`]; lines printed meanwhile appear above it.
pub fn set_bar(bar: ProgressBar) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
}

pub fn clear_bar() {
    if let Some(bar) = BAR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bar.finish_and_clear();
    }
}

/// Writes one line to stderr as it is: only for lines built here.
fn raw(line: &str) {
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    };
    match bar.as_ref() {
        Some(b) => b.suspend(write),
        None => write(),
    }
}

/// A message for people on stderr.
pub fn note(message: impl Display) {
    raw(&inert(&message.to_string(), in_actions()));
}

/// A warning: a `::warning::` annotation in Actions, `warning: ...` elsewhere.
pub fn warn(message: impl Display) {
    let text = inert(&message.to_string(), in_actions());
    if in_actions() {
        raw(&format!("::warning::{}", escape_data(&text)));
    } else {
        raw(&format!("warning: {text}"));
    }
}

/// The run's error, once: an `::error::` annotation in Actions (after closing any group), and
/// always the `error: ...` line.
pub fn error(message: impl Display) {
    let text = inert(&message.to_string(), in_actions());
    if in_actions() {
        raw("::endgroup::");
        raw(&format!("::error::{}", escape_data(&text)));
    }
    raw(&format!("error: {text}"));
}

/// A line a child process (pg_dump, psql, pg_restore) wrote on its stderr.
pub fn forward(line: &str) {
    raw(&inert(line, in_actions()));
}

/// Asks the runner to mask `secret` in every log line from now on (`::add-mask::`, one line per
/// line of the secret, data-escaped so the runner masks exactly these characters). A no-op
/// outside Actions and for blank values.
pub fn mask(secret: &str) {
    if !in_actions() {
        return;
    }
    for line in secret.lines().filter(|l| !l.trim().is_empty()) {
        raw(&format!("::add-mask::{}", escape_data(line)));
    }
}

/// Starts a collapsible log group in Actions, ending the previous one.
pub fn group(title: &str) {
    if in_actions() {
        raw("::endgroup::");
        raw(&format!("::group::{}", escape_data(&inert(title, true))));
    }
}

pub fn end_group() {
    if in_actions() {
        raw("::endgroup::");
    }
}

/// One line of human-readable data on stdout (a table row, a result line).
pub fn data_line(line: impl Display) {
    let text = inert(&line.to_string(), in_actions());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// A JSON document on stdout, on one line. In Actions `#` is written `\u0023` (so no `##[` can
/// appear) and invisible characters as `\u` escapes; the value parses the same.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    json_text(&serde_json::to_string(value)?)
}

/// Serialized JSON (pretty-printed, say) on stdout, made inert in Actions as [`json`] does.
pub fn json_text(text: &str) -> anyhow::Result<()> {
    let text = if in_actions() {
        json_inert(text)
    } else {
        text.to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

fn json_inert(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c == '#' || is_invisible(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Workflow-command data escaping, as the runner unescapes it (`%`, CR, LF).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// `text` as one line that no terminal and (with `actions`) no runner can take for anything but
/// text: control and invisible characters become `\n`, `\r`, `\t` or `\u{..}`. In Actions every
/// `#` becomes `\#` (so no `##[` can form, whatever the runner's search skips between the
/// characters), and a line whose first character after spaces is not an ASCII letter, digit or
/// punctuation other than `:` gets a leading `\` (so no `::` command can start it, even behind a
/// character the search ignores).
pub fn inert(text: &str, actions: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    if !actions {
        return out;
    }
    let mut out = out.replace('#', "\\#");
    let first = out.trim_start_matches(' ').chars().next();
    let safe =
        first.is_none_or(|c| c.is_ascii_alphanumeric() || (c.is_ascii_punctuation() && c != ':'));
    if !safe {
        out.insert(0, '\\');
    }
    out
}

/// Characters that render as nothing or as space other than the ASCII space: format characters
/// (zero-width, bidirectional controls), other default-ignorable code points, and Unicode
/// spaces and separators. .NET's culture-sensitive search skips the ignorable ones, so
/// `#\u{200b}#[` still reads as `##[` to the runner.
fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x85 | 0xA0
            | 0xAD
            | 0x34F
            | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x115F..=0x1160
            | 0x1680
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x2000..=0x200F
            | 0x2028..=0x202F
            | 0x205F..=0x206F
            | 0x3000
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// `text` as a Markdown code span for a job summary: shown exactly as written, with no
/// emphasis, link, image, HTML or entity taking effect (CommonMark code spans interpret none).
/// The fence is one backtick longer than any run inside; control characters are escaped as in
/// [`inert`], so the span stays on one line; `in_table` escapes `|`, which GFM splits cells on
/// before it reads code spans.
pub fn markdown_code(text: &str, in_table: bool) -> String {
    let mut body = inert(text, false);
    if in_table {
        body = body.replace('|', "\\|");
    }
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    // One space each side: CommonMark strips exactly one, so text starting or ending with a
    // backtick or a space survives.
    format!("{fence} {body} {fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_never_starts_a_workflow_command() {
        let cases = [
            (
                "x\n::error title=injected::pwned",
                "x\\n::error title=injected::pwned",
            ),
            ("::error::pwned", "\\::error::pwned"),
            ("   ::add-mask::x", "\\   ::add-mask::x"),
            ("a\r::warning::b", "a\\r::warning::b"),
            ("pg_dump: ##[error]pwned", "pg_dump: \\#\\#[error]pwned"),
            ("#\u{200b}#[error]x", "\\#\\u{200b}\\#[error]x"),
            ("\u{640}::error::x", "\\\u{640}::error::x"),
            ("\u{591}#\u{5af}#[error]x", "\\\u{591}\\#\u{5af}\\#[error]x"),
            ("\u{feff}::error::x", "\\u{feff}::error::x"),
            ("\u{2028}::error::x", "\\u{2028}::error::x"),
            ("\t::error::x", "\\t::error::x"),
            ("tab\tand \u{1b}[31mred", "tab\\tand \\u{1b}[31mred"),
            ("plain ünïcødé 数据库 text", "plain ünïcødé 数据库 text"),
        ];
        for (input, want) in cases {
            let got = inert(input, true);
            assert_eq!(got, want, "{input:?}");
            assert!(!got.contains('\n') && !got.contains('\r'), "{got}");
            assert!(
                !got.contains("##[") && !got.replace("\\#", "").contains('#'),
                "{got}"
            );
            assert!(!got.trim_start().starts_with("::"), "{got}");
        }
        // Outside Actions only the characters a terminal would act on are escaped.
        assert_eq!(inert("##[x] ::y", false), "##[x] ::y");
        assert_eq!(inert("a\nb", false), "a\\nb");
    }

    #[test]
    fn json_in_actions_parses_back_to_the_same_value() {
        let value = serde_json::json!({"database": "##[error]x\u{200b}\n::y", "n": 1});
        let text = json_inert(&serde_json::to_string(&value).unwrap());
        assert!(!text.contains('#') && !text.contains('\u{200b}'), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        let astral = json_inert("\"\u{e0041}\"");
        assert_eq!(astral, "\"\\udb40\\udc41\"");
        assert_eq!(
            serde_json::from_str::<String>(&astral).unwrap(),
            "\u{e0041}"
        );
    }

    #[test]
    fn data_escaping_matches_the_runner() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
    }

    #[test]
    fn markdown_code_spans_hold_any_name_literally() {
        for (name, table, want) in [
            ("app", false, "` app `"),
            ("a`b", false, "`` a`b ``"),
            ("``x", true, "``` ``x ```"),
            ("a|b", true, "` a\\|b `"),
            (
                "<img src=x onerror=alert(1)>*x*",
                false,
                "` <img src=x onerror=alert(1)>*x* `",
            ),
            ("x\n### heading", false, "` x\\n### heading `"),
        ] {
            assert_eq!(markdown_code(name, table), want, "{name:?}");
        }
    }
}
