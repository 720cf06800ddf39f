//! From a config file's text to its sections: `version = 1`, `[defaults]`,
//! `[users.NAME]` and `[groups.NAME]`, each with its `key = value` entries and the byte
//! offset of everything, for `file:line:col` messages. No key is judged here (see
//! `keys`), no file is opened (see `files`).
//!
//! Two readers. [`scan`] reads a file written the way rshell.toml(5) shows it in one pass
//! over its bytes, handing each section and entry to a [`Sink`] without building any tree;
//! it declines anything else. [`read_any`] reads any TOML through toml's own parser, and
//! gives toml's verdict and message whenever the scanner declines.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use toml_parser::decoder::{Encoding, ScalarKind};
use toml_parser::{ErrorSink, ParseError, Raw, Span};

use crate::policy::ConfigError;

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// One file being read: where messages point.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Ctx<'_> {
    /// The error at `offset` of this file.
    pub fn err(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, col) = line_col(self.text, offset);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    pub fn version(&self, v: &Item) -> Result<(), ConfigError> {
        match v.val {
            Val::Int(Some(1)) => Ok(()),
            Val::Int(Some(n)) => Err(self.err(
                v.at,
                format!("unsupported version {n} (this rshell reads version 1)"),
            )),
            _ => Err(self.err(
                v.at,
                format!("`version` must be the integer 1, got {}", v.val.kind()),
            )),
        }
    }
}

/// A section's name as messages show it (`[defaults]`, `[users.alice]`), formatted only
/// when a message needs it.
#[derive(Clone, Copy)]
pub(crate) struct Shown<'a>(pub &'a str, pub Option<&'a str>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            None => write!(f, "[{}]", self.0),
            Some(name) => write!(f, "[{}.{name}]", self.0),
        }
    }
}

/// The key being read, for its checker's messages.
#[derive(Clone, Copy)]
pub(crate) struct Field<'a> {
    pub ctx: &'a Ctx<'a>,
    pub section: Shown<'a>,
    pub key: &'static str,
}

impl Field<'_> {
    pub fn err(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        self.ctx.err(offset, message)
    }
}

/// A value as the checkers see it, whichever reader produced it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'i> {
    Str(Cow<'i, str>),
    /// `None`: out of the range of i64.
    Int(Option<i64>),
    Bool(bool),
    Array(Vec<Item<'i>>),
    /// A float, date-time or table: never a valid value of any key.
    Other(&'static str),
}

impl Val<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Bool(_) => "a boolean",
            Val::Array(_) => "an array",
            Val::Other(kind) => kind,
        }
    }
}

/// A value and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item<'i> {
    pub at: usize,
    pub val: Val<'i>,
}

/// `key = value` in a section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry<'i> {
    pub key: Cow<'i, str>,
    pub key_at: usize,
    pub value: Item<'i>,
}

/// `[defaults]`, `[users.NAME]` or `[groups.NAME]` with its entries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Section<'i> {
    pub name: Cow<'i, str>,
    /// Offset of the name in the header (of `defaults` for `[defaults]`).
    pub at: usize,
    pub entries: Vec<Entry<'i>>,
}

/// One file's sections, read but not yet checked (`version = 1` is checked).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sections<'i> {
    pub defaults: Option<Section<'i>>,
    pub users: Vec<Section<'i>>,
    pub groups: Vec<Section<'i>>,
}

/// The three kinds of section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Defaults,
    Users,
    Groups,
}

impl Kind {
    /// The first word of the header.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Defaults => "defaults",
            Kind::Users => "users",
            Kind::Groups => "groups",
        }
    }
}

// ---- reader 1: the canonical shape, in one pass ----------------------------------------

/// The scanner, or a sink, gave up on this file: [`read_any`] judges it instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Declined;

/// Where [`scan`] hands what it reads, in file order.
pub(crate) trait Sink<'i> {
    /// A section header; its entries follow.
    fn section(&mut self, kind: Kind, name: Cow<'i, str>, at: usize) -> Result<(), Declined>;
    /// `key = value` of the last section.
    fn entry(&mut self, key: Cow<'i, str>, key_at: usize, value: Item<'i>) -> Result<(), Declined>;
}

/// Reads a file written the way rshell.toml(5) shows it — `version = 1`, then
/// `[defaults]`, `[users.NAME]` and `[groups.NAME]` headers, each followed by
/// `key = value` lines whose values are strings, integers, booleans or arrays of those,
/// with comments and blank lines anywhere — byte by byte, handing every section and entry
/// to `sink` as it goes. Strings without escapes are borrowed from the text; anything with
/// an escape, a prefix or an underscore is decoded by toml's own decoder (`toml_parser`,
/// the front end of `toml`), token boundaries are toml's lexer's.
///
/// It declines anything else: any syntax or decoding error, a dotted key, an inline table,
/// an array of tables, a nested array, a header other than those three shapes, a
/// top-level key other than `version` (or `version` twice), a missing or unsupported
/// `version`. [`read_any`] then reads the file and gives toml's verdict and message. So
/// what this reader accepts, toml accepts too, with the same meaning (the table rules it
/// would otherwise need — redefinition, implicit tables — never arise in the shapes it
/// accepts) — except that a key set twice in a section and a section defined twice are
/// left to the sink to refuse.
pub(crate) fn scan<'i, S: Sink<'i>>(text: &'i str, sink: &mut S) -> Result<(), Declined> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        // toml's lexer skips a byte order mark.
        pos: if text.starts_with('\u{feff}') { 3 } else { 0 },
    };
    let mut version = None;
    let mut tables = false;
    loop {
        s.skip_blanks();
        match s.peek() {
            None => break,
            Some(b'#' | b'\n' | b'\r') => {}
            Some(b'[') => {
                if !tables {
                    version_one(version.take())?;
                    tables = true;
                }
                let (kind, name, at) = s.header()?;
                sink.section(kind, name, at)?;
            }
            Some(_) => {
                let (key, key_at) = s.key()?;
                s.skip_blanks();
                s.eat(b'=')?;
                s.skip_blanks();
                let value = s.value(false)?;
                if tables {
                    sink.entry(key, key_at, value)?;
                } else if key == "version" && version.is_none() {
                    version = Some(value);
                } else {
                    return Err(Declined);
                }
            }
        }
        s.line_end()?;
    }
    if !tables {
        version_one(version)?;
    }
    Ok(())
}

fn version_one(version: Option<Item>) -> Result<(), Declined> {
    match version {
        Some(Item {
            val: Val::Int(Some(1)),
            ..
        }) => Ok(()),
        _ => Err(Declined),
    }
}

/// Records that toml's decoder reported an error, and nothing else.
struct Failed(bool);

impl ErrorSink for Failed {
    fn report_error(&mut self, _: ParseError) {
        self.0 = true;
    }
}

struct Scanner<'i> {
    text: &'i str,
    bytes: &'i [u8],
    pos: usize,
}

/// A byte that is never part of a comment or a string without escapes: a control
/// character other than tab (toml's `non-eol`, `basic-unescaped`, `literal-char`).
fn control(b: u8) -> bool {
    class(b, CONTROL)
}

/// Byte classes of the scanner's loops, one table lookup per byte.
const CONTROL: u8 = 1;
/// A bare key's bytes: `A-Z a-z 0-9 _ -`.
const BARE: u8 = 2;
/// The bytes that end an unquoted value (toml's lexer's token starts, less `.`).
const ATOM_END: u8 = 4;
/// The bytes that end the plain part of a `"..."` string: `"`, `\`, a control character.
const BASIC_STOP: u8 = 8;
/// The bytes that end a `'...'` string or stop it: `'`, a control character.
const LITERAL_STOP: u8 = 16;

static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            c |= CONTROL | BASIC_STOP | LITERAL_STOP;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            c |= BARE;
        }
        if matches!(
            b,
            b'=' | b',' | b'[' | b']' | b'{' | b'}' | b' ' | b'\t' | b'#' | b'\r' | b'\n'
        ) {
            c |= ATOM_END;
        }
        if b == b'"' || b == b'\\' {
            c |= BASIC_STOP;
        }
        if b == b'\'' {
            c |= LITERAL_STOP;
        }
        table[i] = c;
        i += 1;
    }
    table
}

fn class(b: u8, class: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

impl<'i> Scanner<'i> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn starts_with(&self, s: &[u8]) -> bool {
        self.bytes[self.pos..].starts_with(s)
    }

    fn eat(&mut self, b: u8) -> Result<(), Declined> {
        if self.peek() != Some(b) {
            return Err(Declined);
        }
        self.pos += 1;
        Ok(())
    }

    /// Spaces and tabs.
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The offset of the first byte from here on that `stop` picks, or the end.
    fn find(&self, stop: impl Fn(u8) -> bool) -> usize {
        let rest = &self.bytes[self.pos..];
        self.pos + rest.iter().position(|&b| stop(b)).unwrap_or(rest.len())
    }

    /// `#` to the end of the line.
    fn comment(&mut self) -> Result<(), Declined> {
        self.pos += 1;
        self.pos = self.find(control);
        match self.peek() {
            None | Some(b'\n' | b'\r') => Ok(()),
            Some(_) => Err(Declined),
        }
    }

    /// A newline (LF or CRLF), if one is here.
    fn newline(&mut self) -> bool {
        match self.peek() {
            Some(b'\n') => self.pos += 1,
            Some(b'\r') if self.bytes.get(self.pos + 1) == Some(&b'\n') => self.pos += 2,
            _ => return false,
        }
        true
    }

    /// What may follow a header or an entry: blanks, a comment, then a newline or the end.
    fn line_end(&mut self) -> Result<(), Declined> {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.comment()?;
        }
        if self.peek().is_none() || self.newline() {
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// Blanks, comments and newlines between the elements of an array.
    fn array_space(&mut self) -> Result<(), Declined> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'#') => self.comment()?,
                _ if self.newline() => {}
                _ => return Ok(()),
            }
        }
    }

    /// Past a one-line `"..."` (from its opening quote, by toml's lexer's rule: a
    /// backslash takes the `\` or `"` after it along). Whether it had no escape.
    fn basic_string(&mut self) -> Result<bool, Declined> {
        self.pos += 1;
        // Most strings have no escape: straight to the closing quote.
        self.pos = self.find(|b| class(b, BASIC_STOP));
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(true);
        }
        let mut plain = true;
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(Declined),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(plain);
                }
                Some(b'\\') => {
                    plain = false;
                    self.pos += 1;
                    if matches!(self.peek(), Some(b'\\' | b'"')) {
                        self.pos += 1;
                    }
                }
                Some(b) if control(b) => return Err(Declined),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Past a one-line `'...'`.
    fn literal_string(&mut self) -> Result<(), Declined> {
        self.pos += 1;
        self.pos = self.find(|b| class(b, LITERAL_STOP));
        self.eat(b'\'')
    }

    /// Past a `"""..."""` or `'''...'''` (toml's lexer's rule: the first closing
    /// delimiter, then up to two more quotes belong to the content).
    fn multi_line_string(&mut self, quote: u8) -> Result<(), Declined> {
        self.pos += 3;
        loop {
            match self.peek() {
                None => return Err(Declined),
                Some(b'\\') if quote == b'"' => {
                    self.pos += 1;
                    if matches!(self.peek(), Some(b'\\' | b'"')) {
                        self.pos += 1;
                    }
                }
                Some(b) if b == quote && self.starts_with(&[quote; 3]) => {
                    self.pos += 3;
                    for _ in 0..2 {
                        if self.peek() == Some(quote) {
                            self.pos += 1;
                        }
                    }
                    return Ok(());
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// The raw token from `start` to here, as toml's decoder sees it.
    fn raw(&self, start: usize, encoding: Option<Encoding>) -> Raw<'i> {
        Raw::new_unchecked(
            &self.text[start..self.pos],
            encoding,
            Span::new_unchecked(start, self.pos),
        )
    }

    /// A key (bare, `"..."` or `'...'`) and its offset.
    fn key(&mut self) -> Result<(Cow<'i, str>, usize), Declined> {
        let start = self.pos;
        let encoding = match self.peek() {
            Some(b'"') if !self.starts_with(b"\"\"\"") => {
                if self.basic_string()? {
                    return Ok((Cow::Borrowed(&self.text[start + 1..self.pos - 1]), start));
                }
                Encoding::BasicString
            }
            Some(b'\'') if !self.starts_with(b"'''") => {
                self.literal_string()?;
                return Ok((Cow::Borrowed(&self.text[start + 1..self.pos - 1]), start));
            }
            Some(b'"' | b'\'') => return Err(Declined),
            _ => {
                self.pos = self.find(|b| !class(b, BARE));
                if self.pos == start {
                    return Err(Declined);
                }
                return Ok((Cow::Borrowed(&self.text[start..self.pos]), start));
            }
        };
        let mut out = Cow::Borrowed("");
        let mut failed = Failed(false);
        self.raw(start, Some(encoding))
            .decode_key(&mut out, &mut failed);
        if failed.0 {
            return Err(Declined);
        }
        Ok((out, start))
    }

    /// `[defaults]`, `[users.NAME]` or `[groups.NAME]`: the kind, the name and its offset.
    fn header(&mut self) -> Result<(Kind, Cow<'i, str>, usize), Declined> {
        self.pos += 1;
        self.skip_blanks();
        let (first, first_at) = self.key()?;
        self.skip_blanks();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return match first == "defaults" {
                true => Ok((Kind::Defaults, first, first_at)),
                false => Err(Declined),
            };
        }
        self.eat(b'.')?;
        self.skip_blanks();
        let (name, at) = self.key()?;
        self.skip_blanks();
        self.eat(b']')?;
        match &*first {
            "users" => Ok((Kind::Users, name, at)),
            "groups" => Ok((Kind::Groups, name, at)),
            _ => Err(Declined),
        }
    }

    /// A value: a string, an integer, a boolean, or (outside an array) an array of those.
    fn value(&mut self, in_array: bool) -> Result<Item<'i>, Declined> {
        let at = self.pos;
        let encoding = match self.peek() {
            Some(b'"') if self.starts_with(b"\"\"\"") => {
                self.multi_line_string(b'"')?;
                Encoding::MlBasicString
            }
            Some(b'\'') if self.starts_with(b"'''") => {
                self.multi_line_string(b'\'')?;
                Encoding::MlLiteralString
            }
            Some(b'"') => {
                if self.basic_string()? {
                    let s = Cow::Borrowed(&self.text[at + 1..self.pos - 1]);
                    return Ok(Item {
                        at,
                        val: Val::Str(s),
                    });
                }
                Encoding::BasicString
            }
            Some(b'\'') => {
                self.literal_string()?;
                let s = Cow::Borrowed(&self.text[at + 1..self.pos - 1]);
                return Ok(Item {
                    at,
                    val: Val::Str(s),
                });
            }
            Some(b'[') if !in_array => return self.array(),
            Some(b'[' | b'{') => return Err(Declined),
            _ => {
                let val = self.unquoted()?;
                return Ok(Item { at, val });
            }
        };
        let (_, s) = self.decode(at, Some(encoding))?;
        Ok(Item {
            at,
            val: Val::Str(s),
        })
    }

    /// Decode the token from `start` to here with toml's decoder.
    fn decode(
        &self,
        start: usize,
        encoding: Option<Encoding>,
    ) -> Result<(ScalarKind, Cow<'i, str>), Declined> {
        let mut out = Cow::Borrowed("");
        let mut failed = Failed(false);
        let kind = self
            .raw(start, encoding)
            .decode_scalar(&mut out, &mut failed);
        if failed.0 {
            return Err(Declined);
        }
        Ok((kind, out))
    }

    /// A boolean or an integer: everything up to the next delimiter (the atoms and dots
    /// toml's parser joins into one scalar).
    fn unquoted(&mut self) -> Result<Val<'i>, Declined> {
        let start = self.pos;
        self.pos = self.find(|b| class(b, ATOM_END));
        let raw = &self.bytes[start..self.pos];
        match raw {
            [] => return Err(Declined),
            b"true" => return Ok(Val::Bool(true)),
            b"false" => return Ok(Val::Bool(false)),
            // A plain decimal number (no sign, no leading zero, no underscore) that fits.
            [b'0'] | [b'1'..=b'9', ..] if raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit) => {
                let n = raw.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
                return Ok(Val::Int(Some(n)));
            }
            _ => {}
        }
        Ok(match self.decode(start, None)? {
            (ScalarKind::Boolean(b), _) => Val::Bool(b),
            (ScalarKind::Integer(radix), digits) => {
                Val::Int(i64::from_str_radix(&digits, radix.value()).ok())
            }
            // Never a valid value, and the decoder only classifies a date-time without
            // checking it: toml judges these.
            (ScalarKind::Float | ScalarKind::DateTime | ScalarKind::String, _) => {
                return Err(Declined)
            }
        })
    }

    /// `[` value, ... `]`, with blanks, comments and newlines between, a trailing comma
    /// allowed.
    fn array(&mut self) -> Result<Item<'i>, Declined> {
        let at = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.array_space()?;
            if self.peek() == Some(b']') {
                break;
            }
            items.push(self.value(true)?);
            self.array_space()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => break,
                _ => return Err(Declined),
            }
        }
        self.pos += 1;
        Ok(Item {
            at,
            val: Val::Array(items),
        })
    }
}

/// Collects what [`scan`] reads into [`Sections`], declining a key set twice in a section
/// and `[defaults]` twice in the file (toml's message names them); a `[users.NAME]` or
/// `[groups.NAME]` defined twice is left to the merge, which names both places.
#[derive(Default)]
struct Collect<'i> {
    sections: Sections<'i>,
    last: Option<Kind>,
}

impl<'i> Sink<'i> for Collect<'i> {
    fn section(&mut self, kind: Kind, name: Cow<'i, str>, at: usize) -> Result<(), Declined> {
        let section = Section {
            name,
            at,
            entries: Vec::new(),
        };
        match kind {
            Kind::Defaults if self.sections.defaults.is_some() => return Err(Declined),
            Kind::Defaults => self.sections.defaults = Some(section),
            Kind::Users => self.sections.users.push(section),
            Kind::Groups => self.sections.groups.push(section),
        }
        self.last = Some(kind);
        Ok(())
    }

    fn entry(&mut self, key: Cow<'i, str>, key_at: usize, value: Item<'i>) -> Result<(), Declined> {
        let s = &mut self.sections;
        let section = match self.last {
            Some(Kind::Defaults) => s.defaults.as_mut(),
            Some(Kind::Users) => s.users.last_mut(),
            Some(Kind::Groups) => s.groups.last_mut(),
            None => None,
        }
        .ok_or(Declined)?;
        if section.entries.iter().any(|e| e.key == key) {
            return Err(Declined);
        }
        section.entries.push(Entry { key, key_at, value });
        Ok(())
    }
}

/// The sections of a file in the canonical shape (see [`scan`]), or `None`.
pub(crate) fn read_canonical(text: &str) -> Option<Sections<'_>> {
    let mut collect = Collect::default();
    scan(text, &mut collect).ok()?;
    Some(collect.sections)
}

// ---- reader 2: any TOML, through toml's spanned table -------------------------------

fn from_de<'i>(value: Spanned<DeValue<'i>>) -> Item<'i> {
    let at = value.span().start;
    let val = match value.into_inner() {
        DeValue::String(s) => Val::Str(s),
        DeValue::Integer(i) => Val::Int(i64::from_str_radix(i.as_str(), i.radix()).ok()),
        DeValue::Boolean(b) => Val::Bool(b),
        DeValue::Array(a) => Val::Array(a.into_iter().map(from_de).collect()),
        DeValue::Float(_) => Val::Other("a float"),
        DeValue::Datetime(_) => Val::Other("a date-time"),
        DeValue::Table(_) => Val::Other("a table"),
    };
    Item { at, val }
}

/// Read any valid TOML file (toml's own parser and table rules: duplicate keys, tables
/// defined twice, dotted keys, inline tables); the errors and their positions are
/// toml's. Used whenever [`scan`] declines a file.
pub(crate) fn read_any<'i>(ctx: &Ctx<'i>) -> Result<Sections<'i>, ConfigError> {
    let doc = DeTable::parse(ctx.text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim();
        ctx.err(
            offset,
            if message.is_empty() {
                "invalid TOML"
            } else {
                message
            },
        )
    })?;
    let mut doc = doc.into_inner();
    match doc.remove_entry("version") {
        None => return Err(ctx.err(0, "`version = 1` is missing")),
        Some((_, v)) => ctx.version(&from_de(v))?,
    }
    let table = |value: Spanned<DeValue<'i>>, what: &str| {
        let at = value.span().start;
        match value.into_inner() {
            DeValue::Table(t) => Ok(t),
            other => {
                let kind = from_de(Spanned::new(0..0, other)).val.kind();
                Err(ctx.err(at, format!("{what} must be a table, got {kind}")))
            }
        }
    };
    let section = |name: Cow<'i, str>, at: usize, t: DeTable<'i>| Section {
        name,
        at,
        entries: t
            .into_iter()
            .map(|(k, v)| Entry {
                key_at: k.span().start,
                key: k.into_inner(),
                value: from_de(v),
            })
            .collect(),
    };
    let mut sections = Sections::default();
    for (key, value) in doc {
        let at = key.span().start;
        match key.get_ref().as_ref() {
            "defaults" => {
                let t = table(value, "[defaults]")?;
                sections.defaults = Some(section(key.into_inner(), at, t));
            }
            kind @ ("users" | "groups") => {
                let what = format!("`{kind}` (a table of [{kind}.NAME] sections)");
                let mut read = Vec::new();
                for (name, value) in table(value, &what)? {
                    let t = table(value, &format!("[{kind}.{}]", name.get_ref()))?;
                    let name_at = name.span().start;
                    read.push(section(name.into_inner(), name_at, t));
                }
                if kind == "users" {
                    sections.users = read;
                } else {
                    sections.groups = read;
                }
            }
            other => {
                return Err(ctx.err(
                    at,
                    format!("unknown field `{other}`, expected one of `version`, `defaults`, `users`, `groups`"),
                ))
            }
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    /// The canonical reader accepts only what toml accepts, with the same meaning: for
    /// every text it reads, the general reader reads the same sections (in toml's key
    /// order); every other text it declines.
    #[rstest]
    #[case::canonical("version = 1\n# c\n[defaults] # c\nroot = \"/x\"\nfrom = [\"10.0.0.0/8\", # c\n  \"::1/128\",\n]\n[users.\"b c\"]\nlock = false\ntimeout = 0x10\n[groups.'g']\numask = '0022'\n", true)]
    #[case::escapes(
        "version = 1\n[users.a]\nroot = \"/x\\u0041\\ty\"\nrsync = '''/usr/bin/rsync'''\n",
        true
    )]
    #[case::float("version = 1\n[users.a]\ntimeout = 1.5\n", false)]
    #[case::crlf_bom_and_spacing(
        "\u{feff}version = 1\r\n  [ users . a ]  # c\r\n\troot\t=\t\"/x\"\r\nlock=true",
        true
    )]
    #[case::numbers(
        "version = +1\n[users.a]\ntimeout = 1_000\numask = \"\"\"0\\\n  22\"\"\"\nlock = false\n[users.b]\ntimeout = 99999999999999999999\n[users.c]\ntimeout = -0\n",
        true
    )]
    #[case::multi_line_quotes(
        "version = 1\n[users.a]\nroot = \"\"\"/x\"\"\"\"\"\nrsync = '''\n/y'''''\n",
        true
    )]
    #[case::empty_names("version = 1\n[users.\"\"]\n[groups.'']\n\"\" = 1\n", true)]
    #[case::date("version = 1\n[users.a]\ntimeout = 1979-05-27\n", false)]
    #[case::date_time_with_space("version = 1\n[users.a]\ntimeout = 1979-05-27 07:32:00\n", false)]
    #[case::dotted_key("version = 1\n[users.a]\nx.y = 1\n", false)]
    #[case::dotted_top("version = 1\nusers.a.root = \"/x\"\n", false)]
    #[case::inline_table("version = 1\n[users]\na = { root = \"/x\" }\n", false)]
    #[case::inline_value("version = 1\n[users.a]\nroot = {}\n", false)]
    #[case::users_header("version = 1\n[users]\n[users.a]\n", false)]
    #[case::array_of_tables("version = 1\n[[users.a]]\n", false)]
    #[case::nested_array("version = 1\n[users.a]\nfrom = [[\"x\"]]\n", false)]
    #[case::empty_element("version = 1\n[users.a]\nfrom = [,]\n", false)]
    #[case::duplicate_key("version = 1\n[users.a]\nlock = true\nlock = false\n", false)]
    #[case::duplicate_defaults("version = 1\n[defaults]\n[defaults]\n", false)]
    #[case::deep_header("version = 1\n[users.a.b]\n", false)]
    #[case::other_header("version = 1\n[other]\n", false)]
    #[case::no_version("[users.a]\n", false)]
    #[case::version_two("version = 2\n", false)]
    #[case::version_twice("version = 1\nversion = 1\n", false)]
    #[case::version_late("[users.a]\nversion = 1\n", false)]
    #[case::bad_escape("version = 1\n[users.a]\nroot = \"\\q\"\n", false)]
    #[case::bad_syntax("version = 1\n[users.a\n", false)]
    #[case::two_values("version = 1\n[users.a]\ntimeout = 1 2\n", false)]
    #[case::no_value("version = 1\n[users.a]\ntimeout =\n", false)]
    #[case::unterminated("version = 1\n[users.a]\nroot = \"/x\n", false)]
    #[case::unterminated_multi_line("version = 1\n[users.a]\nroot = '''/x\n", false)]
    #[case::lone_cr("version = 1\r[users.a]\n", false)]
    #[case::control_in_comment("version = 1\n# \u{7f}\n", false)]
    #[case::control_in_string("version = 1\n[users.a]\nroot = \"/\u{1}\"\n", false)]
    #[case::multi_line_key("version = 1\n[users.a]\n'''x''' = 1\n", false)]
    #[case::quote_in_atom("version = 1\n[users.a]\ntimeout = 1\"x\"\n", false)]
    fn the_canonical_reader_agrees_with_toml(#[case] text: &str, #[case] canonical: bool) {
        let fast = read_canonical(text);
        assert_eq!(fast.is_some(), canonical, "{text:?}");
        let ctx = Ctx {
            path: Path::new("/etc/rshell.toml"),
            text,
        };
        if let Some(mut fast) = fast {
            let sort = |s: &mut Sections| {
                for section in s
                    .defaults
                    .iter_mut()
                    .chain(&mut s.users)
                    .chain(&mut s.groups)
                {
                    section.entries.sort_by(|a, b| a.key.cmp(&b.key));
                }
                s.users.sort_by(|a, b| a.name.cmp(&b.name));
                s.groups.sort_by(|a, b| a.name.cmp(&b.name));
            };
            sort(&mut fast);
            let mut any = read_any(&ctx).expect("toml accepts what the canonical reader accepts");
            sort(&mut any);
            assert_eq!(fast, any, "{text:?}");
        }
    }

    /// Mostly one of `good`, sometimes one of `bad`.
    fn mostly(
        good: Vec<&'static str>,
        bad: Vec<&'static str>,
    ) -> impl proptest::strategy::Strategy<Value = &'static str> + Clone {
        prop_oneof![9 => proptest::sample::select(good), 1 => proptest::sample::select(bad)]
    }

    /// A value as an administrator might write it, valid or nearly so.
    fn value_text() -> impl proptest::strategy::Strategy<Value = String> {
        let content = proptest::collection::vec(
            mostly(
                vec![
                    "a", " ", "\t", "\\\\", "\\\"", "\\n", "\\u00e9", "\\x41", "\\e", "é", "/srv",
                ],
                vec![
                    "\\q", "'", "\"", "#", "\u{1}", "\\", "[", "]", ",", "\n", "\\\n  ",
                ],
            ),
            0..6,
        )
        .prop_map(|v| v.concat());
        let quoted = (
            proptest::sample::select(vec!["\"", "'", "\"\"\"", "'''", "\"\"\"\n", "'''\n"]),
            content,
            mostly(vec![""], vec!["\"", "'"]),
        )
            .prop_map(|(q, c, extra)| {
                let close = q.trim_end_matches('\n');
                format!("{q}{c}{extra}{close}")
            });
        let unquoted = mostly(
            vec![
                "1",
                "0",
                "+1",
                "-1",
                "1_000",
                "0x1f",
                "0o7",
                "0b1",
                "true",
                "false",
                "99999999999999999999",
            ],
            vec![
                "01",
                "1__0",
                "True",
                "1979-05-27 07:32:00",
                "x",
                "",
                "0x1F",
                "1.5",
                "1e3",
                "inf",
                "nan",
                "1979-05-27",
                "1979-05-27T07:32:00Z",
                "07:32:00",
            ],
        )
        .prop_map(String::from);
        let scalar = prop_oneof![quoted, unquoted];
        let array = (
            proptest::collection::vec(scalar.clone(), 0..3),
            mostly(vec![",", ", ", ",\n", " , # c\n", ",\r\n"], vec!["", " "]),
            mostly(vec!["", ",", "\n", "# c\n"], vec![",,", "\r"]),
        )
            .prop_map(|(items, sep, end)| format!("[{}{end}]", items.join(sep)));
        prop_oneof![3 => scalar, 1 => array]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(500)
        ))]
        /// Lines as an administrator might write them: whatever the scanner accepts, toml
        /// accepts with the same sections.
        #[test]
        fn what_the_scanner_accepts_toml_reads_the_same(lines in proptest::collection::vec(
            (
                proptest::sample::select(vec!["", " ", "\t"]),
                proptest::prop_oneof![
                    1 => (
                        mostly(
                            vec!["[defaults]", "[users.a{n}]", "[ groups . \"g{n}\" ]",
                                 "[users.'b{n}']", "[users.\"\\u0061{n}\"]", "[users.\"\"]",
                                 "# comment é", "", "[users . c{n}]"],
                            vec!["[users.a.b]", "[[users.c]]", "#\u{7f}", "version = 1", "[x]"],
                        ),
                        0..1000u32,
                    ).prop_map(|(h, n)| h.replace("{n}", &n.to_string())),
                    3 => (
                        mostly(
                            vec!["root{n}", "a-b_c{n}", "\"lock{n}\"", "'delete{n}'",
                                 "\"a\\u0041{n}\""],
                            vec!["x.y", "version", "'''k'''", "é", "from", "\"\""],
                        ),
                        0..1000u32,
                        mostly(vec![" = ", "=", " =\t"], vec![" ", "=="]),
                        value_text(),
                    ).prop_map(|(k, n, eq, v)| format!("{}{eq}{v}", k.replace("{n}", &n.to_string()))),
                ],
                mostly(vec!["", " ", " # c"], vec!["#\u{1}", " x"]),
                mostly(vec!["\n", "\r\n"], vec!["\r"]),
            ),
            0..10,
        )) {
            let mut text = String::from("version = 1\n[users.z]\n");
            for (indent, line, tail, newline) in &lines {
                text += &format!("{indent}{line}{tail}{newline}");
            }
            if let Some(mut fast) = read_canonical(&text) {
                // The one exception: a section defined twice is the merge's error.
                let twice = |list: &[Section]| {
                    list.iter().enumerate().any(|(i, a)| list[..i].iter().any(|b| a.name == b.name))
                };
                proptest::prop_assume!(!twice(&fast.users) && !twice(&fast.groups));
                let ctx = Ctx { path: Path::new("/x"), text: &text };
                let any = read_any(&ctx);
                proptest::prop_assert!(any.is_ok(), "{:?}: {:?}", text, any);
                let mut any = any.unwrap();
                for s in [&mut fast, &mut any] {
                    for section in s.defaults.iter_mut().chain(&mut s.users).chain(&mut s.groups) {
                        section.entries.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                    s.users.sort_by(|a, b| a.name.cmp(&b.name));
                    s.groups.sort_by(|a, b| a.name.cmp(&b.name));
                }
                proptest::prop_assert_eq!(fast, any, "{:?}", text);
            }
        }
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
