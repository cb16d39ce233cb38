//! The filter between a downloaded plain dump and psql. psql runs every backslash meta-command
//! it reads (`\!`, `\o |cmd`, `\copy ... program`, `\setenv`, `\i`, ...), and a backup object
//! is anyone's to write, so the stream reaches psql only through here.
//!
//! It reads the stream with psql's own lexer rules (src/fe_utils/psqlscan.l: quotes, comments,
//! dollar quotes, parentheses, the `BEGIN ATOMIC` heuristic, variables, COPY data) and:
//! - lets no meta-command through: pg_dump's own `\restrict`/`\unrestrict` lines are dropped,
//!   anything else (and any backslash outside quotes and COPY data) stops the restore;
//! - owns the transaction: it writes `BEGIN;` first, neutralizes pg_dump's own `BEGIN;` and
//!   `COMMIT;` (around large objects), refuses any other transaction control, and writes the
//!   final `COMMIT;` only from [`Filter::finish`], which the caller calls after every check
//!   passed; so psql reaching end of input early (a damaged object, pg-s3-backup killed) never
//!   commits anything;
//! - removes what psql would read differently from us: every plain `'...'` literal becomes an
//!   `E'...'` literal with its backslashes doubled (the same value under pg_dump's
//!   `standard_conforming_strings = on`, and lexed the same whatever the session's setting),
//!   `:name` variable references get a space after the colon, and constructs whose lexing
//!   depends on the psql version or a multibyte client encoding are refused.
//!
//! Refusing is always the safe direction: a refused dump restores nothing. pg_dump writes none
//! of the refused constructs.

use crate::source::complete::{self, Watch};
use std::fmt;

/// The longest meta-command line, dollar-quote tag, identifier or held statement looked at.
const MAX_LOOKAHEAD: usize = 1 << 20;

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub line: u64,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} of the dump {}", self.line, self.why)
    }
}

impl std::error::Error for Refused {}

/// Where the filtered stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Into psql, run by us. `restrict`: the client has `\restrict` (13.22, 14.19, 15.14,
    /// 16.10, 17.6, 18 and later), so it is also told to refuse every meta-command itself, with
    /// a key no dump can know.
    Psql { restrict: bool },
    /// Checks only, for `verify` and `restore --output -` (which writes the dump as stored,
    /// once this mode accepted it): nothing is prepended, and the output may be ignored.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    /// A plain `'...'` literal, written out as `E'...'` with doubled backslashes.
    Plain,
    /// `E'...'`: backslash escapes.
    Escaped,
    /// `U&'...'`, `B'...'`, `X'...'`: no escapes; `U&` doubles quotes, `B`/`X` do not.
    Unicode,
    BitOrHex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Initial,
    LineComment,
    Block(u32),
    Ident,
    Str(Str),
    /// In `E'...'` after a backslash: the next byte is taken whatever it is.
    StrEscape,
    /// After a literal's closing quote: a quote after whitespace holding a newline continues it.
    AfterQuote {
        kind: Str,
        newline: bool,
    },
    Dollar(Vec<u8>),
    /// COPY data, up to a line `\.`.
    Copy {
        line_start: bool,
        escape: bool,
    },
    /// A line starting with a backslash at a statement boundary, collected whole.
    Meta(Vec<u8>),
}

/// What the current statement is, by its first words.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No token yet.
    Empty,
    Other,
    /// Transaction control: held until its end, then neutralized (pg_dump's exact `BEGIN;`
    /// and `COMMIT;`) or refused.
    Transaction(String),
    /// `PREPARE`: held until the second word says whether it is `PREPARE TRANSACTION`.
    Prepare,
    Copy(CopyShape),
}

/// The depth-0 tokens of a COPY statement, to tell `COPY name [(cols)] FROM stdin;` apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct CopyShape {
    tokens: Vec<Tok>,
    /// The statement started on a line of its own.
    line_start: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted,
    Dot,
    Group,
    Other,
}

pub struct Filter {
    mode: Mode,
    key: String,
    state: State,
    /// Unprocessed input that needs more bytes to decide (a token cut by the chunking).
    carry: Vec<u8>,
    line: u64,
    /// Only whitespace so far on this line.
    line_start: bool,
    paren: u32,
    begin: u32,
    ident_count: u32,
    idents: [u8; 4],
    kind: Kind,
    /// Tokens since the statement began (0: psql's query buffer is empty).
    tokens: u64,
    /// The statement began on a line where nothing came before it.
    stmt_line_start: bool,
    /// Output held back while a statement is classified.
    held: Option<Vec<u8>>,
    /// The byte before the current one was 0x80 or higher (a multibyte character).
    prev_high: bool,
    after_copy_statement: bool,
    started: bool,
    watch: Watch,
}

impl Filter {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            key: crate::action::random_token(),
            state: State::Initial,
            carry: Vec::new(),
            line: 1,
            line_start: true,
            paren: 0,
            begin: 0,
            ident_count: 0,
            idents: [0; 4],
            kind: Kind::Empty,
            tokens: 0,
            stmt_line_start: true,
            held: None,
            prev_high: false,
            after_copy_statement: false,
            started: false,
            watch: Watch::default(),
        }
    }

    /// Filters `input`, appending what psql may read to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        self.start(out);
        self.watch.see(input);
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(input);
        let used = self.run(&data, false, out)?;
        self.carry = data[used..].to_vec();
        if self.carry.len() > MAX_LOOKAHEAD {
            return Err(self.refuse("has a token or line too long to check (over 1 MiB)"));
        }
        Ok(())
    }

    /// The stream ended and every other check passed: checks that it ended as a complete dump
    /// ends (outside any quote, comment, statement or COPY data; pg_dump's trailer last) and
    /// appends the final COMMIT. Nothing is committed unless this succeeds.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Refused> {
        self.start(out);
        let data = std::mem::take(&mut self.carry);
        let used = self.run(&data, true, out)?;
        debug_assert_eq!(used, data.len());
        if let State::AfterQuote { .. } = self.state {
            self.state = State::Initial;
        }
        let open = match &self.state {
            State::Initial | State::LineComment => None,
            State::Block(_) => Some("inside a /* comment */"),
            State::Ident => Some("inside a quoted identifier"),
            State::Str(_) | State::StrEscape => Some("inside a string literal"),
            State::Dollar(_) => Some("inside a dollar-quoted string"),
            State::Copy { .. } => Some("inside COPY data"),
            State::Meta(_) | State::AfterQuote { .. } => Some("inside a meta-command line"),
        };
        if let Some(open) = open {
            return Err(self.refuse(&format!(
                "is the last, and the dump ends {open}: it is cut short"
            )));
        }
        if self.tokens > 0 || self.paren > 0 || self.begin > 0 {
            return Err(
                self.refuse("is the last, and it ends inside a statement: the dump is cut short")
            );
        }
        let tail = self.watch.tail();
        complete::plain(self.watch.head(), &tail).map_err(|why| Refused {
            line: self.line,
            why: format!("is the last, and the dump is not complete: {why}"),
        })?;
        out.extend_from_slice(b"COMMIT;\n");
        Ok(())
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        match self.mode {
            Mode::Psql { restrict } => {
                if restrict {
                    out.extend_from_slice(format!("\\restrict {}\n", self.key).as_bytes());
                }
                out.extend_from_slice(b"BEGIN;\n");
            }
            Mode::Check => {}
        }
    }

    fn refuse(&self, why: &str) -> Refused {
        Refused {
            line: self.line,
            why: why.to_string(),
        }
    }

    /// Runs the lexer over `data`; returns how many bytes were consumed (the rest needs more
    /// input, unless `eof`).
    fn run(&mut self, data: &[u8], eof: bool, out: &mut Vec<u8>) -> Result<usize, Refused> {
        let mut i = 0;
        while i < data.len() {
            match self.step(data, i, eof, out)? {
                Some(n) => {
                    for &b in &data[i..i + n] {
                        if b == b'\n' {
                            self.line += 1;
                        }
                    }
                    self.prev_high = data[i + n - 1] >= 0x80;
                    i += n;
                    if self.held.as_ref().is_some_and(|h| h.len() > MAX_LOOKAHEAD) {
                        return Err(
                            self.refuse("has a transaction control statement too long to check")
                        );
                    }
                }
                None => break,
            }
        }
        Ok(i)
    }

    /// Emits into the held statement if one is held, else to `out`.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.held.is_some() && self.kind == Kind::Other {
            // A held PREPARE turned out to be a prepared statement: release it.
            out.extend_from_slice(&self.held.take().unwrap_or_default());
        }
        match &mut self.held {
            Some(h) => h.extend_from_slice(bytes),
            None => out.extend_from_slice(bytes),
        }
    }

    /// One lexical step at `data[i]`: `Some(bytes consumed)`, or `None` to wait for more input.
    fn step(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        let next = data.get(i + 1).copied();
        // Lookahead of one byte: wait for it unless the input has ended.
        let need_next = next.is_none() && !eof;
        if let State::Meta(line) = &mut self.state {
            let run = data[i..]
                .iter()
                .position(|c| *c == b'\n')
                .unwrap_or(data.len() - i);
            line.extend_from_slice(&data[i..i + run]);
            if line.len() > 4096 {
                return Err(self.refuse("has a meta-command line longer than 4 KiB"));
            }
            if run > 0 {
                return Ok(Some(run));
            }
            let line = std::mem::take(line);
            self.meta_line(&line)?;
            self.state = State::Initial;
            self.emit(b"\n", out);
            self.line_start = true;
            return Ok(Some(1));
        }
        match self.state.clone() {
            State::Copy { line_start, escape } => {
                return self.copy_step(data, i, eof, out, line_start, escape)
            }
            State::Meta(_) => unreachable!("handled above"),
            State::LineComment => {
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'\n' || *c == b'\r')
                    .unwrap_or(data.len() - i);
                if run == 0 {
                    self.state = State::Initial;
                    return self.initial(data, i, eof, out);
                }
                self.emit(&data[i..i + run], out);
                return Ok(Some(run));
            }
            State::Block(depth) => {
                if b == b'/' || b == b'*' {
                    if need_next {
                        return Ok(None);
                    }
                    if b == b'/' && next == Some(b'*') {
                        self.state = State::Block(depth + 1);
                        self.emit(b"/*", out);
                        return Ok(Some(2));
                    }
                    if b == b'*' && next == Some(b'/') {
                        self.state = if depth == 0 {
                            State::Initial
                        } else {
                            State::Block(depth - 1)
                        };
                        self.emit(b"*/", out);
                        return Ok(Some(2));
                    }
                }
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'/' || *c == b'*')
                    .unwrap_or(data.len() - i)
                    .max(1);
                self.emit(&data[i..i + run], out);
                return Ok(Some(run));
            }
            State::Ident => {
                if b == b'"' {
                    if need_next {
                        return Ok(None);
                    }
                    if next == Some(b'"') {
                        self.emit(b"\"\"", out);
                        return Ok(Some(2));
                    }
                    self.state = State::Initial;
                    self.emit(b"\"", out);
                    return Ok(Some(1));
                }
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'"')
                    .unwrap_or(data.len() - i);
                self.emit(&data[i..i + run], out);
                return Ok(Some(run));
            }
            State::StrEscape => {
                self.state = State::Str(Str::Escaped);
                self.emit(&[b], out);
                return Ok(Some(1));
            }
            State::Str(kind) => return self.str_step(data, i, eof, out, kind),
            State::AfterQuote { kind, newline } => {
                match b {
                    b' ' | b'\t' | b'\x0c' => {}
                    b'\n' | b'\r' => {
                        self.state = State::AfterQuote {
                            kind,
                            newline: true,
                        };
                    }
                    b'-' => {
                        if need_next {
                            return Ok(None);
                        }
                        if next != Some(b'-') {
                            self.state = State::Initial;
                            return self.initial(data, i, eof, out);
                        }
                        // A comment to the end of the line; its newline comes next.
                        let end = data[i..]
                            .iter()
                            .position(|c| *c == b'\n' || *c == b'\r')
                            .map(|p| i + p);
                        let Some(end) = end else {
                            if !eof {
                                return Ok(None);
                            }
                            self.emit(&data[i..], out);
                            self.state = State::Initial;
                            return Ok(Some(data.len() - i));
                        };
                        self.emit(&data[i..end], out);
                        return Ok(Some(end - i));
                    }
                    b'\'' if newline => {
                        // The literal continues; psql lexes it in the state it had before.
                        self.state = State::Str(kind);
                        self.emit(b"'", out);
                        return Ok(Some(1));
                    }
                    _ => {
                        self.state = State::Initial;
                        return self.initial(data, i, eof, out);
                    }
                }
                self.emit(&[b], out);
                if b == b'\n' {
                    self.line_start = true;
                }
                return Ok(Some(1));
            }
            State::Dollar(tag) => {
                if b != b'$' {
                    let run = data[i..]
                        .iter()
                        .position(|c| *c == b'$')
                        .unwrap_or(data.len() - i);
                    self.emit(&data[i..i + run], out);
                    return Ok(Some(run));
                }
                if data.len() - i < tag.len() && !eof {
                    return Ok(None);
                }
                if data[i..].starts_with(&tag) {
                    self.emit(&tag, out);
                    self.state = State::Initial;
                    return Ok(Some(tag.len()));
                }
                self.emit(b"$", out);
                return Ok(Some(1));
            }
            State::Initial => {}
        }
        self.initial(data, i, eof, out)
    }

    fn str_step(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
        kind: Str,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        let next = data.get(i + 1).copied();
        match b {
            b'\'' => {
                if kind != Str::BitOrHex {
                    if next.is_none() && !eof {
                        return Ok(None);
                    }
                    if next == Some(b'\'') {
                        self.emit(b"''", out);
                        return Ok(Some(2));
                    }
                }
                self.state = State::AfterQuote {
                    kind,
                    newline: false,
                };
                self.emit(b"'", out);
                Ok(Some(1))
            }
            b'\\' if matches!(kind, Str::Plain | Str::Escaped) => {
                if self.prev_high {
                    // In a multibyte client encoding (SJIS, BIG5, GBK...) this backslash could
                    // be the second byte of a character to psql, and not an escape.
                    return Err(self.refuse(
                        "has a backslash right after a non-ASCII byte in a string literal, which psql may read as part of a multibyte character",
                    ));
                }
                if kind == Str::Plain {
                    self.emit(b"\\\\", out);
                } else {
                    self.state = State::StrEscape;
                    self.emit(b"\\", out);
                }
                Ok(Some(1))
            }
            _ => {
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'\'' || *c == b'\\')
                    .unwrap_or(data.len() - i)
                    .max(1);
                self.emit(&data[i..i + run], out);
                Ok(Some(run))
            }
        }
    }

    fn copy_step(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
        line_start: bool,
        escape: bool,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        if line_start && b == b'\\' {
            // `\.` alone on a line ends the data, as psql's handleCopyIn reads it.
            let rest = &data[i..];
            for end in [&b"\\.\n"[..], b"\\.\r\n"] {
                if rest.starts_with(end) {
                    self.state = State::Initial;
                    self.line_start = true;
                    self.end_statement();
                    self.emit(end, out);
                    return Ok(Some(end.len()));
                }
            }
            if rest.len() < 4
                && !eof
                && (b"\\.\r\n".starts_with(rest) || b"\\.\n".starts_with(rest))
            {
                return Ok(None);
            }
        }
        if escape {
            // pg_dump's COPY text escapes; anything else is not its output.
            if !b"\\bfnrtvN".contains(&b) {
                return Err(self.refuse(&format!(
                    "has `\\{}` in COPY data, an escape pg_dump does not write",
                    (b as char).escape_debug()
                )));
            }
            self.state = State::Copy {
                line_start: false,
                escape: false,
            };
            self.emit(&[b], out);
            return Ok(Some(1));
        }
        if b == b'\n' || b == b'\\' {
            self.state = State::Copy {
                line_start: b == b'\n',
                escape: b == b'\\',
            };
            self.emit(&[b], out);
            return Ok(Some(1));
        }
        let run = data[i..]
            .iter()
            .position(|c| *c == b'\n' || *c == b'\\')
            .unwrap_or(data.len() - i);
        self.state = State::Copy {
            line_start: false,
            escape: false,
        };
        self.emit(&data[i..i + run], out);
        Ok(Some(run))
    }

    /// A token starts: counts it, and classifies the statement by its first words.
    fn token(&mut self, word: Option<&[u8]>, tok: Tok) -> Result<(), Refused> {
        if self.tokens == 0 {
            self.stmt_line_start = self.line_start;
        }
        self.tokens += 1;
        self.line_start = false;
        let upper = word.map(|w| String::from_utf8_lossy(w).to_ascii_uppercase());
        match (&mut self.kind, upper.as_deref()) {
            (Kind::Empty, Some(w)) => {
                self.kind = match w {
                    "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT"
                    | "RELEASE" => {
                        self.held = Some(Vec::new());
                        Kind::Transaction(w.to_string())
                    }
                    "PREPARE" => {
                        self.held = Some(Vec::new());
                        Kind::Prepare
                    }
                    "COPY" => Kind::Copy(CopyShape {
                        tokens: vec![Tok::Word("COPY".into())],
                        line_start: self.stmt_line_start,
                    }),
                    _ => Kind::Other,
                };
                return Ok(());
            }
            (Kind::Empty, None) => self.kind = Kind::Other,
            (Kind::Prepare, w) => {
                if w == Some("TRANSACTION") {
                    return Err(self.refuse(
                        "has PREPARE TRANSACTION, which would end the restore's transaction",
                    ));
                }
                self.kind = Kind::Other;
            }
            (Kind::Transaction(first), _) => {
                let first = first.to_lowercase();
                return Err(self.refuse(&format!(
                    "has the transaction control statement `{first} ...`, which pg_dump does not write and which would end the restore's transaction"
                )));
            }
            (Kind::Copy(shape), _) if self.paren == 0 => {
                if shape.tokens.len() > 10_000 {
                    return Err(Refused {
                        line: self.line,
                        why: "has a COPY statement too long to check".into(),
                    });
                }
                shape.tokens.push(match (&tok, upper) {
                    (Tok::Word(_), Some(w)) => Tok::Word(w),
                    _ => tok,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn end_statement(&mut self) {
        self.tokens = 0;
        self.ident_count = 0;
        self.kind = Kind::Empty;
    }

    /// At a statement-ending `;` (already emitted into the held buffer if any).
    fn statement_end(&mut self, out: &mut Vec<u8>) -> Result<(), Refused> {
        let kind = std::mem::replace(&mut self.kind, Kind::Empty);
        let held = self.held.take();
        match kind {
            Kind::Transaction(word) => {
                if word == "BEGIN" || word == "COMMIT" {
                    // pg_dump's own, around large objects: the restore's one transaction
                    // stands in for it.
                    out.extend_from_slice(
                        format!("/* {word}; (pg-s3-backup runs the whole restore as one transaction) */").as_bytes(),
                    );
                } else {
                    return Err(self.refuse(&format!(
                        "has the transaction control statement `{}`, which pg_dump does not write and which would end the restore's transaction",
                        word.to_lowercase()
                    )));
                }
            }
            Kind::Prepare => {
                out.extend_from_slice(&held.unwrap_or_default());
            }
            Kind::Copy(shape) => {
                if let Some(h) = held {
                    out.extend_from_slice(&h);
                }
                match copy_in(&shape.tokens) {
                    CopyIn::No => {}
                    CopyIn::Yes if shape.line_start => {
                        // The data starts on the next line; the rest of this one must be empty.
                        self.after_copy_statement = true;
                    }
                    CopyIn::Yes | CopyIn::Unclear => {
                        return Err(self.refuse(
                            "has a COPY ... FROM stdin that is not written as pg_dump writes it (`COPY name (columns) FROM stdin;` on a line of its own)",
                        ));
                    }
                }
            }
            Kind::Empty | Kind::Other => {
                if let Some(h) = held {
                    out.extend_from_slice(&h);
                }
            }
        }
        self.end_statement();
        Ok(())
    }

    /// A whole line starting with a backslash, at a statement boundary.
    fn meta_line(&mut self, line: &[u8]) -> Result<(), Refused> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let (cmd, arg) = text.split_once(' ').unwrap_or((text, ""));
        let key_ok = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric());
        match cmd {
            "\\restrict" | "\\unrestrict" if key_ok => Ok(()),
            "\\connect" | "\\c" | "\\encoding" => Err(self.refuse(&format!(
                "has `{}`: the dump was made with --create, whose CREATE DATABASE and \\connect cannot run in the restore's one transaction; back up without --create, create the database and restore into it",
                crate::output::inert(cmd, false)
            ))),
            _ => Err(self.refuse(&format!(
                "has the psql meta-command `{}`, which pg_dump does not write: a backup object must not run commands on the restoring host",
                crate::output::inert(&cmd.chars().take(40).collect::<String>(), false)
            ))),
        }
    }

    /// One token in INITIAL state.
    fn initial(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        let next = data.get(i + 1).copied();
        let need_next = next.is_none() && !eof;
        if self.after_copy_statement {
            // After `COPY ... FROM stdin;` only the line end may follow; then the data.
            match (b, next) {
                (b'\n', _) => {
                    self.after_copy_statement = false;
                    self.state = State::Copy {
                        line_start: true,
                        escape: false,
                    };
                    self.emit(b"\n", out);
                    return Ok(Some(1));
                }
                (b'\r', None) if !eof => return Ok(None),
                (b'\r', Some(b'\n')) => {
                    self.after_copy_statement = false;
                    self.state = State::Copy {
                        line_start: true,
                        escape: false,
                    };
                    self.emit(b"\r\n", out);
                    return Ok(Some(2));
                }
                _ => {
                    return Err(self.refuse(
                        "has text after `COPY ... FROM stdin;` on the same line, which pg_dump does not write",
                    ))
                }
            }
        }
        match b {
            b' ' | b'\t' | b'\x0c' | b'\r' => {
                self.emit(&[b], out);
                Ok(Some(1))
            }
            b'\n' => {
                self.emit(b"\n", out);
                self.line_start = true;
                Ok(Some(1))
            }
            b'-' if need_next => Ok(None),
            b'-' if next == Some(b'-') => {
                self.state = State::LineComment;
                self.emit(b"--", out);
                Ok(Some(2))
            }
            b'/' if need_next => Ok(None),
            b'/' if next == Some(b'*') => {
                self.state = State::Block(0);
                self.emit(b"/*", out);
                Ok(Some(2))
            }
            b'\\' => {
                if self.line_start && self.tokens == 0 {
                    self.state = State::Meta(vec![b'\\']);
                    return Ok(Some(1));
                }
                let word = data[i..]
                    .iter()
                    .take(12)
                    .take_while(|c| !c.is_ascii_whitespace())
                    .count();
                if word == data.len() - i && word < 12 && !eof {
                    return Ok(None);
                }
                let cmd = String::from_utf8_lossy(&data[i..i + word]).into_owned();
                Err(self.refuse(&format!(
                    "has a backslash outside quotes, the psql meta-command `{}` in the middle of a statement, which pg_dump does not write",
                    crate::output::inert(&cmd, false)
                )))
            }
            b'\'' => {
                self.token(None, Tok::Other)?;
                self.state = State::Str(Str::Plain);
                // The space keeps E from joining a word before it.
                self.emit(b" E'", out);
                Ok(Some(1))
            }
            b'"' => {
                self.token(None, Tok::Quoted)?;
                self.state = State::Ident;
                self.emit(b"\"", out);
                Ok(Some(1))
            }
            b'$' => self.dollar(data, i, eof, out),
            b':' => {
                if need_next {
                    return Ok(None);
                }
                self.token(None, Tok::Other)?;
                match next {
                    Some(b':') | Some(b'=') => {
                        self.emit(&data[i..i + 2], out);
                        Ok(Some(2))
                    }
                    Some(c) if is_variable_char(c) || matches!(c, b'\'' | b'"' | b'{') => {
                        // psql would substitute a variable here; a space after the colon
                        // keeps the text as it is (SQL has no `:name` of its own).
                        self.emit(b": ", out);
                        Ok(Some(1))
                    }
                    _ => {
                        self.emit(b":", out);
                        Ok(Some(1))
                    }
                }
            }
            b';' => {
                if self.prev_high {
                    return Err(self.multibyte(';'));
                }
                self.line_start = false;
                self.emit(b";", out);
                if self.paren == 0 && self.begin == 0 {
                    self.statement_end(out)?;
                } else {
                    self.tokens += 1;
                }
                Ok(Some(1))
            }
            b'(' => {
                self.token(None, Tok::Group)?;
                self.paren += 1;
                self.emit(b"(", out);
                Ok(Some(1))
            }
            b')' => {
                self.token(None, Tok::Other)?;
                self.paren = self.paren.saturating_sub(1);
                self.emit(b")", out);
                Ok(Some(1))
            }
            b'.' => {
                if need_next {
                    return Ok(None);
                }
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    return self.number(data, i, eof, out);
                }
                self.token(None, Tok::Dot)?;
                self.emit(b".", out);
                Ok(Some(1))
            }
            b'0'..=b'9' => self.number(data, i, eof, out),
            c if is_ident_start(c) => self.word(data, i, eof, out),
            _ => {
                if self.prev_high && matches!(b, b':') {
                    return Err(self.multibyte(':'));
                }
                self.token(None, Tok::Other)?;
                self.emit(&[b], out);
                Ok(Some(1))
            }
        }
    }

    fn ambiguous(&self) -> Refused {
        self.refuse("has a number run into letters (like `1e'...'`, `0x1F` or `1_000`), which psql versions lex differently")
    }

    fn multibyte(&self, c: char) -> Refused {
        self.refuse(&format!(
            "has `{c}` right after a non-ASCII byte outside quotes, which psql may read as part of a multibyte character"
        ))
    }

    /// A word, or a string prefix (`E'`, `B'`, `X'`, `U&'`, `U&"`, `N'`).
    fn word(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        let rest = &data[i..];
        if rest.len() < 3 && !eof {
            return Ok(None);
        }
        let second = rest.get(1).copied();
        let third = rest.get(2).copied();
        let prefix = match (b.to_ascii_lowercase(), second, third) {
            (b'e', Some(b'\''), _) => Some((2, State::Str(Str::Escaped))),
            (b'b' | b'x', Some(b'\''), _) => Some((2, State::Str(Str::BitOrHex))),
            (b'u', Some(b'&'), Some(b'\'')) => Some((3, State::Str(Str::Unicode))),
            (b'u', Some(b'&'), Some(b'"')) => Some((3, State::Ident)),
            (b'n', Some(b'\''), _) => {
                return Err(self.refuse(
                    "has a national character literal N'...', which pg_dump does not write",
                ))
            }
            (b'u', Some(b'&'), _) => {
                // psql's {xufailed}: the letter alone, then `&`.
                self.token(None, Tok::Other)?;
                self.emit(&[b], out);
                return Ok(Some(1));
            }
            _ => None,
        };
        if let Some((len, state)) = prefix {
            self.token(
                None,
                if state == State::Ident {
                    Tok::Quoted
                } else {
                    Tok::Other
                },
            )?;
            self.state = state;
            self.emit(&rest[..len], out);
            return Ok(Some(len));
        }
        let len = rest.iter().position(|c| !is_ident_cont(*c));
        let len = match len {
            Some(n) => n,
            None if eof => rest.len(),
            None => return Ok(None),
        };
        let word = &rest[..len];
        if word.last().is_some_and(|c| *c >= 0x80) {
            if let Some(&after) = rest.get(len) {
                if matches!(after, b'\\' | b';' | b':') {
                    return Err(self.multibyte(after as char));
                }
            }
        }
        self.begin_heuristic(word);
        self.token(Some(word), Tok::Word(String::new()))?;
        self.emit(word, out);
        Ok(Some(len))
    }

    /// psql's tracking of `CREATE [OR REPLACE] {FUNCTION|PROCEDURE} ... BEGIN ATOMIC ... END`,
    /// whose semicolons do not end the statement (psqlscan.l, the {identifier} rule).
    fn begin_heuristic(&mut self, word: &[u8]) {
        if self.ident_count == 0 {
            self.idents = [0; 4];
        }
        let lower = word.to_ascii_lowercase();
        if matches!(
            lower.as_slice(),
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && (self.ident_count as usize) < self.idents.len()
        {
            self.idents[self.ident_count as usize] = lower[0];
        }
        self.ident_count += 1;
        let ids = self.idents;
        let in_routine = ids[0] == b'c'
            && (ids[1] == b'f'
                || ids[1] == b'p'
                || (ids[1] == b'o' && ids[2] == b'r' && (ids[3] == b'f' || ids[3] == b'p')));
        if in_routine && self.paren == 0 {
            match lower.as_slice() {
                b"begin" => self.begin += 1,
                b"case" if self.begin >= 1 => self.begin += 1,
                b"end" if self.begin > 0 => self.begin -= 1,
                _ => {}
            }
        }
    }

    /// A number (or a `$n` parameter): digits, a fraction, an exponent. Letters right after
    /// it are lexed differently by psql 14 and 15+; they are passed on but marked, and a quote
    /// right after them is refused.
    fn number(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Refused> {
        let rest = &data[i..];
        let mut n = 0;
        let digits =
            |s: &[u8], from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        // Every lookahead that reaches the end of the input waits for more.
        let more = |at: usize| at >= rest.len() && !eof;
        n += digits(rest, n);
        if more(n) {
            return Ok(None);
        }
        if rest.get(n) == Some(&b'.') {
            if more(n + 1) {
                return Ok(None);
            }
            if rest.get(n + 1) != Some(&b'.') {
                n += 1;
                n += digits(rest, n);
                if more(n) {
                    return Ok(None);
                }
            }
        }
        if matches!(rest.get(n), Some(b'e' | b'E')) {
            let mut m = n + 1;
            if more(m) {
                return Ok(None);
            }
            if matches!(rest.get(m), Some(b'+' | b'-')) {
                m += 1;
            }
            let d = digits(rest, m);
            if more(m + d) {
                return Ok(None);
            }
            if d > 0 {
                n = m + d;
            }
        }
        let ident = rest[n..].iter().take_while(|c| is_ident_cont(**c)).count();
        if more(n + ident) {
            return Ok(None);
        }
        if ident > 0 {
            return Err(self.ambiguous());
        }
        self.token(None, Tok::Other)?;
        self.emit(&rest[..n], out);
        Ok(Some(n))
    }

    /// `$`: a dollar quote `$tag$`, a parameter `$1`, or a lone `$`.
    fn dollar(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Refused> {
        let rest = &data[i..];
        let tag_len = rest[1..]
            .iter()
            .enumerate()
            .take_while(|(k, c)| {
                if *k == 0 {
                    is_dolq_start(**c)
                } else {
                    is_dolq_cont(**c)
                }
            })
            .count();
        if 1 + tag_len == rest.len() && !eof {
            return Ok(None);
        }
        if rest.get(1 + tag_len) == Some(&b'$') {
            let tag = &rest[..tag_len + 2];
            if tag.iter().any(|c| *c >= 0x80) {
                return Err(self.refuse(
                    "has a dollar quote whose tag is not ASCII, which psql may read differently under a multibyte client encoding",
                ));
            }
            self.token(None, Tok::Other)?;
            self.state = State::Dollar(tag.to_vec());
            self.emit(tag, out);
            return Ok(Some(tag.len()));
        }
        if tag_len == 0 && rest.get(1).is_some_and(|c| c.is_ascii_digit()) {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let ident = rest[1 + digits..]
                .iter()
                .take_while(|c| is_ident_cont(**c))
                .count();
            if 1 + digits + ident == rest.len() && !eof {
                return Ok(None);
            }
            if ident > 0 {
                return Err(self.ambiguous());
            }
            self.token(None, Tok::Other)?;
            self.emit(&rest[..1 + digits], out);
            return Ok(Some(1 + digits));
        }
        // {dolqfailed}: the `$` alone; what follows is lexed afresh.
        self.token(None, Tok::Other)?;
        self.emit(b"$", out);
        Ok(Some(1))
    }
}

/// Is a COPY statement's depth-0 token list `COPY name [(cols)] FROM STDIN`?
#[derive(Debug, PartialEq, Eq)]
enum CopyIn {
    Yes,
    No,
    /// It mentions STDIN but not in pg_dump's shape: refused rather than guessed.
    Unclear,
}

fn copy_in(tokens: &[Tok]) -> CopyIn {
    let word = |t: &Tok, w: &str| matches!(t, Tok::Word(x) if x == w);
    let mentions_stdin = tokens.iter().any(|t| word(t, "STDIN"));
    if !mentions_stdin {
        return CopyIn::No;
    }
    // tokens[0] is COPY itself.
    let n = tokens.len();
    if n < 4 || !word(&tokens[n - 2], "FROM") || !word(&tokens[n - 1], "STDIN") {
        return CopyIn::Unclear;
    }
    let mut name = &tokens[1..n - 2];
    if let Some((Tok::Group, before)) = name.split_last() {
        name = before;
    }
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|t| matches!(t, Tok::Word(_) | Tok::Quoted | Tok::Dot));
    if name_ok {
        CopyIn::Yes
    } else {
        CopyIn::Unclear
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn is_variable_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn is_dolq_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_dolq_cont(c: u8) -> bool {
    is_dolq_start(c) || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pg_dump's header and trailer around `body`, as pg_dump 15.14+ writes them.
    fn dump(body: &str) -> String {
        format!(
            "--\n-- PostgreSQL database dump\n--\n\n\\restrict k3y\n\nSET standard_conforming_strings = on;\n{body}\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict k3y\n\n"
        )
    }

    fn run(mode: Mode, input: &[u8], chunk: usize) -> Result<String, Refused> {
        let mut f = Filter::new(mode);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            f.push(c, &mut out)?;
        }
        f.finish(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn filter(body: &str) -> Result<String, Refused> {
        let text = dump(body);
        let whole = run(Mode::Psql { restrict: false }, text.as_bytes(), usize::MAX);
        // The chunking never changes the outcome.
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(
                run(Mode::Psql { restrict: false }, text.as_bytes(), chunk),
                whole,
                "chunk {chunk}: {body:?}"
            );
        }
        whole
    }

    /// The filtered body, between the header's SET and the trailer.
    fn body_of(out: &str) -> &str {
        let start = out.find("SET standard_conforming_strings = on;\n").unwrap() + 38;
        let end = out
            .find("\n--\n-- PostgreSQL database dump complete")
            .unwrap();
        &out[start..end]
    }

    #[test]
    fn a_dump_is_wrapped_in_one_transaction_without_its_restrict_lines() {
        let out = filter("CREATE TABLE t (a int);").unwrap();
        assert!(
            out.starts_with("BEGIN;\n--\n-- PostgreSQL database dump\n"),
            "{out}"
        );
        assert!(out.ends_with("\n\n\n\nCOMMIT;\n"), "{out}");
        assert!(
            !out.contains("\\restrict") && !out.contains("\\unrestrict"),
            "{out}"
        );
        let restricted = run(
            Mode::Psql { restrict: true },
            dump("SELECT 1;").as_bytes(),
            usize::MAX,
        )
        .unwrap();
        let first = restricted.lines().next().unwrap();
        assert!(
            first.starts_with("\\restrict ") && !first.contains("k3y"),
            "{first}"
        );
        assert_eq!(restricted.lines().nth(1), Some("BEGIN;"));
        let checked = run(Mode::Check, dump("SELECT 1;").as_bytes(), 5).unwrap();
        assert!(
            checked.starts_with("--\n") && checked.ends_with("COMMIT;\n"),
            "{checked}"
        );
    }

    #[test]
    fn every_meta_command_is_refused() {
        for body in [
            "\\! touch /tmp/x",
            "\\o |cat > /tmp/x",
            "\\copy t from program 'touch /tmp/x'",
            "\\setenv PAGER 'touch /tmp/x'",
            "\\i /etc/passwd",
            "\\ir x.sql",
            "\\set ON_ERROR_STOP off",
            "\\unset ON_ERROR_STOP",
            "\\w /tmp/x",
            "\\lo_import /etc/passwd",
            "\\cd /",
            "\\echo hi",
            "\\gexec",
            "\\c otherdb",
            "\\connect -reuse-previous=on \"dbname='x' host=evil\"",
            "\\encoding SQL_ASCII",
            "\\restrict",
            "\\unrestrict bad-key!",
            "SELECT 1 \\g |touch /tmp/x",
            "SELECT 1; \\! touch /tmp/x",
            "SELECT 1 \\; SELECT 2;",
            "SELECT 1\n\\! touch /tmp/x\n;",
            "  \\! indented",
            "SELECT 'a\\'; \\! touch /tmp/x --';",
            "SELECT $$x$$ \\! y;",
            "/* c */ \\! touch /tmp/x",
        ] {
            let err = filter(body).unwrap_err();
            assert!(
                err.why.contains("meta-command") || err.why.contains("--create"),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn backslashes_inside_quotes_comments_and_copy_data_are_data() {
        for body in [
            "SELECT E'\\\\! x', $$ \\! y $$, $f$ \\o |x $f$;",
            "-- \\! touch /tmp/x",
            "/* \\! /* nested \\o */ still */ SELECT 1;",
            "SELECT \"\\!\";",
            "COMMENT ON TABLE t IS 'C:\\';",
            "SELECT U&'\\0041', B'101', X'1F';",
            "COPY public.t (a, b) FROM stdin;\n1\t\\N\n2\tx\\\\y\\tz\n\\.\n",
        ] {
            filter(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        }
    }

    #[test]
    fn plain_literals_become_escape_literals_with_the_same_value() {
        let out = filter("SELECT 'a\\b', 'it''s', E'x\\'y', 'z'\n'\\w', abc'q';").unwrap();
        assert_eq!(
            body_of(&out),
            "SELECT  E'a\\\\b',  E'it''s', E'x\\'y',  E'z'\n'\\\\w', abc E'q';"
        );
    }

    #[test]
    fn psql_variables_are_not_substituted() {
        let out =
            filter("SELECT :foo, :'bar', :\"baz\", :{?q}, a[1:2], x::int, f(a := 1);").unwrap();
        assert_eq!(
            body_of(&out),
            "SELECT : foo, :  E'bar', : \"baz\", : {?q}, a[1: 2], x::int, f(a := 1);"
        );
    }

    #[test]
    fn transactions_belong_to_the_restore() {
        let out = filter("BEGIN;\nSELECT pg_catalog.lo_create('16385');\nCOMMIT;").unwrap();
        let body = body_of(&out);
        assert!(
            !body.contains("\nBEGIN;") && !body.starts_with("BEGIN"),
            "{body}"
        );
        assert!(body.contains("/* BEGIN; (pg-s3-backup"), "{body}");
        assert!(body.contains("/* COMMIT; (pg-s3-backup"), "{body}");
        assert_eq!(out.matches("COMMIT;\n").count(), 1, "{out}");
        for body in [
            "ROLLBACK;",
            "END;",
            "ABORT;",
            "COMMIT AND CHAIN;",
            "commit prepared 'x';",
            "START TRANSACTION;",
            "SAVEPOINT s;",
            "RELEASE s;",
            "ROLLBACK TO s;",
            "PREPARE TRANSACTION 'x';",
            "BEGIN ISOLATION LEVEL SERIALIZABLE;",
        ] {
            let err = filter(body).unwrap_err();
            assert!(err.why.contains("transaction"), "{body}: {err}");
        }
        // A prepared statement is not transaction control.
        assert!(filter("PREPARE p AS SELECT 1;").is_ok());
        // Nor is END inside a SQL-standard function body.
        assert!(filter(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; CASE WHEN true THEN 1 END; END;\nCOPY t (a) FROM stdin;\n\\! not a command, data\n\\.\n"
        )
        .is_err_and(|e| e.why.contains("escape")));
    }

    #[test]
    fn copy_data_is_passed_only_after_pg_dumps_own_copy_statement() {
        let data = "COPY public.\"T\" (\"a b\", c) FROM stdin;\n1\tx\n\\.\n";
        assert_eq!(body_of(&filter(data).unwrap()), data);
        for (body, why) in [
            ("COPY t FROM stdin WITH (FORMAT csv);\n1\n\\.\n", "COPY"),
            ("SELECT 1; COPY t FROM stdin;\n1\n\\.\n", "COPY"),
            ("COPY t FROM stdin; SELECT 1;\n1\n\\.\n", "after `COPY"),
            ("COPY (SELECT 1) FROM stdin;\n\\.\n", "COPY"),
            ("COPY t FROM stdin;\n\\! touch /tmp/x\n\\.\n", "escape"),
            ("COPY t FROM stdin;\nx\\.y\n\\.\n", "escape"),
            ("COPY t FROM stdin;\n1\n", "COPY data"),
        ] {
            let err = filter(body).unwrap_err();
            assert!(err.why.contains(why), "{body:?}: {err}");
        }
        // COPY to stdout or from a server file is SQL like any other.
        assert!(filter("COPY t TO stdout;").is_ok());
    }

    #[test]
    fn constructs_psql_could_read_differently_are_refused() {
        for body in [
            "SELECT 1e'\\'; \\! x --';",
            "SELECT 0x1F;",
            "SELECT 1_000;",
            "SELECT $1abc;",
            "SELECT N'x';",
            "SELECT E'\u{e9}\\'';",
            "SELECT 'x\u{e9}\\';",
            "SELECT \u{e9};",
            "SELECT $\u{e9}$ x $\u{e9}$;",
        ] {
            assert!(filter(body).is_err(), "{body:?}");
        }
        for body in [
            "SELECT 1e10, 1.5, .5, 1.5e-3, 2;",
            "SELECT \"\u{e9}\";",
            "SELECT 'caf\u{e9}';",
        ] {
            filter(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        }
    }

    #[test]
    fn a_dump_must_end_as_pg_dump_ends_it() {
        let full = dump("SELECT 1;");
        for cut in [full.len() - 5, full.len() - 30, full.len() / 2, 10] {
            assert!(
                run(Mode::Psql { restrict: false }, &full.as_bytes()[..cut], 8).is_err(),
                "cut at {cut}"
            );
        }
        for body in [
            "SELECT 'open",
            "SELECT 1",
            "/* open",
            "SELECT $$x",
            "SELECT (1;",
        ] {
            assert!(filter(body).is_err(), "{body:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of SQL and psql syntax that change the lexer's state.
        fn sqlish() -> impl Strategy<Value = String> {
            let pieces = vec![
                "'",
                "E'",
                "U&'",
                "B'",
                "\\",
                "$$",
                "$a$",
                "$1",
                "--",
                "/*",
                "*/",
                "\"",
                ";",
                "\n",
                "\r\n",
                " ",
                "x",
                "1",
                "1e",
                ".",
                "e",
                "(",
                ")",
                "''",
                ":v",
                "::",
                ":'",
                "COPY t (a) FROM stdin;\n",
                "\\.\n",
                "\\N",
                "BEGIN",
                "BEGIN;",
                "COMMIT;",
                "END",
                "CASE",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC ",
                "\\restrict k\n",
                "\\! x\n",
                "\u{e9}",
                "-",
            ];
            proptest::collection::vec(prop::sample::select(pieces), 0..40).prop_map(|v| v.concat())
        }

        proptest! {
            /// SQL-like input: the same output and verdict whatever the chunking.
            #[test]
            fn sqlish_input_any_chunking(body in sqlish(), chunk in 1usize..16) {
                let text = dump(&body);
                let whole = run(Mode::Psql { restrict: false }, text.as_bytes(), usize::MAX);
                prop_assert_eq!(run(Mode::Psql { restrict: false }, text.as_bytes(), chunk), whole);
            }

            /// Any bytes: no panic, and the same verdict whatever the chunking.
            #[test]
            fn any_input_any_chunking(body in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..40) {
                let text = [dump("").as_bytes(), &body].concat();
                let whole = run(Mode::Psql { restrict: false }, &text, usize::MAX);
                prop_assert_eq!(run(Mode::Psql { restrict: false }, &text, chunk), whole);
            }
        }
    }
}
