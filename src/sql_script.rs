//! A plain dump read as statements. A backup object is anyone's to write, and psql runs every
//! backslash meta-command it reads (`\!`, `\o |cmd`, `\copy ... program`, `\setenv`, `\i`), and
//! sends whatever its own lexer takes for one statement, several at once if it misreads the
//! text (a NUL byte, a multibyte client encoding, a function named `begin`). So a restore does
//! not use psql: this module splits the dump into single statements and COPY data, and
//! `target` sends each statement alone over the extended protocol, whose Parse refuses a string
//! with more than one statement. A split that differs from the server's can only make a
//! statement fail, never smuggle one in.
//!
//! The splitting follows psql's lexer (src/fe_utils/psqlscan.l: quotes of every kind, nested
//! comments, dollar quotes, parentheses, the `BEGIN ATOMIC` heuristic) and pg_dump's output:
//! - pg_dump's `\restrict`/`\unrestrict` lines are dropped; any other meta-command, and any
//!   backslash outside quotes and COPY data, refuses the dump;
//! - the restore owns the transaction: pg_dump's own `BEGIN;` and `COMMIT;` (around large
//!   objects) are dropped and every other transaction control statement refuses the dump;
//! - COPY data is passed on only after pg_dump's own `COPY name (columns) FROM stdin;`; any
//!   other COPY (to a program, a server file, stdout) refuses the dump;
//! - a NUL byte, and a `SET client_encoding` to anything but UTF-8, refuse the dump;
//! - [`Script::finish`] checks that the dump ended as pg_dump ends it.
//!
//! A globals script ([`Script::globals`], `pg_dumpall --globals-only`) is read the same way,
//! and must also hold nothing but what pg_dumpall writes there: its three `SET`s, and `CREATE`,
//! `ALTER`, `COMMENT`, `SECURITY LABEL`, `GRANT` and `REVOKE` of roles and tablespaces, ending
//! with pg_dumpall's trailer.
//!
//! It neither connects nor executes; `target` does.

use crate::source::complete::{self, Watch};

/// The longest line, token or dollar-quote tag looked ahead at.
const MAX_LOOKAHEAD: usize = 1 << 20;
/// PostgreSQL's own limit on a query string.
const MAX_STATEMENT: usize = 1 << 30;
/// COPY data is handed on in pieces of about this size.
const COPY_CHUNK: usize = 256 * 1024;

/// Why a dump was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the dump {why}")]
pub struct Refused {
    pub line: u64,
    pub why: String,
}

/// What the dump asks of the database, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One statement, `;` included, and the line it starts on.
    Statement { sql: Vec<u8>, line: u64 },
    /// `COPY ... FROM stdin;`: the data follows.
    CopyStart { sql: Vec<u8>, line: u64 },
    /// Rows of COPY text data, as written.
    CopyData(Vec<u8>),
    /// The `\.` that ends the data.
    CopyEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    /// `'...'`, read with `standard_conforming_strings = on`, as pg_dump writes it.
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

/// The depth-0 tokens of a statement, enough to classify it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted,
    Dot,
    Group,
    Other,
}

pub struct Script {
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
    /// The statement being read, from its first token.
    stmt: Vec<u8>,
    stmt_line: u64,
    /// Its depth-0 tokens, up to a bound.
    toks: Vec<Tok>,
    /// Tokens since the statement began (0: nothing but whitespace and comments).
    tokens: u64,
    /// The statement began on a line where nothing came before it.
    stmt_line_start: bool,
    /// Its last three depth-0 tokens.
    last: std::collections::VecDeque<Tok>,
    /// A `BEGIN` in a routine definition, counted only if `ATOMIC` follows.
    pending_begin: bool,
    after_copy_statement: bool,
    copy_data: Vec<u8>,
    watch: Watch,
    /// A globals script, not a database's dump.
    globals: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    pub fn new() -> Self {
        Self {
            state: State::Initial,
            carry: Vec::new(),
            line: 1,
            line_start: true,
            paren: 0,
            begin: 0,
            ident_count: 0,
            idents: [0; 4],
            stmt: Vec::new(),
            stmt_line: 1,
            toks: Vec::new(),
            tokens: 0,
            stmt_line_start: true,
            last: std::collections::VecDeque::new(),
            pending_begin: false,
            after_copy_statement: false,
            copy_data: Vec::new(),
            watch: Watch::default(),
            globals: false,
        }
    }

    /// A reader of a globals script (`pg_dumpall --globals-only`).
    pub fn globals() -> Self {
        Self {
            globals: true,
            ..Self::new()
        }
    }

    /// Reads `input`, appending the statements and COPY data it completes to `events`.
    pub fn push(&mut self, input: &[u8], events: &mut Vec<Event>) -> Result<(), Refused> {
        // A NUL byte: psql would drop the rest of its line, a server refuses it, pg_dump never
        // writes one. What comes before it is read first, so the verdict does not depend on
        // how the input is cut into pieces.
        let nul = input.iter().position(|b| *b == 0);
        let input = &input[..nul.unwrap_or(input.len())];
        self.watch.see(input);
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(input);
        let used = self.run(&data, false, events)?;
        self.carry = data[used..].to_vec();
        if nul.is_some() {
            let line = self.line + self.carry.iter().filter(|b| **b == b'\n').count() as u64;
            return Err(Refused {
                line,
                why: "has a NUL byte, which no dump has".into(),
            });
        }
        if self.carry.len() > MAX_LOOKAHEAD {
            return Err(self.refuse("has a token or line too long to check (over 1 MiB)"));
        }
        self.flush_copy(events);
        Ok(())
    }

    /// The input ended: checks that the dump ended as a complete dump ends (outside any quote,
    /// comment, statement or COPY data; pg_dump's header first and trailer last).
    pub fn finish(&mut self, events: &mut Vec<Event>) -> Result<(), Refused> {
        let data = std::mem::take(&mut self.carry);
        let used = self.run(&data, true, events)?;
        debug_assert_eq!(used, data.len());
        self.flush_copy(events);
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
        let verdict = match self.globals {
            true => complete::globals(self.watch.head(), &self.watch.tail()),
            false => complete::plain(self.watch.head(), &self.watch.tail()),
        };
        verdict.map_err(|why| Refused {
            line: self.line,
            why: format!("is the last, and the dump is not complete: {why}"),
        })
    }

    fn refuse(&self, why: &str) -> Refused {
        Refused {
            line: self.line,
            why: why.to_string(),
        }
    }

    fn flush_copy(&mut self, events: &mut Vec<Event>) {
        if !self.copy_data.is_empty() {
            events.push(Event::CopyData(std::mem::take(&mut self.copy_data)));
        }
    }

    /// Runs the lexer over `data`; returns how many bytes were consumed (the rest needs more
    /// input, unless `eof`).
    fn run(&mut self, data: &[u8], eof: bool, events: &mut Vec<Event>) -> Result<usize, Refused> {
        let mut i = 0;
        while i < data.len() {
            let Some(n) = self.step(data, i, eof, events)? else {
                break;
            };
            self.line += data[i..i + n].iter().filter(|b| **b == b'\n').count() as u64;
            i += n;
            if self.stmt.len() > MAX_STATEMENT {
                return Err(self.refuse("has a statement longer than PostgreSQL accepts (1 GiB)"));
            }
            if self.copy_data.len() >= COPY_CHUNK {
                self.flush_copy(events);
            }
        }
        Ok(i)
    }

    /// Appends to the statement being read; whitespace and comments before its first token
    /// are dropped.
    fn emit(&mut self, bytes: &[u8]) {
        if self.tokens > 0 {
            self.stmt.extend_from_slice(bytes);
        }
    }

    /// One lexical step at `data[i]`: `Some(bytes consumed)`, or `None` to wait for more input.
    fn step(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        events: &mut Vec<Event>,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        let next = data.get(i + 1).copied();
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
            self.line_start = true;
            return Ok(Some(1));
        }
        match self.state.clone() {
            State::Copy { line_start, escape } => {
                self.copy_step(data, i, eof, events, line_start, escape)
            }
            State::Meta(_) => unreachable!("handled above"),
            State::LineComment => {
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'\n' || *c == b'\r')
                    .unwrap_or(data.len() - i);
                if run == 0 {
                    self.state = State::Initial;
                    return self.initial(data, i, eof, events);
                }
                self.emit(&data[i..i + run]);
                Ok(Some(run))
            }
            State::Block(depth) => {
                if b == b'/' || b == b'*' {
                    if need_next {
                        return Ok(None);
                    }
                    if b == b'/' && next == Some(b'*') {
                        self.state = State::Block(depth + 1);
                        self.emit(b"/*");
                        return Ok(Some(2));
                    }
                    if b == b'*' && next == Some(b'/') {
                        self.state = if depth == 0 {
                            State::Initial
                        } else {
                            State::Block(depth - 1)
                        };
                        self.emit(b"*/");
                        return Ok(Some(2));
                    }
                }
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'/' || *c == b'*')
                    .unwrap_or(data.len() - i)
                    .max(1);
                self.emit(&data[i..i + run]);
                Ok(Some(run))
            }
            State::Ident => {
                if b == b'"' {
                    if need_next {
                        return Ok(None);
                    }
                    if next == Some(b'"') {
                        self.emit(b"\"\"");
                        return Ok(Some(2));
                    }
                    self.state = State::Initial;
                    self.emit(b"\"");
                    return Ok(Some(1));
                }
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'"')
                    .unwrap_or(data.len() - i);
                self.emit(&data[i..i + run]);
                Ok(Some(run))
            }
            State::StrEscape => {
                self.state = State::Str(Str::Escaped);
                self.emit(&[b]);
                Ok(Some(1))
            }
            State::Str(kind) => self.str_step(data, i, eof, kind),
            State::AfterQuote { kind, newline } => {
                match b {
                    b' ' | b'\t' | b'\x0c' | b'\x0b' => {}
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
                            return self.initial(data, i, eof, events);
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
                            self.emit(&data[i..]);
                            self.state = State::Initial;
                            return Ok(Some(data.len() - i));
                        };
                        self.emit(&data[i..end]);
                        return Ok(Some(end - i));
                    }
                    b'\'' if newline => {
                        // The literal continues in the state it had before.
                        self.state = State::Str(kind);
                        self.emit(b"'");
                        return Ok(Some(1));
                    }
                    _ => {
                        self.state = State::Initial;
                        return self.initial(data, i, eof, events);
                    }
                }
                self.emit(&[b]);
                if b == b'\n' {
                    self.line_start = true;
                }
                Ok(Some(1))
            }
            State::Dollar(tag) => {
                if b != b'$' {
                    let run = data[i..]
                        .iter()
                        .position(|c| *c == b'$')
                        .unwrap_or(data.len() - i);
                    self.emit(&data[i..i + run]);
                    return Ok(Some(run));
                }
                if data.len() - i < tag.len() && !eof {
                    return Ok(None);
                }
                if data[i..].starts_with(&tag) {
                    self.emit(&tag);
                    self.state = State::Initial;
                    return Ok(Some(tag.len()));
                }
                self.emit(b"$");
                Ok(Some(1))
            }
            State::Initial => self.initial(data, i, eof, events),
        }
    }

    fn str_step(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
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
                        self.emit(b"''");
                        return Ok(Some(2));
                    }
                }
                self.state = State::AfterQuote {
                    kind,
                    newline: false,
                };
                self.emit(b"'");
                Ok(Some(1))
            }
            b'\\' if kind == Str::Escaped => {
                self.state = State::StrEscape;
                self.emit(b"\\");
                Ok(Some(1))
            }
            _ => {
                let run = data[i..]
                    .iter()
                    .position(|c| *c == b'\'' || (kind == Str::Escaped && *c == b'\\'))
                    .unwrap_or(data.len() - i)
                    .max(1);
                self.emit(&data[i..i + run]);
                Ok(Some(run))
            }
        }
    }

    fn copy_step(
        &mut self,
        data: &[u8],
        i: usize,
        eof: bool,
        events: &mut Vec<Event>,
        line_start: bool,
        escape: bool,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        if line_start && b == b'\\' {
            // `\.` alone on a line ends the data.
            let rest = &data[i..];
            for end in [&b"\\.\n"[..], b"\\.\r\n"] {
                if rest.starts_with(end) {
                    self.flush_copy(events);
                    events.push(Event::CopyEnd);
                    self.state = State::Initial;
                    self.line_start = true;
                    self.end_statement();
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
            self.copy_data.push(b);
            return Ok(Some(1));
        }
        if b == b'\n' || b == b'\\' {
            self.state = State::Copy {
                line_start: b == b'\n',
                escape: b == b'\\',
            };
            self.copy_data.push(b);
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
        self.copy_data.extend_from_slice(&data[i..i + run]);
        Ok(Some(run))
    }

    /// A token starts: counts it, and records depth-0 tokens for the classification.
    fn token(&mut self, tok: Tok) {
        if self.tokens == 0 {
            self.stmt_line_start = self.line_start;
            self.stmt_line = self.line;
            self.stmt.clear();
            self.toks.clear();
            self.last.clear();
        }
        if std::mem::take(&mut self.pending_begin) && matches!(&tok, Tok::Word(w) if w == "ATOMIC")
        {
            self.begin += 1;
        }
        self.tokens += 1;
        self.line_start = false;
        if self.paren == 0 {
            if self.last.len() == 3 {
                self.last.pop_front();
            }
            self.last.push_back(tok.clone());
        }
        // The first words classify any statement; a COPY needs all of its depth-0 tokens, a
        // globals statement the words up to its object's kind.
        let copy = matches!(self.toks.first(), Some(Tok::Word(w)) if w == "COPY");
        let limit = match (copy, self.globals) {
            (true, _) => 10_000,
            (false, true) => GLOBALS_TOKENS,
            (false, false) => 2,
        };
        if self.paren == 0 && self.toks.len() < limit {
            self.toks.push(tok);
        }
    }

    fn end_statement(&mut self) {
        self.tokens = 0;
        self.pending_begin = false;
        self.ident_count = 0;
        self.stmt.clear();
        self.toks.clear();
    }

    /// At a statement-ending `;` (already appended to the statement).
    fn statement_end(&mut self, events: &mut Vec<Event>) -> Result<(), Refused> {
        let word = |k: usize| match self.toks.get(k) {
            Some(Tok::Word(w)) => w.as_str(),
            _ => "",
        };
        let (first, second) = (word(0), word(1));
        if self.globals && !globals_statement(&self.toks) {
            return Err(self.refuse(&format!(
                "has `{} {} ...`, which pg_dumpall does not write in a globals script (only roles, tablespaces and their grants)",
                first.to_lowercase(),
                second.to_lowercase()
            )));
        }
        let sql = std::mem::take(&mut self.stmt);
        let line = self.stmt_line;
        match first {
            "BEGIN" | "COMMIT" if self.toks.len() == 1 => {
                // pg_dump's own, around large objects: the restore's one transaction stands in.
            }
            "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT"
            | "RELEASE" => {
                return Err(self.refuse(&format!(
                    "has the transaction control statement `{} ...`, which pg_dump does not write and which would end the restore's transaction",
                    first.to_lowercase()
                )))
            }
            "ALTER" if self.owner_change() => {
                // Ownership is not restored (as pg_restore --no-owner): the objects belong to
                // the restoring role, which need not be able to create the dump's roles.
            }
            "PREPARE" if second == "TRANSACTION" => {
                return Err(self.refuse(
                    "has PREPARE TRANSACTION, which would end the restore's transaction",
                ))
            }
            "SET" | "RESET"
                if second == "NAMES"
                    || String::from_utf8_lossy(&sql)
                        .to_ascii_uppercase()
                        .contains("CLIENT_ENCODING") =>
            {
                // Only pg_dump's own form, to UTF-8 (the connection's encoding), gets through.
                let text = String::from_utf8_lossy(&sql).to_ascii_lowercase();
                let words: Vec<&str> = text.split_whitespace().collect();
                let utf8 = matches!(
                    words.as_slice(),
                    ["set", "client_encoding", "=" | "to", v]
                        if ["'utf8';", "'utf-8';", "'unicode';", "utf8;"].contains(v)
                ) || words == ["reset", "client_encoding;"];
                if !utf8 {
                    return Err(self.refuse(&format!(
                        "sets the client encoding to something other than UTF-8 (`{}`): pg-s3-backup restores UTF-8 dumps, as its backups are; restore this one with your own tools from `restore --output -`",
                        crate::output::inert(String::from_utf8_lossy(&sql).trim(), false)
                    )));
                }
                events.push(Event::Statement { sql, line });
            }
            "COPY" => match copy_in(&self.toks) {
                true if self.stmt_line_start => {
                    // The data starts on the next line; the rest of this one must be empty.
                    self.after_copy_statement = true;
                    events.push(Event::CopyStart { sql, line });
                }
                _ => {
                    return Err(self.refuse(
                        "has a COPY other than pg_dump's `COPY name (columns) FROM stdin;` on a line of its own (to a program, a server file or stdout, say)",
                    ))
                }
            },
            _ => events.push(Event::Statement { sql, line }),
        }
        if !self.after_copy_statement {
            self.end_statement();
        } else {
            self.ident_count = 0;
        }
        Ok(())
    }

    /// `ALTER ... OWNER TO role`: the statement's last depth-0 tokens.
    fn owner_change(&self) -> bool {
        matches!(
            (self.last.front(), self.last.get(1), self.last.get(2)),
            (Some(Tok::Word(o)), Some(Tok::Word(t)), Some(Tok::Word(_) | Tok::Quoted))
                if o == "OWNER" && t == "TO"
        )
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
        events: &mut Vec<Event>,
    ) -> Result<Option<usize>, Refused> {
        let b = data[i];
        let next = data.get(i + 1).copied();
        let need_next = next.is_none() && !eof;
        if self.after_copy_statement {
            // After `COPY ... FROM stdin;` only the line end may follow; then the data.
            let end = match (b, next) {
                (b'\n', _) => 1,
                (b'\r', None) if !eof => return Ok(None),
                (b'\r', Some(b'\n')) => 2,
                _ => {
                    return Err(self.refuse(
                        "has text after `COPY ... FROM stdin;` on the same line, which pg_dump does not write",
                    ))
                }
            };
            self.after_copy_statement = false;
            self.state = State::Copy {
                line_start: true,
                escape: false,
            };
            return Ok(Some(end));
        }
        match b {
            // \v is whitespace to the server since PostgreSQL 16.
            b' ' | b'\t' | b'\x0c' | b'\x0b' | b'\r' => {
                self.emit(&[b]);
                Ok(Some(1))
            }
            b'\n' => {
                self.emit(b"\n");
                self.line_start = true;
                Ok(Some(1))
            }
            b'-' if need_next => Ok(None),
            b'-' if next == Some(b'-') => {
                self.state = State::LineComment;
                self.emit(b"--");
                Ok(Some(2))
            }
            b'/' if need_next => Ok(None),
            b'/' if next == Some(b'*') => {
                self.state = State::Block(0);
                self.emit(b"/*");
                Ok(Some(2))
            }
            b'\\' => {
                if self.line_start && self.tokens == 0 {
                    self.state = State::Meta(vec![b'\\']);
                    return Ok(Some(1));
                }
                if self.line_start {
                    return Err(self.refuse(&format!(
                        "starts with a backslash (a psql meta-command) inside a statement that began at line {} and never ended (a `;`, or the end of a quote, comment or function body, is missing)",
                        self.stmt_line
                    )));
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
                self.token(Tok::Other);
                self.state = State::Str(Str::Plain);
                self.emit(b"'");
                Ok(Some(1))
            }
            b'"' => {
                self.token(Tok::Quoted);
                self.state = State::Ident;
                self.emit(b"\"");
                Ok(Some(1))
            }
            b'$' => self.dollar(data, i, eof),
            b';' => {
                self.line_start = false;
                if self.tokens == 0 {
                    // An empty statement: nothing to send.
                    return Ok(Some(1));
                }
                self.emit(b";");
                if self.paren == 0 && self.begin == 0 {
                    self.statement_end(events)?;
                } else {
                    self.tokens += 1;
                }
                Ok(Some(1))
            }
            b'(' => {
                self.token(Tok::Group);
                self.paren += 1;
                self.emit(b"(");
                Ok(Some(1))
            }
            b')' => {
                self.token(Tok::Other);
                self.paren = self.paren.saturating_sub(1);
                self.emit(b")");
                Ok(Some(1))
            }
            b'.' => {
                if need_next {
                    return Ok(None);
                }
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    return self.number(data, i, eof);
                }
                self.token(Tok::Dot);
                self.emit(b".");
                Ok(Some(1))
            }
            b'0'..=b'9' => self.number(data, i, eof),
            c if is_ident_start(c) => self.word(data, i, eof),
            _ => {
                self.token(Tok::Other);
                self.emit(&[b]);
                Ok(Some(1))
            }
        }
    }

    /// A word, or a string prefix (`E'`, `B'`, `X'`, `N'`, `U&'`, `U&"`).
    fn word(&mut self, data: &[u8], i: usize, eof: bool) -> Result<Option<usize>, Refused> {
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
            // psql's {xnstart}: the N, then a plain literal.
            (b'n', Some(b'\''), _) => Some((2, State::Str(Str::Plain))),
            (b'u', Some(b'&'), Some(b'\'')) => Some((3, State::Str(Str::Unicode))),
            (b'u', Some(b'&'), Some(b'"')) => Some((3, State::Ident)),
            (b'u', Some(b'&'), _) => {
                // psql's {xufailed}: the letter alone, then `&`.
                self.token(Tok::Other);
                self.emit(&[b]);
                return Ok(Some(1));
            }
            _ => None,
        };
        if let Some((len, state)) = prefix {
            self.token(if state == State::Ident {
                Tok::Quoted
            } else {
                Tok::Other
            });
            self.state = state;
            self.emit(&rest[..len]);
            return Ok(Some(len));
        }
        let len = match rest.iter().position(|c| !is_ident_cont(*c)) {
            Some(n) => n,
            None if eof => rest.len(),
            None => return Ok(None),
        };
        let word = &rest[..len];
        // The token first: it is where a pending `BEGIN` meets its `ATOMIC`.
        self.token(Tok::Word(
            String::from_utf8_lossy(word).to_ascii_uppercase(),
        ));
        self.begin_heuristic(word);
        self.emit(word);
        Ok(Some(len))
    }

    /// psql's tracking of `CREATE [OR REPLACE] {FUNCTION|PROCEDURE} ... BEGIN ATOMIC ... END`,
    /// whose semicolons do not end the statement (psqlscan.l, the {identifier} rule). Splitting
    /// the way psql does keeps such functions whole; a split the server disagrees with only
    /// makes a statement fail.
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
                // Only `BEGIN ATOMIC` opens a body: `begin` is also an ordinary name.
                b"begin" => self.pending_begin = true,
                b"case" if self.begin >= 1 => self.begin += 1,
                b"end" if self.begin > 0 => self.begin -= 1,
                _ => {}
            }
        }
    }

    /// A number: digits, a fraction, an exponent, and any letters run into it (which server
    /// versions lex differently; a split the server disagrees with only fails a statement).
    fn number(&mut self, data: &[u8], i: usize, eof: bool) -> Result<Option<usize>, Refused> {
        let rest = &data[i..];
        // Every lookahead that reaches the end of the input waits for more.
        let more = |at: usize| at >= rest.len() && !eof;
        let digits = |from: usize| {
            rest[from..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        let mut n = digits(0);
        if more(n) {
            return Ok(None);
        }
        if rest.get(n) == Some(&b'.') {
            if more(n + 1) {
                return Ok(None);
            }
            if rest.get(n + 1) != Some(&b'.') {
                n += 1;
                n += digits(n);
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
            let d = digits(m);
            if more(m + d) {
                return Ok(None);
            }
            if d > 0 {
                n = m + d;
            }
        }
        let junk = rest[n..].iter().take_while(|c| is_ident_cont(**c)).count();
        if more(n + junk) {
            return Ok(None);
        }
        let n = (n + junk).max(1);
        self.token(Tok::Other);
        self.emit(&rest[..n]);
        Ok(Some(n))
    }

    /// `$`: a dollar quote `$tag$`, a parameter `$1`, or a lone `$`.
    fn dollar(&mut self, data: &[u8], i: usize, eof: bool) -> Result<Option<usize>, Refused> {
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
            self.token(Tok::Other);
            self.state = State::Dollar(tag.to_vec());
            self.emit(tag);
            return Ok(Some(tag.len()));
        }
        // A parameter or {dolqfailed}: the `$` alone; what follows is lexed afresh.
        self.token(Tok::Other);
        self.emit(b"$");
        Ok(Some(1))
    }
}

/// Is a COPY statement's depth-0 token list pg_dump's `COPY name [(cols)] FROM STDIN`?
fn copy_in(tokens: &[Tok]) -> bool {
    let word = |t: &Tok, w: &str| matches!(t, Tok::Word(x) if x == w);
    let n = tokens.len();
    if n < 4 || !word(&tokens[n - 2], "FROM") || !word(&tokens[n - 1], "STDIN") {
        return false;
    }
    let mut name = &tokens[1..n - 2];
    if let Some((Tok::Group, before)) = name.split_last() {
        name = before;
    }
    !name.is_empty()
        && name
            .iter()
            .all(|t| matches!(t, Tok::Word(_) | Tok::Quoted | Tok::Dot))
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn is_dolq_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_dolq_cont(c: u8) -> bool {
    is_dolq_start(c) || c.is_ascii_digit()
}

/// The depth-0 tokens of a globals statement looked at: enough for pg_dumpall's `GRANT priv,
/// ... ON kind`; a statement with more before its `ON` is not pg_dumpall's.
const GLOBALS_TOKENS: usize = 64;

/// What `pg_dumpall --globals-only` writes, by a statement's depth-0 tokens: its `SET`s, and
/// roles, tablespaces and their comments and labels; role memberships, and grants on
/// tablespaces and parameters. Not a grant, comment or label on anything in the database the
/// restore connects to (a schema, a table, the database itself).
fn globals_statement(toks: &[Tok]) -> bool {
    let word = |k: usize| match toks.get(k) {
        Some(Tok::Word(w)) => w.as_str(),
        _ => "",
    };
    // The word after the first depth-0 `ON` (a role named `on` is always quoted).
    let on_kind = || {
        let on = toks
            .iter()
            .position(|t| matches!(t, Tok::Word(w) if w == "ON"));
        on.map(|k| word(k + 1))
    };
    let shared = |kind: &str| matches!(kind, "ROLE" | "TABLESPACE");
    match word(0) {
        "SET" => matches!(
            word(1),
            "DEFAULT_TRANSACTION_READ_ONLY" | "CLIENT_ENCODING" | "STANDARD_CONFORMING_STRINGS"
        ),
        "CREATE" | "ALTER" => shared(word(1)),
        "COMMENT" => word(1) == "ON" && shared(word(2)),
        "SECURITY" => word(1) == "LABEL" && on_kind().is_some_and(shared),
        "GRANT" | "REVOKE" => match on_kind() {
            Some(kind) => matches!(kind, "TABLESPACE" | "PARAMETER"),
            // A membership; unless the `ON` is past what was looked at.
            None => toks.len() < GLOBALS_TOKENS,
        },
        _ => false,
    }
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

    fn run_chunked(input: &[u8], chunk: usize) -> Result<Vec<Event>, Refused> {
        let mut s = Script::new();
        let mut events = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            s.push(c, &mut events)?;
        }
        s.finish(&mut events)?;
        Ok(merge(events))
    }

    /// Adjacent COPY data merged, so that chunking does not change the comparison.
    fn merge(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(Event::CopyData(a)), Event::CopyData(b)) => a.extend(b),
                (_, e) => out.push(e),
            }
        }
        out
    }

    fn split(body: &str) -> Result<Vec<Event>, Refused> {
        let text = dump(body);
        let whole = run_chunked(text.as_bytes(), usize::MAX);
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(
                run_chunked(text.as_bytes(), chunk),
                whole,
                "chunk {chunk}: {body:?}"
            );
        }
        whole
    }

    /// The statements of `body` as text (the dump's own SET first), COPY as `<copy ...>`.
    fn statements(body: &str) -> Vec<String> {
        split(body)
            .unwrap_or_else(|e| panic!("{body:?}: {e}"))
            .into_iter()
            .skip(1)
            .map(|e| match e {
                Event::Statement { sql, .. } => String::from_utf8(sql).unwrap(),
                Event::CopyStart { sql, .. } => {
                    format!("<copy {}>", String::from_utf8(sql).unwrap())
                }
                Event::CopyData(d) => format!("<data {}>", String::from_utf8(d).unwrap()),
                Event::CopyEnd => "<end>".into(),
            })
            .collect()
    }

    /// pg_dumpall's header and trailer around `body`, as pg_dumpall 15.14+ writes them.
    fn globals(body: &str) -> String {
        format!(
            "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict k3y\n\nSET default_transaction_read_only = off;\n\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n{body}\n\\unrestrict k3y\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"
        )
    }

    fn read_globals(text: &str) -> Result<Vec<Event>, Refused> {
        let mut s = Script::globals();
        let mut events = Vec::new();
        s.push(text.as_bytes(), &mut events)?;
        s.finish(&mut events)?;
        Ok(events)
    }

    #[test]
    fn a_globals_script_holds_only_roles_tablespaces_and_grants() {
        let body = "CREATE ROLE app;\nALTER ROLE app WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';\nCOMMENT ON ROLE app IS 'a;b';\nCREATE TABLESPACE fast OWNER app LOCATION '/srv/fast';\nGRANT ALL ON TABLESPACE fast TO app;\nGRANT pg_read_all_data TO app WITH INHERIT TRUE GRANTED BY postgres;\nALTER ROLE app SET search_path TO 'a', 'b';\nREVOKE ALL ON TABLESPACE fast FROM PUBLIC;\nGRANT SET ON PARAMETER work_mem TO app;\nSECURITY LABEL FOR dummy ON ROLE app IS 'x';\nCOMMENT ON TABLESPACE fast IS 'on';\nGRANT \"on\" TO app;\n";
        let events = read_globals(&globals(body)).unwrap();
        assert_eq!(events.len(), 15, "{events:?}");
        // A database's dump is not a globals script, and the globals are not a database's dump.
        assert!(read_globals(&dump("CREATE ROLE app;")).is_err());
        let mut s = Script::new();
        let mut ev = Vec::new();
        s.push(globals(body).as_bytes(), &mut ev).unwrap();
        assert!(s.finish(&mut ev).unwrap_err().why.contains("not complete"));
        for hostile in [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1';",
            "ALTER SYSTEM SET archive_command = 'rm -rf /';",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "SELECT lo_export(1, '/tmp/x');",
            "DROP ROLE app;",
            "SET ROLE app;",
            "SET session_preload_libraries = 'evil';",
            "CREATE TABLE t (a int);",
            "COPY t FROM stdin;",
            "\\connect app",
            "\\! id",
            "GRANT ALL ON SCHEMA public TO PUBLIC;",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO app;",
            "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO app;",
            "COMMENT ON TABLE t IS 'x';",
            "SECURITY LABEL FOR selinux ON TABLE t IS 'x';",
        ] {
            let got = read_globals(&globals(hostile)).unwrap_err();
            assert!(got.line > 1, "{hostile}: {got}");
        }
        let cut = globals(body);
        assert!(read_globals(&cut[..cut.len() - 30]).is_err());
    }

    #[test]
    fn a_dump_splits_into_statements_without_comments_or_restrict_lines() {
        let events =
            split("CREATE TABLE t (a int);\n-- c\n/* d */ SELECT 'x;y', $$a;b$$, \"c;d\";")
                .unwrap();
        assert_eq!(
            events[0],
            Event::Statement {
                sql: b"SET standard_conforming_strings = on;".to_vec(),
                line: 7
            }
        );
        assert_eq!(
            statements("CREATE TABLE t (a int);\n-- c\n/* d */ SELECT 'x;y', $$a;b$$, \"c;d\";"),
            vec!["CREATE TABLE t (a int);", "SELECT 'x;y', $$a;b$$, \"c;d\";"]
        );
        let lines: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Statement { line, .. } => Some(*line),
                _ => None,
            })
            .collect();
        assert_eq!(lines, vec![7, 8, 10]);
    }

    #[test]
    fn every_meta_command_is_refused() {
        for body in [
            "\\! touch /tmp/x",
            "\\o |cat > /tmp/x",
            "\\copy t from program 'touch /tmp/x'",
            "\\setenv PAGER 'touch /tmp/x'",
            "\\i /etc/passwd",
            "\\set ON_ERROR_STOP off",
            "\\w /tmp/x",
            "\\lo_import /etc/passwd",
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
            "/* c */ \\! touch /tmp/x",
        ] {
            let err = split(body).unwrap_err();
            assert!(
                err.why.contains("meta-command") || err.why.contains("--create"),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn backslashes_inside_quotes_comments_and_copy_data_are_data() {
        assert_eq!(
            statements("SELECT E'\\\\! x', $$ \\! y $$, 'C:\\', U&'\\0041', B'101';\n-- \\! z"),
            vec!["SELECT E'\\\\! x', $$ \\! y $$, 'C:\\', U&'\\0041', B'101';"]
        );
        assert_eq!(
            statements("COPY public.t (a, b) FROM stdin;\n1\t\\N\n2\tx\\\\y\\tz\n\\.\nSELECT 1;"),
            vec![
                "<copy COPY public.t (a, b) FROM stdin;>",
                "<data 1\t\\N\n2\tx\\\\y\\tz\n>",
                "<end>",
                "SELECT 1;"
            ]
        );
    }

    #[test]
    fn quote_continuation_and_nested_comments_are_read_as_psql_reads_them() {
        assert_eq!(
            statements("SELECT 'a'\n'b;c' -- x\n, /* /* ; */ ; */ 1;"),
            vec!["SELECT 'a'\n'b;c' -- x\n, /* /* ; */ ; */ 1;"]
        );
        assert_eq!(
            statements("SELECT 'a' 'b'; SELECT 2;"),
            vec!["SELECT 'a' 'b';", "SELECT 2;"]
        );
    }

    #[test]
    fn transactions_belong_to_the_restore() {
        assert_eq!(
            statements("BEGIN;\nSELECT pg_catalog.lo_create('16385');\nCOMMIT;"),
            vec!["SELECT pg_catalog.lo_create('16385');"]
        );
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
            "/* hidden */ COMMIT AND CHAIN;",
            "\u{b}ROLLBACK;",
        ] {
            let err = split(body).unwrap_err();
            assert!(err.why.contains("transaction"), "{body:?}: {err}");
        }
        assert_eq!(
            statements("PREPARE p AS SELECT 1;"),
            vec!["PREPARE p AS SELECT 1;"]
        );
        // `begin` as a name does not open a body; a hidden COMMIT after it is its own statement.
        assert_eq!(
            statements("CREATE FUNCTION first_begin() RETURNS timestamptz LANGUAGE sql BEGIN ATOMIC SELECT begin FROM events; END;\nSELECT 2;"),
            vec![
                "CREATE FUNCTION first_begin() RETURNS timestamptz LANGUAGE sql BEGIN ATOMIC SELECT begin FROM events; END;",
                "SELECT 2;"
            ]
        );
        assert_eq!(
            statements("CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS $$SELECT 1$$; COMMIT; SELECT 1 AS end;"),
            vec![
                "CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS $$SELECT 1$$;",
                "SELECT 1 AS end;"
            ]
        );
        // A SQL-standard function body stays one statement, END and CASE included.
        assert_eq!(
            statements("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END;\nSELECT 2;"),
            vec![
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END;",
                "SELECT 2;"
            ]
        );
    }

    #[test]
    fn only_pg_dumps_own_copy_from_stdin_is_accepted() {
        assert_eq!(
            statements("COPY public.\"T\" (\"a b\", c) FROM stdin;\n1\tx\n\\.\n"),
            vec![
                "<copy COPY public.\"T\" (\"a b\", c) FROM stdin;>",
                "<data 1\tx\n>",
                "<end>"
            ]
        );
        for (body, why) in [
            ("COPY t FROM stdin WITH (FORMAT csv);\n1\n\\.\n", "COPY"),
            ("SELECT 1; COPY t FROM stdin;\n1\n\\.\n", "COPY"),
            ("COPY t FROM stdin; SELECT 1;\n1\n\\.\n", "after `COPY"),
            ("COPY (SELECT 1) TO PROGRAM 'touch /tmp/x';", "program"),
            ("COPY t TO stdout;", "COPY"),
            ("COPY t FROM '/etc/passwd';", "COPY"),
            ("COPY t FROM stdin;\n\\! touch /tmp/x\n\\.\n", "escape"),
            ("COPY t FROM stdin;\nx\\.y\n\\.\n", "escape"),
            ("COPY t FROM stdin;\n1\n", "COPY data"),
        ] {
            let err = split(body).unwrap_err();
            assert!(err.why.contains(why), "{body:?}: {err}");
        }
    }

    #[test]
    fn nul_bytes_and_other_encodings_are_refused() {
        assert!(split("SELECT 1 \0 ;").unwrap_err().why.contains("NUL"));
        for bad in [
            "SET client_encoding = 'SJIS';",
            "SET client_encoding = 'LATIN1' /* 'utf8' */;",
            "SET NAMES 'LATIN1';",
            "SET SESSION client_encoding TO 'BIG5';",
        ] {
            let err = split(bad).unwrap_err();
            assert!(err.why.contains("UTF-8"), "{bad}: {err}");
        }
        assert_eq!(
            statements("SET client_encoding = 'UTF8';"),
            vec!["SET client_encoding = 'UTF8';"]
        );
        // Non-ASCII next to backslashes is ordinary UTF-8 text.
        assert_eq!(
            statements("SELECT 'ö\\', E'é\\\\';"),
            vec!["SELECT 'ö\\', E'é\\\\';"]
        );
    }

    #[test]
    fn ownership_is_not_restored() {
        assert_eq!(
            statements("CREATE TABLE t (a int);\nALTER TABLE public.t OWNER TO pgs3;\nALTER LARGE OBJECT 16385 OWNER TO \"Bob\";\nALTER TABLE t ADD COLUMN owner int;"),
            vec!["CREATE TABLE t (a int);", "ALTER TABLE t ADD COLUMN owner int;"]
        );
    }

    #[test]
    fn a_dump_must_end_as_pg_dump_ends_it() {
        let full = dump("SELECT 1;");
        for cut in [full.len() - 5, full.len() - 30, full.len() / 2, 10] {
            assert!(
                run_chunked(&full.as_bytes()[..cut], 8).is_err(),
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
            assert!(split(body).is_err(), "{body:?}");
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
            /// Any bytes: no panic, and the same verdict whatever the chunking.
            #[test]
            fn any_input_any_chunking(body in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..40) {
                let text = [dump("").as_bytes(), &body].concat();
                prop_assert_eq!(run_chunked(&text, chunk), run_chunked(&text, usize::MAX));
            }

            /// SQL-like input: the same statements and verdict whatever the chunking.
            #[test]
            fn sqlish_input_any_chunking(body in sqlish(), chunk in 1usize..16) {
                let text = dump(&body);
                prop_assert_eq!(run_chunked(text.as_bytes(), chunk), run_chunked(text.as_bytes(), usize::MAX));
            }

            /// No statement handed on starts with transaction control, whatever precedes it.
            #[test]
            fn no_statement_ends_the_transaction(body in sqlish()) {
                if let Ok(events) = run_chunked(dump(&body).as_bytes(), usize::MAX) {
                    for e in events {
                        if let Event::Statement { sql, .. } = e {
                            let text = String::from_utf8_lossy(&sql).to_ascii_uppercase();
                            // The statement starts at its first token; only an unquoted word
                            // can be a keyword, and a word goes on through `$` (`BEGIN$$COPY`
                            // is one identifier to the server, as to the splitter).
                            let first: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$').collect();
                            let first = first.as_str();
                            prop_assert!(!["BEGIN", "COMMIT", "END", "ROLLBACK", "ABORT"].contains(&first), "{}", text);
                        }
                    }
                }
            }
        }
    }
}
