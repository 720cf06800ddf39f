//! The policy: `/etc/rshell.toml` and its drop-ins in `/etc/rshell.d/*.toml`, the
//! schema, loading with `file:line:col` errors, and the key-by-key layering
//! built-in ← `[defaults]` ← group ← user (← forced key).
//!
//! Rules: all or nothing (one error in any file denies everything); unknown keys are
//! errors; every file, and the drop-in directory, must be owned by root and not
//! writable by group or others, checked at every load.
#![forbid(unsafe_code)]

pub mod net;
pub mod trust;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::policy::net::Cidr;

/// The default config path; no environment variable changes it (an account could set
/// one through ~/.ssh/environment or ~/.pam_environment).
pub const DEFAULT_CONFIG: &str = "/etc/rshell.toml";

/// Every key a section may hold (for docs tests and `--policy`).
pub const KEYS: &[&str] = &[
    "rsync",
    "root",
    "access",
    "delete",
    "overwrite",
    "munge_links",
    "fake_super",
    "confine",
    "confine_root",
    "lock",
    "log_outcome",
    "umask",
    "from",
    "daemon",
    "daemon_config",
    "dangerous_writable_home",
    "timeout",
    "require_log",
];

/// What the user may do under root (`access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

/// Landlock mode (`confine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfineMode {
    Auto,
    Require,
    Off,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
            Access::WriteOnly => "write-only",
        })
    }
}

impl fmt::Display for ConfineMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfineMode::Auto => "auto",
            ConfineMode::Require => "require",
            ConfineMode::Off => "off",
        })
    }
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    BuiltIn,
    Defaults,
    Group(String),
    User(String),
    Key,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::Defaults => f.write_str("[defaults]"),
            Source::Group(g) => write!(f, "[groups.{g}]"),
            Source::User(u) => write!(f, "[users.{u}]"),
            Source::Key => f.write_str("forced key"),
        }
    }
}

/// One layer of settings: a config section or the forced key's flags. `None` = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub rsync: Option<String>,
    pub root: Option<String>,
    pub access: Option<Access>,
    pub delete: Option<bool>,
    pub overwrite: Option<bool>,
    pub munge_links: Option<bool>,
    pub fake_super: Option<bool>,
    pub confine: Option<ConfineMode>,
    pub confine_root: Option<bool>,
    pub lock: Option<bool>,
    pub log_outcome: Option<bool>,
    pub umask: Option<u32>,
    pub from: Option<Vec<Cidr>>,
    pub daemon: Option<bool>,
    pub daemon_config: Option<String>,
    pub dangerous_writable_home: Option<bool>,
    pub timeout: Option<u64>,
    pub require_log: Option<bool>,
    /// Where this section was defined; `None` for a forced key's flags.
    pub origin: Option<Origin>,
}

/// Where a config section was defined: the file (an index into [`Config::files`]) and
/// the byte offset of its name in that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub file: usize,
    pub offset: usize,
}

/// The effective settings for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub rsync: String,
    /// The root template (`~`, `%u` not yet expanded).
    pub root: String,
    pub access: Access,
    pub delete: bool,
    pub overwrite: bool,
    pub munge_links: bool,
    pub fake_super: bool,
    pub confine: ConfineMode,
    pub confine_root: bool,
    pub lock: bool,
    pub log_outcome: bool,
    pub umask: u32,
    pub from: Vec<Cidr>,
    pub daemon: bool,
    pub daemon_config: String,
    pub dangerous_writable_home: bool,
    /// Seconds without a byte moved before rshell ends the session (0: never).
    pub timeout: u64,
    /// Refuse every request when no log sink (syslog, journal) takes the record.
    pub require_log: bool,
}

/// The default idle timeout: long enough for a slow disk on the client, short enough that
/// a stalled client does not keep the root lock all night.
pub const DEFAULT_TIMEOUT: u64 = 600;

impl Default for Settings {
    /// The built-in defaults (rshell.toml(5) lists them).
    fn default() -> Self {
        Settings {
            rsync: "/usr/bin/rsync".into(),
            root: "~/backup".into(),
            access: Access::ReadWrite,
            delete: true,
            overwrite: true,
            munge_links: false,
            fake_super: false,
            confine: ConfineMode::Auto,
            confine_root: true,
            lock: true,
            log_outcome: true,
            umask: 0o077,
            from: Vec::new(),
            daemon: false,
            daemon_config: String::new(),
            dangerous_writable_home: false,
            timeout: DEFAULT_TIMEOUT,
            require_log: false,
        }
    }
}

/// The effective policy: settings plus the section each key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub settings: Settings,
    pub sources: BTreeMap<&'static str, Source>,
    /// The most specific section that matched (or built-in).
    pub section: Source,
    /// Whether any config section (`[defaults]`, group, user) applied.
    pub configured: bool,
    /// A nested key's directory, relative to the configured root: opened beneath the
    /// configured root's descriptor, never by its own absolute name.
    pub subdir: Option<PathBuf>,
    /// The config sections that applied, lowest first, each with the file it was read from.
    pub origins: Vec<(Source, PathBuf)>,
}

macro_rules! layer_keys {
    ($apply:ident) => {
        $apply!(rsync, "rsync");
        $apply!(root, "root");
        $apply!(access, "access");
        $apply!(delete, "delete");
        $apply!(overwrite, "overwrite");
        $apply!(munge_links, "munge_links");
        $apply!(fake_super, "fake_super");
        $apply!(confine, "confine");
        $apply!(confine_root, "confine_root");
        $apply!(lock, "lock");
        $apply!(log_outcome, "log_outcome");
        $apply!(umask, "umask");
        $apply!(from, "from");
        $apply!(daemon, "daemon");
        $apply!(daemon_config, "daemon_config");
        $apply!(dangerous_writable_home, "dangerous_writable_home");
        $apply!(timeout, "timeout");
        $apply!(require_log, "require_log");
    };
}

impl Policy {
    /// Built-in defaults only.
    pub fn builtin() -> Policy {
        let mut sources = BTreeMap::new();
        for key in KEYS {
            sources.insert(*key, Source::BuiltIn);
        }
        Policy {
            settings: Settings::default(),
            sources,
            section: Source::BuiltIn,
            configured: false,
            subdir: None,
            origins: Vec::new(),
        }
    }

    /// Apply one layer on top, key by key.
    pub fn apply(&mut self, layer: &Layer, source: &Source) {
        macro_rules! apply_key {
            ($field:ident, $name:literal) => {
                if let Some(v) = &layer.$field {
                    self.settings.$field = v.clone();
                    self.sources.insert($name, source.clone());
                }
            };
        }
        layer_keys!(apply_key);
        self.section = source.clone();
    }

    /// `(key, value, source)` rows for `--policy` and `--test`.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        let s = &self.settings;
        let from: Vec<String> = s.from.iter().map(|c| c.to_string()).collect();
        let values: [(&'static str, String); 18] = [
            ("rsync", s.rsync.clone()),
            ("root", s.root.clone()),
            ("access", s.access.to_string()),
            ("delete", s.delete.to_string()),
            ("overwrite", s.overwrite.to_string()),
            ("munge_links", s.munge_links.to_string()),
            ("fake_super", s.fake_super.to_string()),
            ("confine", s.confine.to_string()),
            ("confine_root", s.confine_root.to_string()),
            ("lock", s.lock.to_string()),
            ("log_outcome", s.log_outcome.to_string()),
            ("umask", format!("{:04o}", s.umask)),
            ("from", format!("[{}]", from.join(", "))),
            ("daemon", s.daemon.to_string()),
            ("daemon_config", s.daemon_config.clone()),
            (
                "dangerous_writable_home",
                s.dangerous_writable_home.to_string(),
            ),
            ("timeout", s.timeout.to_string()),
            ("require_log", s.require_log.to_string()),
        ];
        values
            .into_iter()
            .map(|(k, v)| {
                let src = self
                    .sources
                    .get(k)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                (k, v, src)
            })
            .collect()
    }
}

/// A loaded, validated configuration: the main file and its drop-ins, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The main file (`/etc/rshell.toml`, or `--config F`).
    pub path: PathBuf,
    /// Every file read, in merge order: the main file, then its drop-ins by name.
    pub files: Vec<PathBuf>,
    pub defaults: Option<Layer>,
    pub users: BTreeMap<String, Layer>,
    pub groups: BTreeMap<String, Layer>,
}

/// Why the configuration cannot be used. `Display` is the line the admin reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: config file does not exist")]
    Missing(PathBuf),
    #[error("{0}: cannot read config file: {1}")]
    Unreadable(PathBuf, String),
    #[error("{0}: {1}")]
    Insecure(PathBuf, String),
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: user {user} is in groups {first} and {second}, which both set `{key}`")]
    GroupConflict {
        path: PathBuf,
        user: String,
        key: &'static str,
        first: String,
        second: String,
    },
}

// ---- reading the files --------------------------------------------------------------

/// The drop-in directory of a main config file: its sibling `<stem>.d`
/// (`/etc/rshell.d` for `/etc/rshell.toml`, `/srv/cfg/test.d` for `/srv/cfg/test.toml`).
pub fn dropin_dir(path: &Path) -> PathBuf {
    let mut name = path.file_stem().unwrap_or(path.as_os_str()).to_os_string();
    name.push(".d");
    path.with_file_name(name)
}

/// Whether a directory entry is a drop-in: `*.toml`, not a dotfile. Editor and package
/// manager leftovers (`x.toml~`, `x.toml.dpkg-dist`, `x.toml.rpmnew`, `.x.toml.swp`,
/// `#x.toml#`, `.#x.toml`) do not end in `.toml` or start with a dot, so they are never
/// read — the rule systemd applies to `*.conf` drop-ins.
fn is_dropin_name(name: &[u8]) -> bool {
    name.len() > ".toml".len() && name.ends_with(b".toml") && !name.starts_with(b".")
}

/// Whether the dry run (`--test`/`--policy` with an explicit `--config`) may read the
/// files of this main config although a real run would refuse them (see
/// [`dry_run_reads_untrusted`]).
static DRY_RUN_CONFIG: OnceLock<PathBuf> = OnceLock::new();

/// For `rshell --test` and `rshell --policy` only, which execute nothing: let
/// [`Config::load`] of exactly `path` (and its drop-ins) read files that fail the
/// ownership and mode checks, so that an ordinary user can try a config from a clone of
/// the repository. Only [`ConfigError::Insecure`] is waived; a missing, unreadable or
/// invalid file is still an error. A real run never calls this: the process that serves
/// a client never enters the admin modes, so for it every load stays strict.
pub fn dry_run_reads_untrusted(path: &Path) {
    let _ = DRY_RUN_CONFIG.set(path.to_path_buf());
}

fn dry_run(path: &Path) -> bool {
    DRY_RUN_CONFIG.get().is_some_and(|p| p == path)
}

/// Read one config file with the trusted-file checks; a dry run reads an insecure file
/// anyway and relies on the caller to say that a real run refuses it.
fn read_config_file(path: &Path, dry: bool) -> Result<String, ConfigError> {
    match read_trusted_file(path) {
        Err(ConfigError::Insecure(..)) if dry => std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unreadable(path.to_path_buf(), e.to_string())),
        other => other,
    }
}

/// The drop-in directory must be a real directory owned by root and writable by nobody
/// else: whoever can add a file to it writes policy (as sudo requires of its
/// `@includedir`).
fn check_dropin_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    let insecure = |why: String| Err(ConfigError::Insecure(dir.to_path_buf(), why));
    if !meta.file_type().is_dir() {
        return insecure(
            "the drop-in directory must be a directory (not a symlink or anything else)".into(),
        );
    }
    if meta.uid() != 0 {
        return insecure(format!(
            "the drop-in directory must be owned by root (owner uid is {})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return insecure(format!(
            "the drop-in directory must not be group- or world-writable (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The drop-ins of the main config `path`, in merge order (byte order of their names,
/// like `LC_ALL=C ls`). A missing directory means none; an insecure one is an error
/// (pushed to `waived` instead in a dry run).
fn dropin_files(
    path: &Path,
    waived: Option<&mut Vec<ConfigError>>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = dropin_dir(path);
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConfigError::Unreadable(dir, e.to_string())),
    };
    if let Err(e) = check_dropin_dir(&dir, &meta) {
        match (waived, meta.file_type().is_dir()) {
            (Some(waived), true) => waived.push(e),
            _ => return Err(e),
        }
    }
    let unreadable = |e: std::io::Error| ConfigError::Unreadable(dir.clone(), e.to_string());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(unreadable)? {
        let name = entry.map_err(unreadable)?.file_name();
        if is_dropin_name(name.as_bytes()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Why a real run would refuse the files of the main config `path` (ownership and mode of
/// the file, its drop-in directory and each drop-in): what a dry run states first.
pub fn trust_problems(path: &Path) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    if let Err(e @ ConfigError::Insecure(..)) = check_trusted(path) {
        problems.push(e);
    }
    if let Ok(files) = dropin_files(path, Some(&mut problems)) {
        for f in files {
            if let Err(e @ ConfigError::Insecure(..)) = check_trusted(&f) {
                problems.push(e);
            }
        }
    }
    problems
}

// ---- the schema ---------------------------------------------------------------------

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// A value as the validator sees it, whichever reader produced it.
#[derive(Debug, Clone, PartialEq)]
enum Val<'i> {
    Str(Cow<'i, str>),
    /// `None`: out of the range of i64.
    Int(Option<i64>),
    Bool(bool),
    Array(Vec<Item<'i>>),
    /// A float, date-time or table: never a valid value of any key.
    Other(&'static str),
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
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
struct Item<'i> {
    at: usize,
    val: Val<'i>,
}

/// `key = value` in a section.
#[derive(Debug, Clone, PartialEq)]
struct Entry<'i> {
    key: Cow<'i, str>,
    key_at: usize,
    value: Item<'i>,
}

/// `[defaults]`, `[users.NAME]` or `[groups.NAME]` with its entries.
#[derive(Debug, Clone, PartialEq)]
struct Section<'i> {
    name: Cow<'i, str>,
    /// Offset of the name in the header (of `defaults` for `[defaults]`).
    at: usize,
    entries: Vec<Entry<'i>>,
}

/// One file's sections, read but not yet validated (`version = 1` is checked).
#[derive(Debug, Default, PartialEq)]
struct Sections<'i> {
    defaults: Option<Section<'i>>,
    users: Vec<Section<'i>>,
    groups: Vec<Section<'i>>,
}

/// The closest known key to a misspelt one (at most two edits away), for the message.
fn suggestion(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (prev + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(row[j + 1] + 1);
                prev = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    KEYS.iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

// ---- reader 1: any TOML, through toml's spanned table -------------------------------

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
/// toml's. Used whenever [`read_canonical`] declines a file.
fn read_any<'i>(ctx: &Ctx<'i>) -> Result<Sections<'i>, ConfigError> {
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

// ---- reader 2: the canonical shape, straight from the parser's events ---------------

/// Reads a file written the way rshell.toml(5) shows it — `version = 1`, then
/// `[defaults]`, `[users.NAME]` and `[groups.NAME]` headers, each followed by
/// `key = value` lines whose values are strings, integers, booleans or arrays of those —
/// from the events of toml's own lexer and parser (`toml_parser`, the front end of
/// `toml`), without building toml's table tree: about four times less work, which is what
/// keeps a 10,000-user policy inside a connection's budget.
///
/// It declines (`None`) anything else: any syntax or decoding error, a dotted key, an
/// inline table, an array of tables, a nested array, a header other than those three
/// shapes, `[defaults]` or a key of a section defined twice, a top-level key other than
/// `version`, a missing or unsupported `version`. [`read_any`] then reads the file and
/// gives toml's verdict and message. So what this reader accepts, toml accepts too, with
/// the same meaning (the table rules it would otherwise need — redefinition, implicit
/// tables — never arise in the shapes it accepts), with one exception that is still an
/// error: a `[users.NAME]` or `[groups.NAME]` defined twice, which the merge reports,
/// naming both places, as it does across files.
fn read_canonical(text: &str) -> Option<Sections<'_>> {
    use toml_parser::lexer::{Token, TokenKind};
    use toml_parser::parser::{
        parse_document, Event, EventKind, EventReceiver, RecursionGuard, ValidateWhitespace,
    };
    use toml_parser::{decoder::Encoding, ErrorSink, ParseError, Raw, Source, Span};

    /// Records that an error was reported, and nothing else.
    struct Failed(bool);
    impl ErrorSink for Failed {
        fn report_error(&mut self, _: ParseError) {
            self.0 = true;
        }
    }

    #[derive(PartialEq)]
    enum Where {
        Top,
        /// Inside `[ ... ]`: the keys read so far.
        Header,
        Defaults,
        User,
        Group,
    }

    struct Reader<'i> {
        source: Source<'i>,
        declined: bool,
        at: Where,
        header: Vec<(Cow<'i, str>, usize)>,
        /// The key of the key-value being read.
        key: Option<(Cow<'i, str>, usize)>,
        /// Whether the key was dotted (declined once the value is known to follow).
        array: Option<Item<'i>>,
        version: Option<Item<'i>>,
        sections: Sections<'i>,
    }

    impl<'i> Reader<'i> {
        fn decline(&mut self) {
            self.declined = true;
        }

        /// The raw text of a token, with its encoding (quoted or not).
        fn raw(&self, kind: EventKind, span: Span, encoding: Option<Encoding>) -> Option<Raw<'i>> {
            self.source.get(Event::new_unchecked(kind, encoding, span))
        }

        fn decode_key(&mut self, span: Span, encoding: Option<Encoding>) -> Cow<'i, str> {
            let mut out = Cow::Borrowed("");
            let mut failed = Failed(false);
            match self.raw(EventKind::SimpleKey, span, encoding) {
                Some(raw) => raw.decode_key(&mut out, &mut failed),
                None => failed.0 = true,
            }
            if failed.0 {
                self.decline();
            }
            out
        }

        fn decode_scalar(&mut self, span: Span, encoding: Option<Encoding>) -> Item<'i> {
            use toml_parser::decoder::ScalarKind;
            let mut out = Cow::Borrowed("");
            let mut failed = Failed(false);
            let val = match self.raw(EventKind::Scalar, span, encoding) {
                Some(raw) => match raw.decode_scalar(&mut out, &mut failed) {
                    ScalarKind::String => Val::Str(out),
                    ScalarKind::Boolean(b) => Val::Bool(b),
                    ScalarKind::Integer(radix) => {
                        Val::Int(i64::from_str_radix(&out, radix.value()).ok())
                    }
                    ScalarKind::Float => Val::Other("a float"),
                    ScalarKind::DateTime => Val::Other("a date-time"),
                },
                None => {
                    failed.0 = true;
                    Val::Other("nothing")
                }
            };
            if failed.0 {
                self.decline();
            }
            Item {
                at: span.start(),
                val,
            }
        }

        /// The section key-values currently go to.
        fn section(&mut self) -> Option<&mut Section<'i>> {
            match self.at {
                Where::Defaults => self.sections.defaults.as_mut(),
                Where::User => self.sections.users.last_mut(),
                Where::Group => self.sections.groups.last_mut(),
                Where::Top | Where::Header => None,
            }
        }

        /// A complete `key = value`.
        fn entry(&mut self, value: Item<'i>) {
            let Some((key, key_at)) = self.key.take() else {
                return self.decline();
            };
            if self.at == Where::Top {
                if key != "version" || self.version.is_some() {
                    return self.decline();
                }
                self.version = Some(value);
                return;
            }
            let Some(section) = self.section() else {
                return self.decline();
            };
            if section.entries.iter().any(|e| e.key == key) {
                return self.decline();
            }
            section.entries.push(Entry { key, key_at, value });
        }

        /// `]` of a header: `[defaults]`, `[users.NAME]` or `[groups.NAME]`, once each.
        fn header_done(&mut self) {
            let header = std::mem::take(&mut self.header);
            let s = &mut self.sections;
            let (at, fresh) = match header.as_slice() {
                [(d, at)] if d == "defaults" && s.defaults.is_none() => {
                    s.defaults = Some(Section {
                        name: Cow::Borrowed("defaults"),
                        at: *at,
                        entries: Vec::new(),
                    });
                    (Where::Defaults, true)
                }
                [(kind, _), (name, at)] if kind == "users" || kind == "groups" => {
                    let list = if kind == "users" {
                        &mut s.users
                    } else {
                        &mut s.groups
                    };
                    // A name defined twice is found when the files are merged, which
                    // names both places.
                    list.push(Section {
                        name: name.clone(),
                        at: *at,
                        entries: Vec::new(),
                    });
                    let at = if kind == "users" {
                        Where::User
                    } else {
                        Where::Group
                    };
                    (at, true)
                }
                _ => (Where::Top, false),
            };
            self.at = at;
            if !fresh {
                self.decline();
            }
        }
    }

    impl<'i> EventReceiver for Reader<'i> {
        fn std_table_open(&mut self, _: Span, _: &mut dyn ErrorSink) {
            if self.key.is_some() {
                self.decline();
            }
            self.at = Where::Header;
        }
        fn std_table_close(&mut self, _: Span, _: &mut dyn ErrorSink) {
            self.header_done();
        }
        fn array_table_open(&mut self, _: Span, _: &mut dyn ErrorSink) {
            self.decline();
        }
        fn inline_table_open(&mut self, _: Span, _: &mut dyn ErrorSink) -> bool {
            self.decline();
            false
        }
        fn array_open(&mut self, span: Span, _: &mut dyn ErrorSink) -> bool {
            if self.array.is_some() || self.key.is_none() {
                self.decline();
                return false;
            }
            self.array = Some(Item {
                at: span.start(),
                val: Val::Array(Vec::new()),
            });
            true
        }
        fn array_close(&mut self, _: Span, _: &mut dyn ErrorSink) {
            match self.array.take() {
                Some(array) => self.entry(array),
                None => self.decline(),
            }
        }
        fn simple_key(&mut self, span: Span, encoding: Option<Encoding>, _: &mut dyn ErrorSink) {
            let key = self.decode_key(span, encoding);
            if self.at == Where::Header {
                self.header.push((key, span.start()));
            } else if self.key.is_some() {
                self.decline();
            } else {
                self.key = Some((key, span.start()));
            }
        }
        fn key_sep(&mut self, _: Span, _: &mut dyn ErrorSink) {
            // A dot between two keys: fine in a header, a dotted key elsewhere.
            if self.at != Where::Header {
                self.decline();
            }
        }
        fn scalar(&mut self, span: Span, encoding: Option<Encoding>, _: &mut dyn ErrorSink) {
            let item = self.decode_scalar(span, encoding);
            match &mut self.array {
                Some(Item {
                    val: Val::Array(items),
                    ..
                }) => items.push(item),
                Some(_) => self.decline(),
                None => self.entry(item),
            }
        }
        fn error(&mut self, _: Span, _: &mut dyn ErrorSink) {
            self.decline();
        }
    }

    let source = Source::new(text);
    let mut reader = Reader {
        source,
        declined: false,
        at: Where::Top,
        header: Vec::new(),
        key: None,
        array: None,
        version: None,
        sections: Sections::default(),
    };
    let mut failed = Failed(false);
    {
        let mut validated = ValidateWhitespace::new(&mut reader, source);
        let mut guarded = RecursionGuard::new(&mut validated, 80);
        // One table at a time: the tokens from one header up to the next (a `[` that
        // starts a line outside any array or inline table, so always between two
        // expressions) are parsed on their own, and the token buffer stays the size of
        // one section instead of the whole file. A wrong cut could only leave a piece
        // that does not parse, and an error declines the file.
        let mut chunk: Vec<Token> = Vec::with_capacity(64);
        let (mut depth, mut line_start) = (0u32, true);
        for token in source.lex() {
            let kind = token.kind();
            if kind == TokenKind::LeftSquareBracket && depth == 0 && line_start {
                parse_document(&chunk, &mut guarded, &mut failed);
                chunk.clear();
            }
            match kind {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                    depth = depth.saturating_sub(1)
                }
                _ => {}
            }
            line_start = match kind {
                TokenKind::Newline => true,
                TokenKind::Whitespace => line_start,
                _ => false,
            };
            chunk.push(token);
        }
        parse_document(&chunk, &mut guarded, &mut failed);
    }
    let version_ok = matches!(
        reader.version,
        Some(Item {
            val: Val::Int(Some(1)),
            ..
        })
    );
    if failed.0 || reader.declined || reader.key.is_some() || !version_ok {
        return None;
    }
    Some(reader.sections)
}

// ---- validation ---------------------------------------------------------------------

/// A section's name as messages show it (`[defaults]`, `[users.alice]`), formatted only
/// when a message needs it.
#[derive(Clone, Copy)]
struct Shown<'a>(&'a str, Option<&'a str>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            None => write!(f, "[{}]", self.0),
            Some(name) => write!(f, "[{}.{name}]", self.0),
        }
    }
}

/// One file being validated.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, col) = line_col(self.text, offset);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    fn version(&self, v: &Item) -> Result<(), ConfigError> {
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

    fn string<'v>(&self, v: &'v Item, name: Shown, key: &str) -> Result<&'v str, ConfigError> {
        match &v.val {
            Val::Str(s) => Ok(s),
            other => Err(self.err(
                v.at,
                format!("{name}: `{key}` must be a string, got {}", other.kind()),
            )),
        }
    }

    fn boolean(&self, v: &Item, name: Shown, key: &str) -> Result<bool, ConfigError> {
        match v.val {
            Val::Bool(b) => Ok(b),
            ref other => Err(self.err(
                v.at,
                format!(
                    "{name}: `{key}` must be true or false, got {}",
                    other.kind()
                ),
            )),
        }
    }

    /// `rsync`, `daemon_config`: an absolute path without `..`.
    fn absolute(&self, v: &Item, name: Shown, key: &str) -> Result<String, ConfigError> {
        let s = self.string(v, name, key)?;
        if !s.starts_with('/') || s.contains("/../") || s.ends_with("/..") || s.contains('\0') {
            return Err(self.err(
                v.at,
                format!("{name}: `{key}` must be an absolute path, got {s:?}"),
            ));
        }
        Ok(s.to_string())
    }

    /// One section as a layer; every key checked.
    fn section(&self, entries: &[Entry], name: Shown) -> Result<Layer, ConfigError> {
        let mut layer = Layer::default();
        for Entry { key, key_at, value } in entries {
            let k: &str = key;
            let at = value.at;
            match k {
                "rsync" => layer.rsync = Some(self.absolute(value, name, k)?),
                "root" => {
                    let s = self.string(value, name, k)?;
                    let ok_start = s.starts_with('/') || s == "~" || s.starts_with("~/");
                    let bad =
                        s.split('/').any(|c| c == "..") || s.contains('\0') || s.contains('*');
                    if !ok_start || bad {
                        return Err(self.err(
                            at,
                            format!("{name}: `root` must be absolute or start with `~/` (no `..`), got {s:?}"),
                        ));
                    }
                    layer.root = Some(s.to_string());
                }
                "access" => {
                    layer.access = Some(match self.string(value, name, k)? {
                        "read-write" => Access::ReadWrite,
                        "read-only" => Access::ReadOnly,
                        "write-only" => Access::WriteOnly,
                        other => return Err(self.err(
                            at,
                            format!("{name}: unknown variant `{other}` for `access`, expected one of `read-write`, `read-only`, `write-only`"),
                        )),
                    })
                }
                "confine" => {
                    layer.confine = Some(match self.string(value, name, k)? {
                        "auto" => ConfineMode::Auto,
                        "require" => ConfineMode::Require,
                        "off" => ConfineMode::Off,
                        other => return Err(self.err(
                            at,
                            format!("{name}: unknown variant `{other}` for `confine`, expected one of `auto`, `require`, `off`"),
                        )),
                    })
                }
                "delete" => layer.delete = Some(self.boolean(value, name, k)?),
                "overwrite" => layer.overwrite = Some(self.boolean(value, name, k)?),
                "munge_links" => layer.munge_links = Some(self.boolean(value, name, k)?),
                "fake_super" => layer.fake_super = Some(self.boolean(value, name, k)?),
                "confine_root" => layer.confine_root = Some(self.boolean(value, name, k)?),
                "lock" => layer.lock = Some(self.boolean(value, name, k)?),
                "log_outcome" => layer.log_outcome = Some(self.boolean(value, name, k)?),
                "require_log" => layer.require_log = Some(self.boolean(value, name, k)?),
                "daemon" => layer.daemon = Some(self.boolean(value, name, k)?),
                "dangerous_writable_home" => {
                    layer.dangerous_writable_home = Some(self.boolean(value, name, k)?)
                }
                "umask" => {
                    let s = self.string(value, name, k)?;
                    let octal = !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
                    layer.umask = Some(match u32::from_str_radix(s, 8) {
                        Ok(n) if octal && n <= 0o777 => n,
                        _ => {
                            return Err(self.err(
                                at,
                                format!("{name}: `umask` must be an octal string like \"0077\", got {s:?}"),
                            ))
                        }
                    });
                }
                "from" => {
                    let Val::Array(list) = &value.val else {
                        return Err(self.err(
                            at,
                            format!(
                                "{name}: `from` must be an array of networks, got {}",
                                value.val.kind()
                            ),
                        ));
                    };
                    let mut nets = Vec::with_capacity(list.len());
                    for item in list {
                        let s = self.string(item, name, k)?;
                        let net = s
                            .parse::<Cidr>()
                            .map_err(|e| self.err(item.at, format!("{name}: `from`: {e}")))?;
                        nets.push(net);
                    }
                    layer.from = Some(nets);
                }
                "daemon_config" => {
                    layer.daemon_config = Some(match self.string(value, name, k)? {
                        "" => String::new(),
                        _ => self.absolute(value, name, k)?,
                    })
                }
                "timeout" => {
                    let n = match value.val {
                        Val::Int(n) => n,
                        ref other => {
                            return Err(self.err(
                                at,
                                format!("{name}: `timeout` must be an integer, got {}", other.kind()),
                            ))
                        }
                    };
                    layer.timeout = Some(match n.map(u64::try_from) {
                        Some(Ok(n)) if n <= 7 * 24 * 3600 => n,
                        _ => {
                            let got = n.map_or("a number out of range".into(), |n| n.to_string());
                            return Err(self.err(
                                at,
                                format!("{name}: `timeout` must be a number of seconds from 0 (never) to 604800, got {got}"),
                            ));
                        }
                    });
                }
                _ => {
                    let hint = suggestion(k)
                        .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
                    return Err(self.err(
                        *key_at,
                        format!("unknown field `{k}` in {name}{hint}; rshell.toml(5) lists the keys"),
                    ));
                }
            }
        }
        Ok(layer)
    }
}

impl Config {
    /// Read and validate the main file and its drop-ins (see [`dropin_dir`]), including
    /// the ownership and mode of each file and of the drop-in directory. All or nothing:
    /// any error in any file is an error of the whole configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let dry = dry_run(path);
        let mut files = vec![(path.to_path_buf(), read_config_file(path, dry)?)];
        let mut waived = Vec::new();
        for file in dropin_files(path, dry.then_some(&mut waived))? {
            let text = read_config_file(&file, dry)?;
            files.push((file, text));
        }
        Config::parse_files(&files)
    }

    /// Validate text as if it came from `path` (no file-system access, no drop-ins).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_files(&[(path, text)])
    }

    /// Validate and merge files given as `(path, text)`, the main file first, then the
    /// drop-ins in merge order (no file-system access). Every section of every file is
    /// validated, whoever connects. Each file needs `version = 1`; `[defaults]` may be
    /// defined in one file only, and each `[users.U]` and `[groups.G]` in one file only
    /// (the error names both places): a policy never depends on the order of two files.
    pub fn parse_files<P: AsRef<Path>, T: AsRef<str>>(
        files: &[(P, T)],
    ) -> Result<Config, ConfigError> {
        Config::parse_files_with(files, true)
    }

    /// [`Config::parse_files`]; `canonical_first: false` reads every file through
    /// [`read_any`] only (for the test that the two readers agree).
    fn parse_files_with<P: AsRef<Path>, T: AsRef<str>>(
        files: &[(P, T)],
        canonical_first: bool,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config {
            path: files.first().map_or_else(
                || PathBuf::from(DEFAULT_CONFIG),
                |f| f.0.as_ref().to_path_buf(),
            ),
            files: files.iter().map(|f| f.0.as_ref().to_path_buf()).collect(),
            defaults: None,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
        };
        for index in 0..files.len() {
            cfg.merge_file(index, files, canonical_first)?;
        }
        Ok(cfg)
    }

    /// `file:line:col` of where a section was defined.
    fn place<P: AsRef<Path>, T: AsRef<str>>(files: &[(P, T)], at: Origin) -> String {
        let (path, text) = (files[at.file].0.as_ref(), files[at.file].1.as_ref());
        let (line, col) = line_col(text, at.offset);
        format!("{}:{line}:{col}", path.display())
    }

    fn merge_file<P: AsRef<Path>, T: AsRef<str>>(
        &mut self,
        index: usize,
        files: &[(P, T)],
        canonical_first: bool,
    ) -> Result<(), ConfigError> {
        let ctx = Ctx {
            path: files[index].0.as_ref(),
            text: files[index].1.as_ref(),
        };
        let canonical = canonical_first.then(|| read_canonical(ctx.text)).flatten();
        let sections = match canonical {
            Some(s) => s,
            None => read_any(&ctx)?,
        };
        let at = |offset| Origin {
            file: index,
            offset,
        };
        if let Some(d) = sections.defaults {
            if let Some(first) = self.defaults.as_ref().and_then(|d| d.origin) {
                return Err(ctx.err(
                    d.at,
                    format!(
                        "[defaults] is already defined at {} (it may appear in one file only)",
                        Config::place(files, first)
                    ),
                ));
            }
            let mut layer = ctx.section(&d.entries, Shown("defaults", None))?;
            layer.origin = Some(at(d.at));
            self.defaults = Some(layer);
        }
        for (kind, list) in [("users", sections.users), ("groups", sections.groups)] {
            let layers = if kind == "users" {
                &mut self.users
            } else {
                &mut self.groups
            };
            for s in list {
                let shown = Shown(kind, Some(&s.name));
                let mut layer = ctx.section(&s.entries, shown)?;
                layer.origin = Some(at(s.at));
                match layers.entry(s.name.into_owned()) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(layer);
                    }
                    std::collections::btree_map::Entry::Occupied(o) => {
                        let first = o.get().origin.map_or_else(String::new, |first| {
                            format!(" at {}", Config::place(files, first))
                        });
                        return Err(ctx.err(
                            s.at,
                            format!(
                                "[{kind}.{}] is already defined{first} (a section may be defined in one file only)",
                                o.key()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The file a config section of the policy was read from (`None` for built-in and key).
    pub fn file_of(&self, source: &Source) -> Option<&Path> {
        let layer = match source {
            Source::Defaults => self.defaults.as_ref(),
            Source::Group(g) => self.groups.get(g),
            Source::User(u) => self.users.get(u),
            Source::BuiltIn | Source::Key => None,
        }?;
        self.files.get(layer.origin?.file).map(PathBuf::as_path)
    }

    /// The effective policy for `user` in `groups` (primary first), key by key.
    pub fn policy_for(&self, user: &str, groups: &[String]) -> Result<Policy, ConfigError> {
        let mut policy = Policy::builtin();
        let apply = |policy: &mut Policy, layer: &Layer, source: Source| {
            policy.apply(layer, &source);
            policy.configured = true;
            if let Some(file) = self.file_of(&source) {
                policy.origins.push((source, file.to_path_buf()));
            }
        };
        if let Some(d) = &self.defaults {
            apply(&mut policy, d, Source::Defaults);
        }
        let matched: Vec<(&String, &Layer)> = groups
            .iter()
            .filter_map(|g| self.groups.get_key_value(g))
            .collect();
        // Two configured groups that set the same key: ambiguous, a config error.
        for (i, (g1, l1)) in matched.iter().enumerate() {
            for (g2, l2) in &matched[i + 1..] {
                if g1 == g2 {
                    continue;
                }
                if let Some(key) = common_key(l1, l2) {
                    return Err(ConfigError::GroupConflict {
                        path: self.path.clone(),
                        user: user.to_string(),
                        key,
                        first: g1.to_string(),
                        second: g2.to_string(),
                    });
                }
            }
        }
        let mut seen = Vec::new();
        for (g, layer) in matched {
            if seen.contains(&g) {
                continue;
            }
            seen.push(g);
            apply(&mut policy, layer, Source::Group(g.clone()));
        }
        if let Some(u) = self.users.get(user) {
            apply(&mut policy, u, Source::User(user.to_string()));
        }
        Ok(policy)
    }
}

/// The first key both layers set, if any.
fn common_key(a: &Layer, b: &Layer) -> Option<&'static str> {
    macro_rules! both {
        ($field:ident, $name:literal) => {
            if a.$field.is_some() && b.$field.is_some() {
                return Some($name);
            }
        };
    }
    layer_keys!(both);
    None
}

// The trusted-file checks live in `trust`; callers keep using the two functions below.

/// Read a file that must be owned by root and not writable by group or others, in
/// directories only root can change (the config, a key's `--config`, `daemon_config`):
/// opened once, checked and read on that descriptor (see [`trust::open_trusted`]).
pub fn read_trusted_file(path: &Path) -> Result<String, ConfigError> {
    trust::read_trusted(path)
}

/// The checks of [`read_trusted_file`] without reading: for a file another program reads
/// by name (rsync's `--config=` of `daemon_config`), which is safe once every directory
/// up to `/` is root's alone.
pub fn check_trusted(path: &Path) -> Result<(), ConfigError> {
    trust::open_trusted(path).map(drop)
}

/// Expand a root template for a user: `~` is the home from passwd, `%u` the user name.
pub fn expand_root(template: &str, user: &str, home: &Path) -> PathBuf {
    let with_user = template.replace("%u", user);
    let expanded = if with_user == "~" {
        home.to_path_buf()
    } else if let Some(rest) = with_user.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(with_user)
    };
    normalize(&expanded)
}

/// Lexical clean-up: drop `.` components, empty components and a trailing slash.
pub fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/rshell.toml"), text)
    }

    #[test]
    fn given_the_design_example_then_it_parses() {
        let cfg = parse(
            r#"version = 1
[defaults]
rsync = "/usr/bin/rsync"
root = "~/backup"
access = "read-write"
delete = true
overwrite = true
munge_links = false
fake_super = false
confine = "auto"
confine_root = true
lock = true
log_outcome = true
umask = "0077"
from = []
daemon = false
daemon_config = ""
dangerous_writable_home = false

[users.amanda]
root = "/srv/backup/amanda"
access = "write-only"

[groups.backup]
root = "/srv/backup/%u"
"#,
        )
        .unwrap();
        let p = cfg.policy_for("amanda", &["backup".into()]).unwrap();
        assert_eq!(p.settings.root, "/srv/backup/amanda");
        assert_eq!(p.settings.access, Access::WriteOnly);
        assert_eq!(p.sources["root"], Source::User("amanda".into()));
        assert_eq!(p.sources["umask"], Source::Defaults);
        let q = cfg
            .policy_for("bob", &["staff".into(), "backup".into()])
            .unwrap();
        assert_eq!(q.settings.root, "/srv/backup/%u");
        assert_eq!(q.sources["root"], Source::Group("backup".into()));
    }

    #[rstest]
    #[case(
        "version = 1\n[defaults]\nroott = \"/x\"\n",
        3,
        "unknown field `roott`"
    )]
    #[case(
        "version = 1\n[defaults]\naccess = \"everything\"\n",
        3,
        "unknown variant"
    )]
    #[case("version = 1\n[defaults]\numask = \"999\"\n", 3, "umask")]
    #[case("version = 1\n[defaults]\nrsync = \"rsync\"\n", 3, "absolute")]
    #[case("version = 1\n[defaults]\nroot = \"backup\"\n", 3, "root")]
    #[case("version = 1\n[defaults]\nroot = \"/srv/../etc\"\n", 3, "root")]
    #[case("version = 1\n[users.x]\nfrom = [\"10.0.0.1/8\"]\n", 3, "host bits")]
    #[case("version = 2\n", 1, "unsupported version")]
    #[case("[defaults]\n", 1, "version = 1")]
    #[case("version = 1\n[defaults\n", 2, "")]
    #[case("version = 1\nfrobnicate = 1\n", 2, "unknown field")]
    #[case("version = 1\n[defaults]\ndelete = \"no\"\n", 3, "")]
    fn given_a_bad_config_then_the_error_names_file_line_and_message(
        #[case] text: &str,
        #[case] line: usize,
        #[case] needle: &str,
    ) {
        let err = parse(text).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("/etc/rshell.toml:{line}:")),
            "{shown}"
        );
        assert!(shown.contains(needle), "{shown}");
    }

    #[test]
    fn given_two_groups_setting_one_key_then_it_is_a_config_error() {
        let cfg =
            parse("version = 1\n[groups.a]\nroot = \"/a\"\n[groups.b]\nroot = \"/b\"\n").unwrap();
        let err = cfg.policy_for("u", &["a".into(), "b".into()]).unwrap_err();
        assert!(
            matches!(err, ConfigError::GroupConflict { key: "root", .. }),
            "{err}"
        );
        // Different keys layer fine.
        let cfg =
            parse("version = 1\n[groups.a]\nroot = \"/a\"\n[groups.b]\naccess = \"read-only\"\n")
                .unwrap();
        let p = cfg.policy_for("u", &["a".into(), "b".into()]).unwrap();
        assert_eq!(
            (p.settings.root.as_str(), p.settings.access),
            ("/a", Access::ReadOnly)
        );
    }

    #[test]
    fn given_user_and_group_then_user_wins_key_by_key() {
        let cfg = parse(
            "version = 1\n[defaults]\numask = \"0022\"\n[groups.g]\nroot = \"/g\"\naccess = \"read-only\"\n[users.u]\naccess = \"read-write\"\n",
        )
        .unwrap();
        let p = cfg.policy_for("u", &["g".into()]).unwrap();
        assert_eq!(p.settings.root, "/g");
        assert_eq!(p.settings.access, Access::ReadWrite);
        assert_eq!(p.settings.umask, 0o022);
        assert!(p.configured);
        let nobody = parse("version = 1\n[users.u]\n")
            .unwrap()
            .policy_for("other", &[])
            .unwrap();
        assert!(!nobody.configured);
    }

    #[test]
    fn root_templates_expand_from_passwd_values() {
        let home = Path::new("/home/amanda");
        assert_eq!(
            expand_root("~/backup", "amanda", home),
            PathBuf::from("/home/amanda/backup")
        );
        assert_eq!(
            expand_root("~", "amanda", home),
            PathBuf::from("/home/amanda")
        );
        assert_eq!(
            expand_root("/srv/%u/", "amanda", home),
            PathBuf::from("/srv/amanda")
        );
    }

    fn merge(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse_files(files)
    }

    #[test]
    fn drop_ins_merge_after_the_main_file_and_each_section_names_its_file() {
        let cfg = merge(&[
            (
                "/etc/rshell.toml",
                "version = 1\n[defaults]\nroot = \"/srv/%u\"\n",
            ),
            (
                "/etc/rshell.d/10-g.toml",
                "version = 1\n[groups.backup]\naccess = \"write-only\"\n",
            ),
            (
                "/etc/rshell.d/20-u.toml",
                "version = 1\n[users.alice]\ndelete = false\n",
            ),
        ])
        .unwrap();
        let p = cfg.policy_for("alice", &["backup".into()]).unwrap();
        assert_eq!(
            (
                p.settings.root.as_str(),
                p.settings.access,
                p.settings.delete
            ),
            ("/srv/%u", Access::WriteOnly, false)
        );
        let files: Vec<(String, &str)> = p
            .origins
            .iter()
            .map(|(s, f)| (s.to_string(), f.to_str().unwrap()))
            .collect();
        assert_eq!(
            files,
            [
                ("[defaults]".to_string(), "/etc/rshell.toml"),
                ("[groups.backup]".to_string(), "/etc/rshell.d/10-g.toml"),
                ("[users.alice]".to_string(), "/etc/rshell.d/20-u.toml"),
            ]
        );
        assert_eq!(
            cfg.file_of(&Source::User("alice".into())),
            Some(Path::new("/etc/rshell.d/20-u.toml"))
        );
        assert_eq!(cfg.file_of(&Source::Key), None);
    }

    #[rstest]
    #[case::user_in_two_files(
        "[users.a]\nlock = false\n",
        "\n[users.a]\nlock = true\n",
        "/etc/rshell.d/2.toml:3:8: [users.a] is already defined at /etc/rshell.d/1.toml:2:8"
    )]
    #[case::group_in_two_files(
        "[groups.g]\n",
        "[groups.g]\n",
        "/etc/rshell.d/2.toml:2:9: [groups.g] is already defined at /etc/rshell.d/1.toml:2:9"
    )]
    #[case::defaults_in_two_files(
        "[defaults]\n",
        "[defaults]\n",
        "/etc/rshell.d/2.toml:2:2: [defaults] is already defined at /etc/rshell.d/1.toml:2:2"
    )]
    fn a_section_may_be_defined_in_one_file_only(
        #[case] first: &str,
        #[case] second: &str,
        #[case] error: &str,
    ) {
        let first = format!("version = 1\n{first}");
        let second = format!("version = 1\n{second}");
        let err = merge(&[
            ("/etc/rshell.toml", "version = 1\n"),
            ("/etc/rshell.d/1.toml", &first),
            ("/etc/rshell.d/2.toml", &second),
        ])
        .unwrap_err();
        assert!(err.to_string().starts_with(error), "{err}");
    }

    #[test]
    fn every_drop_in_needs_its_version_and_any_error_fails_the_whole() {
        let main = ("/etc/rshell.toml", "version = 1\n[users.a]\n");
        let err = merge(&[main, ("/etc/rshell.d/x.toml", "[users.b]\n")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.d/x.toml:1:1: `version = 1` is missing"
        );
        // A bad value in a section that concerns someone else still fails everything.
        let err = merge(&[
            main,
            (
                "/etc/rshell.d/x.toml",
                "version = 1\n[users.other]\numask = \"8\"\n",
            ),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/rshell.d/x.toml:3:9: [users.other]: `umask`"),
            "{err}"
        );
        // The same section twice in one file (the canonical reader leaves it to the merge).
        let err = parse("version = 1\n[users.a]\n[users.a]\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("[users.a] is already defined at /etc/rshell.toml:2:8"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_key_gets_a_suggestion() {
        let err = parse("version = 1\n[users.a]\nacess = \"read-only\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.toml:3:1: unknown field `acess` in [users.a] (did you mean `access`?); rshell.toml(5) lists the keys"
        );
    }

    /// The canonical reader accepts only what toml accepts, with the same meaning: for
    /// every text it reads, the general reader reads the same sections (in toml's key
    /// order); every other text it declines.
    #[rstest]
    #[case::canonical("version = 1\n# c\n[defaults] # c\nroot = \"/x\"\nfrom = [\"10.0.0.0/8\", # c\n  \"::1/128\",\n]\n[users.\"b c\"]\nlock = false\ntimeout = 0x10\n[groups.'g']\numask = '0022'\n", true)]
    #[case::escapes(
        "version = 1\n[users.a]\nroot = \"/x\\u0041\\ty\"\nrsync = '''/usr/bin/rsync'''\n",
        true
    )]
    #[case::float("version = 1\n[users.a]\ntimeout = 1.5\n", true)]
    #[case::dotted_key("version = 1\n[users.a]\nx.y = 1\n", false)]
    #[case::dotted_top("version = 1\nusers.a.root = \"/x\"\n", false)]
    #[case::inline_table("version = 1\n[users]\na = { root = \"/x\" }\n", false)]
    #[case::users_header("version = 1\n[users]\n[users.a]\n", false)]
    #[case::array_of_tables("version = 1\n[[users.a]]\n", false)]
    #[case::nested_array("version = 1\n[users.a]\nfrom = [[\"x\"]]\n", false)]
    #[case::duplicate_key("version = 1\n[users.a]\nlock = true\nlock = false\n", false)]
    #[case::deep_header("version = 1\n[users.a.b]\n", false)]
    #[case::other_header("version = 1\n[other]\n", false)]
    #[case::no_version("[users.a]\n", false)]
    #[case::version_two("version = 2\n", false)]
    #[case::version_twice("version = 1\nversion = 1\n", false)]
    #[case::bad_escape("version = 1\n[users.a]\nroot = \"\\q\"\n", false)]
    #[case::bad_syntax("version = 1\n[users.a\n", false)]
    #[case::control_in_comment("version = 1\n# \u{7f}\n", false)]
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(500)
        ))]
        /// Whole configs, with and without the canonical reader: the same Config, or
        /// both an error (a section defined twice in one file is toml's error through
        /// read_any, the merge's through read_canonical: both refuse).
        #[test]
        fn both_readers_give_the_same_config(lines in proptest::collection::vec(
            proptest::sample::select(vec![
                "version = 1", "version = 2", "[defaults]", "[users.a]", "[users.b]",
                "[users.\"a\"]", "[groups.g]", "[groups.'g']", "[users]", "[users.a.b]",
                "[[users.a]]", "root = \"/x\"", "root = '/y'", "root = \"/x\\u0041\"",
                "root = \"rel\"", "access = \"read-only\"", "access = \"bogus\"",
                "lock = true", "lock = false", "lock = \"no\"", "timeout = 0x10",
                "timeout = 1_000", "timeout = 99999999999999999999", "timeout = 1.5",
                "umask = \"0027\"", "from = [\"10.0.0.0/8\", \"::1/128\"]",
                "from = [\n\"10.0.0.0/8\", # c\n]", "from = [[\"x\"]]", "from = []",
                "x.y = 1", "users.c.root = \"/z\"", "a = { root = \"/i\" }",
                "defaults = 1", "# comment", "", "root = \"\"\"/m\"\"\"",
                "rsync = \"/usr/bin/rsync\" # c", "[defaults", "bogus = 1",
                // A `[` starting a line inside an array or a multi-line string.
                "from = [\n[\"10.0.0.0/8\"],\n]", "root = \"\"\"\n[users.z]\n\"\"\"",
                "from = [\n\"10.0.0.0/8\"\n", "a = {\n[users.y]", "  [users.c]",
            ]),
            0..12,
        )) {
            let text = lines.join("\n") + "\n";
            let files = [("/etc/rshell.toml", text.as_str())];
            let fast = Config::parse_files_with(&files, true);
            let slow = Config::parse_files_with(&files, false);
            match (&fast, &slow) {
                (Ok(f), Ok(s)) => proptest::prop_assert_eq!(f, s, "{:?}", text),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "{:?}: {:?} vs {:?}", text, fast, slow),
            }
        }
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
