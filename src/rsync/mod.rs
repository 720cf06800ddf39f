//! The rsync server model: one table with a row per option rsync 3.x accepts as a server, a parser that
//! turns words into a typed [`Invocation`], and nothing else (no policy, no syscalls).
//!
//! Words are bytes: option names and every value that is not a path must be valid UTF-8
//! (they are checked as text), a path value or operand may be any bytes but NUL (a
//! Latin-1 client's file names), and is passed on exactly as it was checked.
//!
//! The table is an allowlist. popt takes no abbreviations (rsync 3.5.0 with popt 1.19: `--log-f=` is unknown), so we compare
//! exact spellings; anything not in the table is refused with its name.
#![forbid(unsafe_code)]

pub mod daemon;
pub mod version;

use crate::command::{show, Word};

/// What the value of an option looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A flag: `--opt` only; `--opt=x` is refused as popt would.
    Flag,
    /// A (possibly negative) decimal integer.
    Int,
    /// A non-negative decimal integer.
    Uint,
    /// A size like `100`, `1.5M`, `2g` (`--max-size`), at most this many bytes when bounded
    /// (`--max-alloc`: a client must not make the server allocate without limit).
    Size(Option<u64>),
    /// A charset name (`--iconv`).
    Charset,
    /// A comma list of names from a fixed set (checksum/compress choices).
    Choice(&'static [&'static str]),
    /// Exactly one of these literal values.
    Literal(&'static [&'static str]),
    /// `--info=` words: letters, digits, commas.
    InfoWords,
    /// Suffix for backups: no `/`.
    Suffix,
    /// `--usermap`/`--groupmap` text (`FROM:TO,...`).
    Map,
    /// `--skip-compress` list (`gz/jpg/...`).
    SuffixList,
    /// A path that rshell resolves beneath root; the base is where rsync takes it from.
    Path(PathBase),
}

/// Where a relative path-valued option is taken from (rsync: basis/backup/temp dirs relative to the destination directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathBase {
    /// Relative to the destination directory (basis dirs, `--backup-dir`, `--temp-dir`).
    Destination,
    /// A sub-directory of each file's directory (`--partial-dir`): no `..` allowed.
    EachFileDir,
    /// Relative to the server's start directory, i.e. root (`--files-from`).
    Start,
}

/// What an option does to existing files on the server: the promises of the policy
/// (read-only, write-only, `delete = false`, `overwrite = false`) refuse options by these
/// effects (see `decide::refused_by_policy`), not by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Changes nothing that a promise covers.
    Safe,
    /// Makes a receiver remove existing files or directories (`--delete*`, `--force`);
    /// with `-v`/`-i` the deleted names are also reported to the client. A sender (a
    /// pull) deletes nothing on the server with these: the client does, on its side.
    Deletes,
    /// Makes a sender remove the files it sent (`--remove-source-files`): on a pull, the
    /// server's files.
    RemovesSources,
    /// rsync itself unlinks existing files it finds in these places (`--partial-dir`
    /// basis files, `--delay-updates`' `.~tmp~` leftovers).
    Unlinks,
    /// Moves or replaces existing files as backups (a backup onto an existing name
    /// replaces that file).
    Backups,
    /// Makes the receiver reveal something of existing content to the client: block
    /// checksums (`--no-W`), whole-file checksum comparison (`-c`), fuzzy basis, append.
    RevealsContent,
    /// Reports what would happen without doing it (`-n`).
    DryRun,
    /// A path-valued option the server reads (`--files-from`): refused in write-only.
    ReadPath,
    /// Makes a receiver keep every existing destination entry (`--ignore-existing`), even
    /// a symlink where the sender has a directory: rsync before 3.5.0 then creates that
    /// directory's files through the symlink, so without Landlock it is refused there.
    KeepsExisting,
    /// Makes the receiver act as super-user (`--super`: chown to any owner, devices,
    /// specials). Kept for accounts with uid 0, for which rsync is super-user anyway;
    /// dropped for any other account, where those attempts could only fail
    /// (`fake_super` stores ownership in xattrs instead).
    SuperUser,
    /// Refused always, with this reason.
    Refused(&'static str),
}

/// One row of the option table.
#[derive(Debug, PartialEq, Eq)]
pub struct OptSpec {
    /// The short letter when the option has one that may appear in a bundle.
    pub short: Option<char>,
    /// The exact long spelling rsync's popt accepts (without `--`).
    pub long: &'static str,
    pub value: Value,
    pub class: Class,
    /// The spelling rshell hands rsync's server when it differs from the one rsync's
    /// client sends (`None`: the same).
    pub server_spelling: Option<&'static str>,
}

const CHECKSUMS: &[&str] = &[
    "auto", "xxh128", "xxh3", "xxh64", "xxhash", "md5", "md4", "sha1", "none",
];
const COMPRESSORS: &[&str] = &["zstd", "lz4", "zlibx", "zlib", "none", "auto"];

/// The most `--max-alloc` a client may ask for (rsync's default is 1 GiB).
pub const MAX_ALLOC_LIMIT: u64 = 8 << 30;

const CLIENT_ONLY: &str = "is a client-side option that an rsync client never sends to a server";
const SYMLINK_OUT: &str = "follows symlinks out of the confined directory";
const RULE_FILE: &str = "makes the server read rule files by path";
const SECLUDED: &str = "(secluded args) is accepted only in rsync's own secluded form: nothing after the option bundle on the command line, the other words on standard input";

macro_rules! row {
    ($short:expr, $long:expr, $value:expr, $class:expr) => {
        row!($short, $long, $value, $class, None)
    };
    ($short:expr, $long:expr, $value:expr, $class:expr, server = $spelling:expr) => {
        row!($short, $long, $value, $class, Some($spelling))
    };
    ($short:expr, $long:expr, $value:expr, $class:expr, $spelling:expr) => {
        OptSpec {
            short: $short,
            long: $long,
            value: $value,
            class: $class,
            server_spelling: $spelling,
        }
    };
}

use Class::*;
use Value::*;

/// The option table. Short letters appear in bundles; every row's long
/// spelling is accepted exactly as written (BackupPC sends the long forms of flags).
pub static OPTIONS: &[OptSpec] = &[
    // --- flags that may appear in a bundle , with their long spellings
    row!(Some('v'), "verbose", Flag, Safe),
    row!(Some('q'), "quiet", Flag, Safe),
    row!(Some('b'), "backup", Flag, Backups),
    row!(Some('u'), "update", Flag, Safe),
    row!(Some('n'), "dry-run", Flag, DryRun),
    row!(Some('l'), "links", Flag, Safe),
    row!(Some('d'), "dirs", Flag, Safe),
    row!(Some('m'), "prune-empty-dirs", Flag, Safe),
    row!(Some('O'), "omit-dir-times", Flag, Safe),
    row!(Some('J'), "omit-link-times", Flag, Safe),
    row!(Some('y'), "fuzzy", Flag, RevealsContent),
    row!(Some('W'), "whole-file", Flag, Safe),
    row!(Some('H'), "hard-links", Flag, Safe),
    row!(Some('o'), "owner", Flag, Safe),
    row!(Some('g'), "group", Flag, Safe),
    row!(Some('D'), "devices", Flag, Safe), // -D is --devices --specials; see also "specials"
    row!(Some('t'), "times", Flag, Safe),
    row!(Some('U'), "atimes", Flag, Safe),
    row!(Some('N'), "crtimes", Flag, Safe),
    row!(Some('p'), "perms", Flag, Safe),
    row!(Some('E'), "executability", Flag, Safe),
    row!(Some('A'), "acls", Flag, Safe),
    row!(Some('X'), "xattrs", Flag, Safe),
    row!(Some('r'), "recursive", Flag, Safe),
    row!(Some('c'), "checksum", Flag, RevealsContent),
    row!(Some('C'), "cvs-exclude", Flag, Safe),
    row!(Some('I'), "ignore-times", Flag, Safe),
    row!(Some('R'), "relative", Flag, Safe),
    row!(Some('x'), "one-file-system", Flag, Safe),
    row!(Some('S'), "sparse", Flag, Safe),
    row!(Some('z'), "compress", Flag, Safe),
    row!(Some('K'), "keep-dirlinks", Flag, Refused(SYMLINK_OUT)),
    row!(Some('L'), "copy-links", Flag, Refused(SYMLINK_OUT)),
    row!(Some('k'), "copy-dirlinks", Flag, Refused(SYMLINK_OUT)),
    row!(Some('s'), "secluded-args", Flag, Refused(SECLUDED)),
    row!(None, "protect-args", Flag, Refused(SECLUDED)),
    // --- long options a stock client sends
    row!(None, "iconv", Charset, Safe),
    row!(None, "list-only", Flag, Safe),
    row!(None, "no-r", Flag, Safe),
    row!(None, "compress-level", Int, Safe),
    row!(None, "specials", Flag, Safe),
    row!(None, "no-specials", Flag, Safe),
    row!(
        None,
        "log-format",
        Literal(&["%i", "%i%I", "%o", "X"]),
        Safe
    ),
    row!(None, "msgs2stderr", Flag, Safe),
    row!(None, "no-msgs2stderr", Flag, Safe),
    row!(Some('B'), "block-size", Uint, Safe),
    row!(None, "timeout", Uint, Safe),
    row!(None, "bwlimit", Uint, Safe),
    row!(None, "backup-dir", Path(PathBase::Destination), Backups),
    row!(None, "suffix", Suffix, Backups),
    row!(None, "checksum-choice", Choice(CHECKSUMS), Safe),
    row!(None, "new-compress", Flag, Safe),
    row!(None, "old-compress", Flag, Safe),
    row!(None, "compress-choice", Choice(COMPRESSORS), Safe),
    row!(None, "max-delete", Int, Safe),
    row!(None, "min-size", Size(None), Safe),
    row!(None, "max-size", Size(None), Safe),
    row!(None, "delete", Flag, Deletes),
    row!(None, "delete-before", Flag, Deletes),
    row!(None, "delete-during", Flag, Deletes),
    row!(None, "delete-delay", Flag, Deletes),
    row!(None, "delete-after", Flag, Deletes),
    row!(None, "delete-excluded", Flag, Deletes),
    row!(None, "delete-missing-args", Flag, Deletes),
    row!(None, "remove-source-files", Flag, RemovesSources),
    row!(None, "remove-sent-files", Flag, RemovesSources),
    row!(None, "force", Flag, Deletes),
    row!(None, "ignore-errors", Flag, Safe),
    // `rsync --qsort` sends it, but rsync's server only knows `--qsort` (rsync 3.x: the
    // client's server_options() writes `--use-qsort`): rshell passes it on as `--qsort`.
    row!(None, "use-qsort", Flag, Safe, server = "qsort"),
    row!(None, "only-write-batch", Literal(&["X"]), Safe),
    row!(None, "super", Flag, SuperUser),
    row!(None, "size-only", Flag, Safe),
    row!(None, "stats", Flag, Safe),
    row!(None, "skip-compress", SuffixList, Safe),
    row!(None, "max-alloc", Size(Some(MAX_ALLOC_LIMIT)), Safe),
    row!(None, "ignore-missing-args", Flag, Safe),
    row!(Some('@'), "modify-window", Int, Safe),
    row!(None, "checksum-seed", Int, Safe),
    row!(None, "partial-dir", Path(PathBase::EachFileDir), Unlinks),
    row!(None, "delay-updates", Flag, Unlinks),
    row!(None, "partial", Flag, Safe),
    row!(None, "safe-links", Flag, Safe),
    row!(None, "numeric-ids", Flag, Safe),
    row!(None, "usermap", Map, Safe),
    row!(None, "groupmap", Map, Safe),
    row!(None, "ignore-existing", Flag, KeepsExisting),
    row!(None, "existing", Flag, Safe),
    row!(Some('T'), "temp-dir", Path(PathBase::Destination), Safe),
    row!(None, "fsync", Flag, Safe),
    row!(None, "compare-dest", Path(PathBase::Destination), Safe),
    row!(None, "copy-dest", Path(PathBase::Destination), Safe),
    row!(None, "link-dest", Path(PathBase::Destination), Safe),
    row!(None, "info", InfoWords, Safe),
    row!(None, "append", Flag, RevealsContent),
    row!(None, "inplace", Flag, Safe),
    row!(None, "no-W", Flag, RevealsContent),
    row!(None, "files-from", Path(PathBase::Start), ReadPath),
    row!(None, "from0", Flag, Safe),
    row!(None, "no-relative", Flag, Safe),
    row!(None, "no-implied-dirs", Flag, Safe),
    row!(None, "preallocate", Flag, Safe),
    row!(None, "open-noatime", Flag, Safe),
    row!(None, "mkpath", Flag, Safe),
    row!(None, "munge-links", Flag, Safe),
    row!(None, "fake-super", Flag, Safe),
    row!(None, "drop-D", Flag, Safe),
    // --- accepted by the server's popt, refused by rshell
    row!(
        None,
        "daemon",
        Flag,
        Refused(
            "switches to daemon mode; only `rsync --server --daemon .` exactly is a daemon request"
        )
    ),
    row!(
        None,
        "config",
        Path(PathBase::Start),
        Refused("names a daemon config; rshell supplies the administrator's own")
    ),
    row!(
        None,
        "dparam",
        Map,
        Refused("sets daemon parameters (they can run commands)")
    ),
    row!(Some('M'), "remote-option", Map, Refused(CLIENT_ONLY)),
    row!(None, "detach", Flag, Refused("is a daemon option")),
    row!(None, "no-detach", Flag, Refused("is a daemon option")),
    row!(
        None,
        "log-file",
        Path(PathBase::Start),
        Refused("writes a log file with client-chosen text")
    ),
    row!(
        None,
        "log-file-format",
        Map,
        Refused("writes a log file with client-chosen text")
    ),
    row!(
        None,
        "exclude-from",
        Path(PathBase::Start),
        Refused(RULE_FILE)
    ),
    row!(
        None,
        "include-from",
        Path(PathBase::Start),
        Refused(RULE_FILE)
    ),
    row!(Some('f'), "filter", Map, Refused(RULE_FILE)),
    row!(None, "exclude", Map, Refused(RULE_FILE)),
    row!(None, "include", Map, Refused(RULE_FILE)),
    row!(Some('F'), "F", Flag, Refused(RULE_FILE)),
    row!(
        None,
        "write-devices",
        Flag,
        Refused("writes into device files")
    ),
    row!(None, "copy-devices", Flag, Refused("reads device files")),
    row!(None, "copy-unsafe-links", Flag, Refused(SYMLINK_OUT)),
    row!(
        None,
        "no-munge-links",
        Flag,
        Refused("would undo forced symlink munging")
    ),
    row!(
        None,
        "insecure-links",
        Flag,
        Refused("turns off rsync's own symlink safety checks")
    ),
    row!(None, "no-insecure-links", Flag, Refused(CLIENT_ONLY)),
    row!(
        None,
        "confine-root",
        Path(PathBase::Start),
        Refused("is set by rshell itself")
    ),
    row!(
        None,
        "no-drop-D",
        Flag,
        Refused("would allow creating device files")
    ),
    row!(None, "copy-as", Map, Refused("switches to another user")),
    row!(
        None,
        "trust-sender",
        Flag,
        Refused("turns off the receiver's checks of the sender")
    ),
    row!(None, "no-secluded-args", Flag, Refused(CLIENT_ONLY)),
    row!(None, "no-protect-args", Flag, Refused(CLIENT_ONLY)),
    row!(None, "old-args", Flag, Refused(CLIENT_ONLY)),
    row!(None, "no-old-args", Flag, Refused(CLIENT_ONLY)),
    row!(
        Some('e'),
        "rsh",
        Map,
        Refused("names a remote shell command")
    ),
    row!(None, "rsync-path", Map, Refused("names a program to run")),
    row!(None, "protocol", Int, Refused("forces an old protocol")),
    row!(
        None,
        "compress-threads",
        Int,
        Refused("can exhaust the server")
    ),
    row!(
        None,
        "debug",
        Map,
        Refused("prints internal data such as filter rules")
    ),
    row!(None, "stderr", Map, Refused(CLIENT_ONLY)),
    row!(None, "read-batch", Map, Refused(CLIENT_ONLY)),
    row!(None, "write-batch", Map, Refused(CLIENT_ONLY)),
    row!(None, "password-file", Map, Refused(CLIENT_ONLY)),
    row!(None, "early-input", Map, Refused(CLIENT_ONLY)),
    row!(None, "port", Int, Refused(CLIENT_ONLY)),
    row!(None, "address", Map, Refused(CLIENT_ONLY)),
    row!(None, "sockopts", Map, Refused(CLIENT_ONLY)),
    row!(None, "blocking-io", Flag, Refused(CLIENT_ONLY)),
    row!(None, "outbuf", Map, Refused(CLIENT_ONLY)),
    row!(None, "contimeout", Int, Refused(CLIENT_ONLY)),
    row!(None, "stop-after", Int, Refused(CLIENT_ONLY)),
    row!(None, "stop-at", Map, Refused(CLIENT_ONLY)),
    row!(None, "time-limit", Int, Refused(CLIENT_ONLY)),
    row!(None, "version", Flag, Refused(CLIENT_ONLY)),
    row!(None, "help", Flag, Refused(CLIENT_ONLY)),
    row!(
        None,
        "server",
        Flag,
        Refused("may appear only as the second word")
    ),
    row!(
        None,
        "sender",
        Flag,
        Refused("may appear only as the third word")
    ),
];

/// Letters that may stand in a bundle: every table row with a short letter and no value,
/// except the ones refused by class (checked after lookup, so the message names them).
fn short_flag(letter: char) -> Option<&'static OptSpec> {
    OPTIONS
        .iter()
        .find(|o| o.short == Some(letter) && o.value == Value::Flag)
}

/// The table row of a bundle letter (for the policy's effect checks).
pub fn short_flag_spec(letter: char) -> Option<&'static OptSpec> {
    short_flag(letter)
}

/// The spelling rshell hands rsync for an option: the table's, except where rsync's
/// server knows the option under another name than the one its client sends.
pub fn exec_spelling(spec: &OptSpec) -> &'static str {
    spec.server_spelling.unwrap_or(spec.long)
}

/// Look up an exact long spelling.
pub fn long_option(name: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.long == name)
}

/// A validated option occurrence (long form or a numeric short word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub spec: &'static OptSpec,
    /// The value as sent: any bytes for a [`Value::Path`], valid UTF-8 for every other
    /// kind (see [`Opt::text`]).
    pub value: Option<Vec<u8>>,
}

impl Opt {
    /// The value as text: every non-path value is (the parser refuses others); a path
    /// value only when it happens to be UTF-8.
    pub fn text(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// What the client asked for in a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInvocation {
    /// `--sender`: the server sends (a pull).
    pub sender: bool,
    /// Bundle letters in the order sent (repeats kept: `vv`, `HH`).
    pub flags: Vec<char>,
    /// The capability string after `e` (`.iLsfxCIvu`), if any.
    pub caps: Option<String>,
    /// Long options and `-B`/`-@` words, in the order sent.
    pub options: Vec<Opt>,
    /// The words after `.`.
    pub paths: Vec<Word>,
}

/// A request the model understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Transfer(ServerInvocation),
    /// `rsync --server --daemon .` exactly.
    Daemon,
}

/// Why the words are not a vetted rsync server invocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("only rsync may run here, not \"{0}\"")]
    NotRsync(String),
    #[error("rsync must be started as `rsync --server ...` (client mode is not allowed)")]
    NotServer,
    #[error("option {0} {1}")]
    Refused(String, &'static str),
    #[error("unknown option {0}")]
    Unknown(String),
    #[error("option {0} takes no value")]
    NoValueAllowed(String),
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("bad value for {0}: \"{1}\"")]
    BadValue(String, String),
    #[error("the value of {0} is not valid UTF-8 (only a path may be any bytes)")]
    NotUtf8Value(String),
    #[error("argument-taking letter -{0} inside the bundle {1}")]
    ValuedLetterInBundle(char, String),
    #[error("bad capability string in {0} (`e` must be last, followed by `.` or N.N and letters)")]
    BadCapabilities(String),
    #[error("`--` from the client is not allowed")]
    DoubleDash,
    #[error("the word before the paths must be exactly `.`, got \"{0}\"")]
    BadDot(String),
    #[error("missing `.` and paths")]
    NoDot,
    #[error("no path after `.`")]
    NoPath,
    #[error("an upload takes exactly one destination path, got {0}")]
    TooManyPaths(usize),
    #[error("with --files-from exactly one path is allowed, got {0}")]
    FilesFromPaths(usize),
    #[error("path \"{0}\" starts with `-`")]
    DashPath(String),
    #[error("unexpected word \"{0}\" (options must come before `.`)")]
    Unexpected(String),
    #[error("unquoted {0:?} in option word \"{1}\"")]
    GlobInOption(char, String),
    #[error("option {0} given more than {1} times")]
    TooMany(String, usize),
    #[error("{0}")]
    Daemon(&'static str),
    #[error(
        "the value of {0} contains `!#:+`, which rsync's option parser replaces with the next word"
    )]
    PoptSyntax(String),
}

/// Parse split words into an [`Invocation`]: `rsync --server [--sender]`, options, `.`, paths.
/// `configured_rsync` is the one absolute path also accepted as the program word.
pub fn parse(words: &[Word], configured_rsync: &str) -> Result<Invocation, ParseError> {
    let program = words.first().map(|w| w.text.as_slice()).unwrap_or_default();
    if program != b"rsync" && program != configured_rsync.as_bytes() {
        return Err(ParseError::NotRsync(show(program)));
    }
    if words.get(1).map(|w| w.text.as_slice()) != Some(b"--server") {
        return Err(ParseError::NotServer);
    }
    let rest = &words[2..];
    if rest.first().map(|w| w.text.as_slice()) == Some(b"--daemon") {
        return parse_daemon(rest);
    }
    let sender = rest.first().map(|w| w.text.as_slice()) == Some(b"--sender");
    let rest = if sender { &rest[1..] } else { rest };

    let mut inv = ServerInvocation {
        sender,
        flags: Vec::new(),
        caps: None,
        options: Vec::new(),
        paths: Vec::new(),
    };
    let mut i = 0;
    loop {
        let Some(word) = rest.get(i) else {
            return Err(ParseError::NoDot);
        };
        let text = word.text.as_slice();
        i += 1;
        if text == b"." {
            break;
        }
        if let Some(c) = option_word_glob(word) {
            return Err(ParseError::GlobInOption(c, show(text)));
        }
        if text == b"--" {
            return Err(ParseError::DoubleDash);
        }
        if let Some(long) = text.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(at) => (&long[..at], Some(&long[at + 1..])),
                None => (long, None),
            };
            let spec = std::str::from_utf8(name)
                .ok()
                .and_then(long_option)
                .ok_or_else(|| ParseError::Unknown(format!("--{}", show(name))))?;
            let name = spec.long;
            if let Refused(why) = spec.class {
                return Err(ParseError::Refused(format!("--{name}"), why));
            }
            let value = match (spec.value, inline) {
                (Value::Flag, Some(_)) => {
                    return Err(ParseError::NoValueAllowed(format!("--{name}")))
                }
                (Value::Flag, None) => None,
                (_, Some(v)) => Some(v.to_vec()),
                (_, None) => {
                    // popt's two-word form: the next word is the value.
                    let next = rest
                        .get(i)
                        .ok_or_else(|| ParseError::MissingValue(format!("--{name}")))?;
                    i += 1;
                    if let Some(c) = option_word_glob(next) {
                        return Err(ParseError::GlobInOption(c, show(&next.text)));
                    }
                    Some(next.text.clone())
                }
            };
            if let Some(v) = &value {
                check_value(spec, v)?;
            }
            push_option(&mut inv, spec, value)?;
        } else if let Some(bundle) = text.strip_prefix(b"-") {
            parse_short_word(&mut inv, text, bundle)?;
        } else {
            return Err(ParseError::BadDot(show(text)));
        }
    }
    inv.paths = rest[i..].to_vec();
    for p in &inv.paths {
        if p.text.starts_with(b"-") {
            return Err(ParseError::DashPath(show(&p.text)));
        }
    }
    let has_files_from = inv.options.iter().any(|o| o.spec.long == "files-from");
    match (inv.sender, inv.paths.len()) {
        (_, 0) => return Err(ParseError::NoPath),
        (false, n) if n > 1 => return Err(ParseError::TooManyPaths(n)),
        (true, n) if has_files_from && n != 1 => return Err(ParseError::FilesFromPaths(n)),
        _ => {}
    }
    Ok(Invocation::Transfer(inv))
}

fn parse_daemon(rest: &[Word]) -> Result<Invocation, ParseError> {
    let texts: Vec<&[u8]> = rest.iter().map(|w| w.text.as_slice()).collect();
    match texts.as_slice() {
        [b"--daemon", b"."] => Ok(Invocation::Daemon),
        _ => Err(ParseError::Daemon(
            "daemon over ssh is accepted only as exactly `rsync --server --daemon .` (rshell supplies the config)",
        )),
    }
}

/// An unquoted glob character in a word that is not a path (stock clients escape them
/// in option values).
fn option_word_glob(word: &Word) -> Option<char> {
    word.active_glob
        .first()
        .map(|&i| word.text.get(i).map_or('*', |&b| char::from(b)))
}

/// A word starting with a single `-`: a bundle of flag letters with an optional
/// `e<caps>` tail, or `-B<n>` / `-@<n>` as their own word (rsync's popt takes the rest of a bundle as their value).
fn parse_short_word(
    inv: &mut ServerInvocation,
    word: &[u8],
    bundle: &[u8],
) -> Result<(), ParseError> {
    let Some(&first) = bundle.first() else {
        return Err(ParseError::Unknown(show(word)));
    };
    if first == b'B' || first == b'@' {
        let spec = short_spec(char::from(first));
        let value = &bundle[1..];
        if value.is_empty() {
            return Err(ParseError::MissingValue(format!("-{}", char::from(first))));
        }
        check_value(spec, value)?;
        return push_option(inv, spec, Some(value.to_vec()));
    }
    // Flag letters and capabilities are ASCII: a word that is not even UTF-8 is no bundle.
    let (Ok(text), Ok(bundle)) = (std::str::from_utf8(word), std::str::from_utf8(bundle)) else {
        return Err(ParseError::Unknown(show(word)));
    };
    for (i, c) in bundle.char_indices() {
        if c == 'e' {
            let caps = &bundle[i + 1..];
            if inv.caps.is_some() || !valid_caps(caps) {
                return Err(ParseError::BadCapabilities(text.to_string()));
            }
            inv.caps = Some(caps.to_string());
            return Ok(());
        }
        match short_flag(c) {
            Some(spec) => {
                if let Refused(why) = spec.class {
                    return Err(ParseError::Refused(format!("-{c}"), why));
                }
                inv.flags.push(c);
            }
            None if OPTIONS.iter().any(|o| o.short == Some(c)) => {
                return Err(ParseError::ValuedLetterInBundle(c, text.to_string()));
            }
            None => return Err(ParseError::Unknown(format!("-{c} (in {text})"))),
        }
    }
    Ok(())
}

fn short_spec(letter: char) -> &'static OptSpec {
    OPTIONS
        .iter()
        .find(|o| o.short == Some(letter))
        .expect("the table has a row for every short letter the parser names")
}

/// `.` or `N.N`, then ASCII letters (rsync 3's `-e.caps` capability string).
fn valid_caps(caps: &str) -> bool {
    let rest = if let Some(r) = caps.strip_prefix('.') {
        r
    } else {
        let digits1 = caps.bytes().take_while(u8::is_ascii_digit).count();
        let after = &caps[digits1..];
        let Some(after) = after.strip_prefix('.') else {
            return false;
        };
        let digits2 = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits1 == 0 || digits2 == 0 || digits1 > 3 || digits2 > 3 {
            return false;
        }
        &after[digits2..]
    };
    rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_alphabetic())
}

/// At most 20 basis directories (rsync's own limit), every other valued option once.
fn push_option(
    inv: &mut ServerInvocation,
    spec: &'static OptSpec,
    value: Option<Vec<u8>>,
) -> Result<(), ParseError> {
    let count = inv
        .options
        .iter()
        .filter(|o| std::ptr::eq(o.spec, spec))
        .count();
    let limit = match spec.long {
        "compare-dest" | "copy-dest" | "link-dest" => 20,
        _ if spec.value == Value::Flag => 10, // repeats like --append --append are meaningful
        _ => 1,
    };
    if count >= limit {
        return Err(ParseError::TooMany(format!("--{}", spec.long), limit));
    }
    inv.options.push(Opt { spec, value });
    Ok(())
}

/// popt replaces `!#:+` inside any option value with the next word of the command line
/// and removes that word (rsync 3.x with popt 1.18/1.19, also across `--`): the paths
/// rsync would use are then not the ones rshell checked.
pub const POPT_NEXT_ARG: &str = "!#:+";

/// Check an option's value: a path may be any bytes (a name), every other kind is text
/// and must be valid UTF-8 before its own rule is applied.
fn check_value(spec: &OptSpec, value: &[u8]) -> Result<(), ParseError> {
    if value
        .windows(POPT_NEXT_ARG.len())
        .any(|w| w == POPT_NEXT_ARG.as_bytes())
    {
        return Err(ParseError::PoptSyntax(format!("--{}", spec.long)));
    }
    if let Value::Path(_) = spec.value {
        return if value.is_empty() {
            Err(ParseError::BadValue(
                format!("--{}", spec.long),
                String::new(),
            ))
        } else {
            Ok(())
        };
    }
    let v = std::str::from_utf8(value)
        .map_err(|_| ParseError::NotUtf8Value(format!("--{}", spec.long)))?;
    let ok = match spec.value {
        Value::Flag | Value::Path(_) => false,
        Value::Int => parse_int(v, true),
        Value::Uint => parse_int(v, false),
        Value::Size(limit) => parse_size(v).is_some_and(|n| limit.is_none_or(|max| n <= max)),
        Value::Charset => {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
        }
        Value::Choice(names) => {
            let parts: Vec<&str> = v.split(',').collect();
            parts.len() <= 2 && parts.iter().all(|p| names.contains(p))
        }
        Value::Literal(values) => values.contains(&v),
        Value::InfoWords => {
            !v.is_empty()
                && v.len() <= 256
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b',')
        }
        Value::Suffix => !v.contains('/') && v.len() <= 255,
        Value::Map => !v.is_empty() && v.len() <= 1024,
        Value::SuffixList => {
            v.len() <= 1024
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/.-_".contains(&b))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::BadValue(
            format!("--{}", spec.long),
            show(value),
        ))
    }
}

fn parse_int(v: &str, negative_ok: bool) -> bool {
    let digits = if negative_ok {
        v.strip_prefix('-').unwrap_or(v)
    } else {
        v
    };
    !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// rsync's size syntax (`123`, `1.5k`, `2G`, `10MB`, `4KiB`, `1K+1`; 1024-based units,
/// rsync's `+1`/`-1` adjustment ignored): the byte count of a valid size, `None` otherwise.
/// The one parser of sizes: `--max-size`/`--min-size` need validity, `--max-alloc` its
/// bound too.
fn parse_size(v: &str) -> Option<u64> {
    let v = v
        .strip_suffix("+1")
        .or_else(|| v.strip_suffix("-1"))
        .unwrap_or(v);
    let number_len = v
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, unit) = v.split_at(number_len);
    if number.is_empty() || number.len() > 20 || number.matches('.').count() > 1 {
        return None;
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let bytes = value * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

impl ServerInvocation {
    /// True if the flag was given, in a bundle or by its long spelling.
    pub fn has_flag(&self, letter: char) -> bool {
        self.flags.contains(&letter) || self.options.iter().any(|o| o.spec.short == Some(letter))
    }

    /// True if the long option was given.
    pub fn has(&self, long: &str) -> bool {
        self.options.iter().any(|o| o.spec.long == long)
    }

    /// The words rshell execs for the options part, canonical spellings, before any
    /// forced option: the bundle, then long options as `--name[=value]`. `resolved[i]` is
    /// the value rshell resolved for option `i` (a path-valued option), used instead of
    /// the client's bytes; one slot per option, so the mapping cannot slip. Values are
    /// bytes and stay bytes: what was checked is what is exec'd.
    pub fn option_words(&self, resolved: &[Option<Vec<u8>>]) -> Vec<Vec<u8>> {
        assert_eq!(resolved.len(), self.options.len(), "one slot per option");
        let mut out = Vec::new();
        if !self.flags.is_empty() || self.caps.is_some() {
            let mut bundle = String::from("-");
            bundle.extend(self.flags.iter());
            if let Some(caps) = &self.caps {
                bundle.push('e');
                bundle.push_str(caps);
            }
            out.push(bundle.into_bytes());
        }
        for (opt, resolved) in self.options.iter().zip(resolved) {
            let value = resolved.as_ref().or(opt.value.as_ref());
            let long = exec_spelling(opt.spec);
            let (mut word, value) = match (opt.spec.short, value) {
                (Some(c @ ('B' | '@')), Some(v)) => (format!("-{c}").into_bytes(), v),
                (_, Some(v)) => (format!("--{long}=").into_bytes(), v),
                (_, None) => {
                    out.push(format!("--{long}").into_bytes());
                    continue;
                }
            };
            word.extend_from_slice(value);
            out.push(word);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::split;
    use rstest::rstest;

    fn parse_str(s: &str) -> Result<Invocation, ParseError> {
        parse(&split(s.as_bytes()).unwrap(), "/usr/bin/rsync")
    }

    fn transfer(s: &str) -> ServerInvocation {
        match parse_str(s) {
            Ok(Invocation::Transfer(t)) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn the_bundle_splits_at_e_and_keeps_the_capabilities_opaque() {
        let t = transfer("rsync --server -vlogDtpre.iLsfxCIvu . dest/");
        assert_eq!(t.flags.iter().collect::<String>(), "vlogDtpr");
        assert_eq!(t.caps.as_deref(), Some(".iLsfxCIvu"));
        assert!(
            !t.has_flag('L'),
            "an L after e is a capability, not --copy-links"
        );
        assert!(
            !t.has_flag('s'),
            "an s after e is a capability, not secluded args"
        );
    }

    #[rstest]
    #[case("--timeout=30")]
    #[case("--timeout 30")]
    fn valued_options_take_both_popt_forms(#[case] opt: &str) {
        let t = transfer(&format!("rsync --server -re.iLs {opt} . dest/"));
        assert_eq!(t.options[0].spec.long, "timeout");
        assert_eq!(t.options[0].text(), Some("30"));
    }

    #[rstest]
    #[case(".")]
    #[case(".iLsfxCIvu")]
    #[case("31.14iLsfx")]
    fn good_capabilities(#[case] caps: &str) {
        assert!(valid_caps(caps));
    }

    #[rstest]
    #[case("")]
    #[case("x")]
    #[case("/bin/sh")]
    #[case(".iL;s")]
    #[case("3.")]
    #[case(".1")]
    fn bad_capabilities(#[case] caps: &str) {
        assert!(!valid_caps(caps));
    }

    #[test]
    fn every_table_row_is_unique_and_every_short_letter_is_unique() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert_ne!(a.long, b.long);
                if a.short.is_some() {
                    assert_ne!(a.short, b.short, "{} / {}", a.long, b.long);
                }
            }
        }
    }

    #[test]
    fn counts_and_limits() {
        let twenty = (0..20)
            .map(|i| format!("--link-dest=d{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(parse_str(&format!("rsync --server -r {twenty} . dest/")).is_ok());
        assert!(matches!(
            parse_str(&format!("rsync --server -r {twenty} --link-dest=x . dest/")),
            Err(ParseError::TooMany(..))
        ));
        assert!(matches!(
            parse_str("rsync --server --timeout=1 --timeout=2 . d/"),
            Err(ParseError::TooMany(..))
        ));
        assert!(matches!(
            parse_str("rsync --server . a b"),
            Err(ParseError::TooManyPaths(2))
        ));
        assert!(matches!(
            parse_str("rsync --server --sender --files-from=- . a b"),
            Err(ParseError::FilesFromPaths(2))
        ));
        assert_eq!(
            parse_str("rsync --server --daemon ."),
            Ok(Invocation::Daemon)
        );
    }

    #[rstest]
    #[case("1024", true)]
    #[case("1.5M", true)]
    #[case("2g", true)]
    #[case("10KiB", true)]
    #[case("1K+1", true)]
    #[case("", false)]
    #[case("1.2.3", false)]
    #[case("12X", false)]
    fn sizes(#[case] v: &str, #[case] ok: bool) {
        assert_eq!(parse_size(v).is_some(), ok);
    }

    fn parse_bytes(s: &[u8]) -> Result<Invocation, ParseError> {
        parse(&split(s).unwrap(), "/usr/bin/rsync")
    }

    /// Paths (operands and path values) are bytes: a Latin-1 client's names pass as sent.
    #[test]
    fn latin1_paths_and_path_values_are_bytes() {
        let Ok(Invocation::Transfer(t)) = parse_bytes(
            b"rsync --server -re.iLs --backup-dir=old\xe9 --partial-dir .p\xff --link-dest ../d\xe9 . caf\xe9/",
        ) else {
            panic!("refused");
        };
        assert_eq!(t.paths[0].text, b"caf\xe9/");
        assert_eq!(t.options[0].value.as_deref(), Some(&b"old\xe9"[..]));
        assert_eq!(t.options[0].text(), None);
        assert_eq!(t.options[1].value.as_deref(), Some(&b".p\xff"[..]));
        assert_eq!(t.options[2].value.as_deref(), Some(&b"../d\xe9"[..]));
        let words = t.option_words(&[None, None, None]);
        assert_eq!(words[1], b"--backup-dir=old\xe9");
        assert_eq!(words[3], b"--link-dest=../d\xe9");
        assert!(parse_bytes(b"rsync --server --sender -re.iLs . a\xe9 b\xff").is_ok());
    }

    /// Every value that is not a path is text: a byte that is not UTF-8 is refused, and
    /// the refusal names the option.
    #[rstest]
    #[case(b"--suffix=~\xe9", "--suffix")]
    #[case(b"--info=\xe9", "--info")]
    #[case(b"--max-size=1\xe9", "--max-size")]
    #[case(b"--iconv=latin\xe9", "--iconv")]
    #[case(b"--usermap 1:\xe9", "--usermap")]
    #[case(b"--timeout=\xff", "--timeout")]
    #[case(b"-B\xff", "--block-size")]
    fn invalid_utf8_in_a_value_that_is_not_a_path_is_refused(
        #[case] option: &[u8],
        #[case] named: &str,
    ) {
        let command = [&b"rsync --server -re.iLs "[..], option, b" . d/"].concat();
        let e = parse_bytes(&command).unwrap_err();
        assert_eq!(e, ParseError::NotUtf8Value(named.into()), "{e}");
        assert_eq!(
            e.to_string(),
            format!("the value of {named} is not valid UTF-8 (only a path may be any bytes)")
        );
    }

    #[test]
    fn option_names_and_program_words_are_never_bytes() {
        assert_eq!(
            parse_bytes(b"rsync --server --d\xe9lete . d/"),
            Err(ParseError::Unknown("--d\\xe9lete".into()))
        );
        assert_eq!(
            parse_bytes(b"rsync --server -r\xe9 . d/"),
            Err(ParseError::Unknown("-r\\xe9".into()))
        );
        let e = parse_bytes(b"rsync\xe9 --server . d/").unwrap_err();
        assert_eq!(e.to_string(), "only rsync may run here, not \"rsync\\xe9\"");
        let e = parse_bytes(b"rsync --server . -\xe9").unwrap_err();
        assert_eq!(e.to_string(), "path \"-\\xe9\" starts with `-`");
        let e = parse_bytes(b"rsync --server x\xe9 d/").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the word before the paths must be exactly `.`, got \"x\\xe9\""
        );
    }

    #[test]
    fn max_alloc_is_bounded_but_max_size_is_not() {
        assert!(parse_str("rsync --server -r --max-alloc=2g . d/").is_ok());
        assert!(matches!(
            parse_str("rsync --server -r --max-alloc=100000g . d/"),
            Err(ParseError::BadValue(..))
        ));
        assert!(matches!(
            parse_str("rsync --server -r --max-alloc=9G . d/"),
            Err(ParseError::BadValue(..))
        ));
        assert!(parse_str("rsync --server -r --max-size=100000g . d/").is_ok());
        assert_eq!(parse_size("1.5k"), Some(1536));
    }
}
