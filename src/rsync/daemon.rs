//! Judge the administrator's rsyncd.conf for daemon over ssh.
//!
//! In daemon mode (`rsync --server --daemon --config=FILE .`) rsync obeys only its
//! rsyncd.conf: rshell's `access`, `delete` and `overwrite` never reach it. A policy that
//! narrows those and also enables `daemon` is therefore only honest if every module of the
//! daemon's config states the same restriction itself. This module reads rsyncd.conf the
//! way rsync 3.5 does (params.c, loadparm.c, options.c) and says, per module, which
//! restriction is missing.
//!
//! Rules (rsyncd.conf(5)):
//! - Lines are `[module]` headers, `name = value` parameters, comments (first non-blank
//!   character `#` or `;`) or blank. A trailing `\` continues a line (not a comment).
//! - Parameter and module names ignore case and all whitespace ("ReadOnly" is
//!   "read only"); underscores are NOT spaces: rsync ignores `read_only` as unknown.
//! - Parameters before the first module and in `[global]` sections are defaults for the
//!   modules that start after them; a module's own parameters override them. A module
//!   header that repeats an earlier name (same matching) continues that module.
//! - Booleans are yes/no, true/false, 1/0 (any case). `read only` defaults to yes, `write
//!   only` to no. `auth users` rules ending in `:rw` override `read only` per user.
//! - `refuse options` is matched as rsync's options.c does: space-separated terms, `!`
//!   negates, wildcards `*?[` (wildmatch), later terms override earlier ones, an exact
//!   term also refuses its aliases (`delete-during` refuses `--del`), and refusing
//!   `delete` refuses every way to delete plus `--remove-source-files` on a pull.
//!
//! Anything the verifier cannot see through fails closed with a reason: `&include` and
//! `&merge` (other files), lines that are neither comment, header nor parameter, NUL
//! bytes, non-boolean or `%VAR%` values of the booleans that matter, `%VAR%` in
//! `refuse options` or `auth users`.
//!
//! What each requirement needs of every module:
//! - read_only → `read only = yes` (explicit, inherited or rsync's default) and no
//!   `auth users` rule granting `:rw`.
//! - write_only → `write only = yes` (rsync refuses every download from such a module).
//! - no_delete → read-only as above (rsync refuses uploads and `--remove-source-files`
//!   on a read-only module), or `refuse options` refusing every option that removes an
//!   existing file: the `--delete` family and `--delete-missing-args`,
//!   `--remove-source-files`/`--remove-sent-files`, `--force`, and rsync's own unlinking
//!   routes `--partial-dir` and `--delay-updates` (the partial file of a name is unlinked
//!   after use) and `--backup`/`--backup-dir` (a backup onto an existing name replaces it).
//! - no_overwrite → read-only as above: rsyncd.conf has no way to force
//!   `--ignore-existing` on a writable module.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most of a config file that is read: a larger one is not verified.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Restrictions every module must state itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirements {
    /// The policy's `access` is read-only.
    pub read_only: bool,
    /// The policy's `access` is write-only.
    pub write_only: bool,
    /// The policy says `delete = false`.
    pub no_delete: bool,
    /// The policy says `overwrite = false`.
    pub no_overwrite: bool,
}

impl Requirements {
    /// Is anything required at all?
    pub fn any(&self) -> bool {
        self.read_only || self.write_only || self.no_delete || self.no_overwrite
    }
}

/// Where a module's parameter value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// rsync's built-in default.
    Default,
    /// A line of the file: its number, whether it was a global default, and what it says.
    Line {
        line: usize,
        global: bool,
        text: String,
    },
}

impl Origin {
    /// " (line 7 says \"read only = no\")", or "" for rsync's default.
    fn describe(&self) -> String {
        match self {
            Origin::Default => String::new(),
            Origin::Line {
                line,
                global: false,
                text,
            } => format!(" (line {line} says \"{text}\")"),
            Origin::Line {
                line,
                global: true,
                text,
            } => format!(" (the global \"{text}\" on line {line} applies)"),
        }
    }
}

/// The module-local parameters that matter, with their origins.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Params {
    read_only: (bool, Origin),
    write_only: (bool, Origin),
    refuse_options: (Option<String>, Origin),
    auth_users: (Option<String>, Origin),
    path: Option<String>,
}

impl Default for Params {
    /// rsync's defaults (daemon-parm.txt): read only = yes, write only = no.
    fn default() -> Self {
        Params {
            read_only: (true, Origin::Default),
            write_only: (false, Origin::Default),
            refuse_options: (None, Origin::Default),
            auth_users: (None, Origin::Default),
            path: None,
        }
    }
}

/// One module of an rsyncd.conf, with the parameters that decide what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The name as rsync keeps it (inner whitespace runs as one space).
    pub name: String,
    /// The line of its first `[name]` header.
    pub line: usize,
    /// `path`, trailing slashes removed as rsync does; None when unset.
    pub path: Option<String>,
    /// Effective `read only` (before any `auth users` `:rw` override).
    pub read_only: bool,
    /// Effective `write only`.
    pub write_only: bool,
    /// Effective `refuse options`, as written.
    pub refuse_options: Option<String>,
    /// Effective `auth users`, as written.
    pub auth_users: Option<String>,
    params: Params,
}

/// The modules of an rsyncd.conf, in the order they first appear; Err says why the text
/// cannot be read safely (fail closed).
pub fn modules(text: &str) -> Result<Vec<Module>, String> {
    parse(text.as_bytes())
}

/// Does every module state `req` itself? Err holds one message per unmet requirement per
/// module (or the one reason the file cannot be verified). Nothing required: Ok.
pub fn verify(text: &str, req: &Requirements) -> Result<(), Vec<String>> {
    if !req.any() {
        return Ok(());
    }
    let modules = modules(text).map_err(|e| vec![e])?;
    let problems: Vec<String> = modules.iter().flat_map(|m| judge(m, req)).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// [`verify`] on a file (see [`read_config`]); every message starts with the path.
pub fn verify_file(path: &Path, req: &Requirements) -> Result<(), Vec<String>> {
    if !req.any() {
        return Ok(());
    }
    let text = read_config(path).map_err(|e| vec![e])?;
    verify(&text, req).map_err(|msgs| {
        msgs.into_iter()
            .map(|m| format!("{}: {m}", path.display()))
            .collect()
    })
}

/// Read an rsyncd.conf: a regular file (not followed through a symlink, no blocking on a
/// FIFO) of at most [`MAX_CONFIG_BYTES`]. Bytes that are not UTF-8 become U+FFFD, which
/// changes no delimiter rsync looks at (rshell runs rsync in the C locale).
pub fn read_config(path: &Path) -> Result<String, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!("{} is a symbolic link", path.display()),
            _ => format!("{}: cannot open: {e}", path.display()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: cannot stat: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} is larger than 1 MiB: rshell cannot verify it",
            path.display()
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

// ---------------------------------------------------------------------------------------
// Judging one module.

/// Options that can remove an existing file on the daemon's side, in rsync's table order.
const REMOVERS: &[(&str, Option<u8>)] = &[
    ("del", None),
    ("delete", None),
    ("delete-before", None),
    ("delete-during", None),
    ("delete-delay", None),
    ("delete-after", None),
    ("delete-excluded", None),
    ("delete-missing-args", None),
    ("remove-sent-files", None),
    ("remove-source-files", None),
    ("force", None),
    ("partial-dir", None),
    ("delay-updates", None),
    ("backup", Some(b'b')),
    ("backup-dir", None),
];

/// Those a refused `delete` refuses too (options.c: `refused_delete` is checked whenever
/// a delete mode or `--delete-missing-args` is on, and for `--remove-source-files` when
/// the daemon sends).
const IMPLIED_BY_DELETE: &[&str] = &[
    "del",
    "delete-before",
    "delete-during",
    "delete-delay",
    "delete-after",
    "delete-excluded",
    "delete-missing-args",
    "remove-sent-files",
    "remove-source-files",
];

/// Exact terms name a capability, not a spelling (options.c same_refuse_action): `del`
/// and `delete-during` both set delete_during = 1.
const ALIASES: &[(&str, &str)] = &[("del", "delete-during"), ("delete-during", "del")];

/// The suggestion for a module whose refusals miss something.
const SUGGESTED: &[&str] = &[
    "delete",
    "force",
    "partial-dir",
    "delay-updates",
    "backup",
    "backup-dir",
];

fn judge(m: &Module, req: &Requirements) -> Vec<String> {
    let mut out = Vec::new();
    let head = format!("module [{}]", m.name);
    let read_only = read_only_problem(m);
    if req.read_only {
        if let Some(why) = &read_only {
            out.push(format!("{head}: access is read-only but {why}"));
        }
    }
    if req.write_only && !m.write_only {
        out.push(format!(
            "{head}: access is write-only but the module does not say \"write only = yes\"{}",
            m.params.write_only.1.describe()
        ));
    }
    if req.no_delete {
        if let Some(why) = &read_only {
            match unrefused_removers(m) {
                Ok(missing) if missing.is_empty() => {}
                Ok(missing) => {
                    let have = match &m.params.refuse_options {
                        (Some(_), origin) => format!("its \"refuse options\"{}", origin.describe()),
                        (None, _) => "it has no \"refuse options\"".to_string(),
                    };
                    let suggest: Vec<&str> = SUGGESTED
                        .iter()
                        .copied()
                        .filter(|s| {
                            missing.contains(s)
                                || (*s == "delete"
                                    && missing.iter().any(|x| IMPLIED_BY_DELETE.contains(x)))
                        })
                        .collect();
                    out.push(format!(
                        "{head}: delete = false but {why}, and {have} does not refuse {} (each can remove files): make it read-only or add \"{}\" to the end of its \"refuse options\"",
                        missing.iter().map(|o| format!("--{o}")).collect::<Vec<_>>().join(", "),
                        suggest.join(" ")
                    ));
                }
                Err(e) => out.push(format!("{head}: delete = false but {why}, and {e}")),
            }
        }
    }
    if req.no_overwrite {
        if let Some(why) = &read_only {
            out.push(format!(
                "{head}: overwrite = false but {why}; rsyncd.conf cannot force --ignore-existing on a writable module, so only a read-only module keeps existing files"
            ));
        }
    }
    out
}

/// Why the module is not read-only for every user, or None when it is.
fn read_only_problem(m: &Module) -> Option<String> {
    if !m.read_only {
        return Some(format!(
            "the module does not say \"read only = yes\"{}",
            m.params.read_only.1.describe()
        ));
    }
    let users = m.auth_users.as_deref()?;
    if grants_rw(users) {
        return Some(format!(
            "its \"auth users\"{} grants \":rw\" to some users, which overrides \"read only = yes\"",
            m.params.auth_users.1.describe()
        ));
    }
    if users.contains('%') {
        return Some(format!(
            "its \"auth users\"{} uses %VAR% expansion: rshell cannot verify that no rule grants \":rw\"",
            m.params.auth_users.1.describe()
        ));
    }
    None
}

/// Does an `auth users` value hold a rule whose option is `rw`? (authenticate.c: the
/// option is what follows a rule's first ':'; "rw" in any case grants write access.)
/// Splitting on commas and whitespace finds every rule rsync can see, whichever of its
/// two splitting forms it uses.
fn grants_rw(users: &str) -> bool {
    users
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter_map(|rule| rule.split_once(':'))
        .any(|(_, opt)| {
            let b = opt.as_bytes();
            b.len() >= 2 && b[0].eq_ignore_ascii_case(&b'r') && b[1].eq_ignore_ascii_case(&b'w')
        })
}

/// The removing options this module's `refuse options` leaves usable.
fn unrefused_removers(m: &Module) -> Result<Vec<&'static str>, String> {
    let refuse = m.refuse_options.as_deref().unwrap_or("");
    if refuse.contains('%') {
        return Err(format!(
            "its \"refuse options\"{} uses %VAR% expansion: rshell cannot verify it",
            m.params.refuse_options.1.describe()
        ));
    }
    let refused = refusals(refuse);
    let is = |name: &str| {
        REMOVERS
            .iter()
            .position(|(n, _)| *n == name)
            .is_some_and(|i| refused[i])
    };
    let delete = is("delete");
    // options.c: a bare --delete or --delete-excluded must choose before or during; with
    // both refused it is refused.
    let when_refused = is("delete-before") && is("delete-during");
    Ok(REMOVERS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            let covered = is(name)
                || (delete && IMPLIED_BY_DELETE.contains(name))
                || (when_refused && matches!(*name, "delete" | "delete-excluded"));
            !covered
        })
        .collect())
}

/// Which of [`REMOVERS`] a `refuse options` value refuses, term by term as options.c
/// set_refuse_options does (terms split on spaces only; later terms win).
fn refusals(value: &str) -> Vec<bool> {
    let mut refused = vec![false; REMOVERS.len()];
    for term in value.split(' ').filter(|t| !t.is_empty()) {
        let negated = term.starts_with('!');
        let pattern = if negated && term.len() > 1 {
            &term[1..]
        } else {
            term
        };
        // Refusing "a"/"archive" means its implied short options, none of which removes.
        let (pattern, wild) = if pattern == "a" || pattern == "archive" {
            ("[ardlptgoD]", true)
        } else {
            (pattern, pattern.contains(['*', '?', '[']))
        };
        let matches = |(long, short): &(&str, Option<u8>)| {
            wildmatch(pattern.as_bytes(), long.as_bytes())
                || short.is_some_and(|s| wildmatch(pattern.as_bytes(), &[s]))
        };
        if wild {
            for (i, opt) in REMOVERS.iter().enumerate() {
                if matches(opt) {
                    refused[i] = !negated;
                }
            }
        } else if let Some(i) = REMOVERS.iter().position(matches) {
            refused[i] = !negated;
            for (a, b) in ALIASES {
                if *a == REMOVERS[i].0 {
                    if let Some(j) = REMOVERS.iter().position(|(n, _)| n == b) {
                        refused[j] = !negated;
                    }
                }
            }
        }
    }
    refused
}

// ---------------------------------------------------------------------------------------
// rsync's wildmatch (lib/wildmatch.c), case-sensitive, for one text.

const W_FALSE: i8 = 0;
const W_TRUE: i8 = 1;
const W_ABORT_ALL: i8 = -1;
const W_ABORT_TO_STARSTAR: i8 = -2;

fn wildmatch(pattern: &[u8], text: &[u8]) -> bool {
    dowild(pattern, text) == W_TRUE
}

fn c_isspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn dowild(p: &[u8], text: &[u8]) -> i8 {
    let pat = |i: usize| p.get(i).copied().unwrap_or(0);
    let txt = |i: usize| text.get(i).copied().unwrap_or(0);
    let (mut pi, mut ti) = (0usize, 0usize);
    while pat(pi) != 0 {
        let mut p_ch = pat(pi);
        let t_ch = txt(ti);
        if t_ch == 0 && p_ch != b'*' {
            return W_ABORT_ALL;
        }
        match p_ch {
            b'?' => {
                if t_ch == b'/' {
                    return W_FALSE;
                }
            }
            b'*' => {
                pi += 1;
                let special = pat(pi) == b'*';
                while pat(pi) == b'*' {
                    pi += 1;
                }
                if pat(pi) == 0 {
                    // Trailing "**" matches everything, "*" anything without a slash.
                    return if !special && text[ti..].contains(&b'/') {
                        W_FALSE
                    } else {
                        W_TRUE
                    };
                }
                while txt(ti) != 0 {
                    let matched = dowild(&p[pi..], &text[ti..]);
                    if matched != W_FALSE {
                        if !special || matched != W_ABORT_TO_STARSTAR {
                            return matched;
                        }
                    } else if !special && txt(ti) == b'/' {
                        return W_ABORT_TO_STARSTAR;
                    }
                    ti += 1;
                }
                return W_ABORT_ALL;
            }
            b'[' => {
                pi += 1;
                p_ch = pat(pi);
                if p_ch == b'^' {
                    p_ch = b'!';
                }
                let special = p_ch == b'!';
                if special {
                    pi += 1;
                    p_ch = pat(pi);
                }
                let mut prev_ch = 0u8;
                let mut matched = false;
                loop {
                    if p_ch == 0 {
                        return W_ABORT_ALL;
                    }
                    if p_ch == b'\\' {
                        pi += 1;
                        p_ch = pat(pi);
                        if p_ch == 0 {
                            return W_ABORT_ALL;
                        }
                        matched |= t_ch == p_ch;
                    } else if p_ch == b'-'
                        && prev_ch != 0
                        && pat(pi + 1) != 0
                        && pat(pi + 1) != b']'
                    {
                        pi += 1;
                        p_ch = pat(pi);
                        if p_ch == b'\\' {
                            pi += 1;
                            p_ch = pat(pi);
                            if p_ch == 0 {
                                return W_ABORT_ALL;
                            }
                        }
                        matched |= t_ch <= p_ch && t_ch >= prev_ch;
                        p_ch = 0;
                    } else if p_ch == b'[' && pat(pi + 1) == b':' {
                        pi += 2;
                        let s = pi;
                        while pat(pi) != 0 && pat(pi) != b']' {
                            pi += 1;
                        }
                        if pat(pi) == 0 {
                            return W_ABORT_ALL;
                        }
                        if pi < s + 1 || p[pi - 1] != b':' {
                            // No ":]": a literal '[' in the set.
                            pi = s - 2;
                            p_ch = b'[';
                            matched |= t_ch == p_ch;
                        } else {
                            let c = t_ch;
                            let hit = match &p[s..pi - 1] {
                                b"alnum" => c.is_ascii_alphanumeric(),
                                b"alpha" => c.is_ascii_alphabetic(),
                                b"blank" => c == b' ' || c == b'\t',
                                b"cntrl" => c.is_ascii_control(),
                                b"digit" => c.is_ascii_digit(),
                                b"graph" => c.is_ascii_graphic(),
                                b"lower" => c.is_ascii_lowercase(),
                                b"print" => c.is_ascii_graphic() || c == b' ',
                                b"punct" => c.is_ascii_punctuation(),
                                b"space" => c_isspace(c),
                                b"upper" => c.is_ascii_uppercase(),
                                b"xdigit" => c.is_ascii_hexdigit(),
                                _ => return W_ABORT_ALL,
                            };
                            matched |= hit;
                            p_ch = 0;
                        }
                    } else {
                        matched |= t_ch == p_ch;
                    }
                    prev_ch = p_ch;
                    pi += 1;
                    p_ch = pat(pi);
                    if p_ch == b']' {
                        break;
                    }
                }
                if matched == special || t_ch == b'/' {
                    return W_FALSE;
                }
            }
            b'\\' => {
                pi += 1;
                if t_ch != pat(pi) {
                    return W_FALSE;
                }
            }
            _ => {
                if t_ch != p_ch {
                    return W_FALSE;
                }
            }
        }
        pi += 1;
        ti += 1;
    }
    if txt(ti) != 0 {
        W_FALSE
    } else {
        W_TRUE
    }
}

// ---------------------------------------------------------------------------------------
// The reader: params.c's lexer, then loadparm.c's sections and parameters.

/// One item of the file, with the line it starts on.
enum Item {
    Section(Vec<u8>, usize),
    Parameter(Vec<u8>, Vec<u8>, usize),
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

/// Write `c` at `i`, growing the buffer (params.c writes into `bufr` by index).
fn put(buf: &mut Vec<u8>, i: usize, c: u8) {
    if buf.len() <= i {
        buf.resize(i + 1, 0);
    }
    buf[i] = c;
}

/// params.c Continuation(): the index of a trailing `\` before `i` (blanks skipped).
fn continuation(buf: &[u8], i: usize) -> Option<usize> {
    let mut pos = i;
    while pos > 0 && c_isspace(buf[pos - 1]) {
        pos -= 1;
    }
    (pos > 0 && buf[pos - 1] == b'\\').then(|| pos - 1)
}

impl Lexer<'_> {
    fn getc(&mut self) -> Option<u8> {
        let c = self.bytes.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
            if c == Some(b'\n') {
                self.line += 1;
            }
        }
        c
    }

    /// Skip blanks but not newlines.
    fn eat_whitespace(&mut self) -> Option<u8> {
        loop {
            match self.getc() {
                Some(c) if c_isspace(c) && c != b'\n' => continue,
                other => return other,
            }
        }
    }

    /// Skip to the end of the line (a comment does not continue).
    fn eat_comment(&mut self) {
        while !matches!(self.getc(), Some(b'\n') | None) {}
    }

    fn items(&mut self) -> Result<Vec<Item>, String> {
        let mut out = Vec::new();
        let mut c = self.eat_whitespace();
        while let Some(ch) = c {
            let line = self.line;
            match ch {
                b'\n' => c = self.eat_whitespace(),
                b';' | b'#' => {
                    self.eat_comment();
                    c = self.eat_whitespace();
                }
                b'[' => {
                    out.push(Item::Section(self.section(line)?, line));
                    c = self.eat_whitespace();
                }
                // params.c skips a stray backslash at the start of a line.
                b'\\' => c = self.eat_whitespace(),
                b'&' => return Err(self.directive(line)),
                _ => {
                    let (name, value) = self.parameter(ch, line)?;
                    out.push(Item::Parameter(name, value, line));
                    c = self.eat_whitespace();
                }
            }
        }
        Ok(out)
    }

    fn directive(&mut self, line: usize) -> String {
        let mut word = String::from("&");
        while let Some(c) = self.getc() {
            if c_isspace(c) || c == b'=' {
                break;
            }
            word.push(char::from(c));
        }
        let what = match word.to_ascii_lowercase().as_str() {
            "&include" => "includes other files with &include",
            "&merge" => "merges other files with &merge",
            _ => "has an unknown directive (rsync refuses the whole file)",
        };
        format!("line {line}: {what}: rshell cannot verify it")
    }

    /// After `[`: the module name up to `]`, whitespace runs as one space.
    fn section(&mut self, line: usize) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut c = self.eat_whitespace();
        loop {
            match c {
                None => {
                    return Err(format!(
                        "line {line}: a module header without ']' (rsync refuses the whole file)"
                    ))
                }
                Some(b']') => {
                    buf.truncate(end);
                    if end == 0 {
                        return Err(format!(
                            "line {line}: an empty module name (rsync refuses the whole file)"
                        ));
                    }
                    self.eat_comment();
                    return Ok(buf);
                }
                Some(b'\n') => {
                    let Some(at) = continuation(&buf, i) else {
                        return Err(format!(
                            "line {line}: a module header without ']' (rsync refuses the whole file)"
                        ));
                    };
                    i = at;
                    end = if i > 0 && buf[i - 1] == b' ' {
                        i - 1
                    } else {
                        i
                    };
                    c = self.getc();
                }
                Some(ch) if c_isspace(ch) => {
                    put(&mut buf, end, b' ');
                    i = end + 1;
                    c = self.eat_whitespace();
                }
                Some(ch) => {
                    put(&mut buf, i, ch);
                    i += 1;
                    end = i;
                    c = self.getc();
                }
            }
        }
    }

    /// A `name = value` line starting with `first`.
    fn parameter(&mut self, first: u8, line: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut buf = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut c = Some(first);
        loop {
            match c {
                Some(b'=') => {
                    if end == 0 {
                        return Err(format!(
                            "line {line}: a parameter without a name (rsync refuses the whole file)"
                        ));
                    }
                    break;
                }
                Some(b'\n') => {
                    let Some(at) = continuation(&buf, i) else {
                        return Err(self.no_equals(line, &buf[..end]));
                    };
                    i = at;
                    end = if i > 0 && buf[i - 1] == b' ' {
                        i - 1
                    } else {
                        i
                    };
                    c = self.getc();
                }
                None => return Err(self.no_equals(line, &buf[..end])),
                Some(ch) if c_isspace(ch) => {
                    put(&mut buf, end, b' ');
                    i = end + 1;
                    c = self.eat_whitespace();
                }
                Some(ch) => {
                    put(&mut buf, i, ch);
                    i += 1;
                    end = i;
                    c = self.getc();
                }
            }
        }
        let name = buf[..end].to_vec();
        // The value: blanks after '=' skipped, '\r' dropped, trailing blanks trimmed.
        let mut value: Vec<u8> = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut c = self.eat_whitespace();
        while let Some(ch) = c {
            match ch {
                b'\r' => c = self.getc(),
                b'\n' => match continuation(&value, i) {
                    Some(at) => {
                        i = at;
                        end = at;
                        c = self.getc();
                    }
                    None => break,
                },
                _ => {
                    put(&mut value, i, ch);
                    i += 1;
                    if !c_isspace(ch) {
                        end = i;
                    }
                    c = self.getc();
                }
            }
        }
        value.truncate(end);
        Ok((name, value))
    }

    fn no_equals(&self, line: usize, text: &[u8]) -> String {
        format!(
            "line {line}: \"{}\" is not \"name = value\" (rsync ignores the line): rshell cannot verify it",
            String::from_utf8_lossy(text)
        )
    }
}

/// loadparm.c strwiEQ: equal ignoring ASCII case and all whitespace.
fn strwi_eq(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.iter().filter(|c| !c_isspace(**c));
    let mut y = b.iter().filter(|c| !c_isspace(**c));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p.eq_ignore_ascii_case(q) => continue,
            _ => return false,
        }
    }
}

/// The parameters that matter, by rsync's public names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    ReadOnly,
    WriteOnly,
    RefuseOptions,
    AuthUsers,
    Path,
}

const KNOWN: &[(&str, Known)] = &[
    ("read only", Known::ReadOnly),
    ("write only", Known::WriteOnly),
    ("refuse options", Known::RefuseOptions),
    ("auth users", Known::AuthUsers),
    ("path", Known::Path),
];

/// rsync's booleans (loadparm.c set_boolean); Err for anything else or a %VAR%.
fn boolean(name: &str, value: &[u8], line: usize) -> Result<bool, String> {
    let shown = String::from_utf8_lossy(value);
    if value.contains(&b'%') {
        return Err(format!(
            "line {line}: \"{name} = {shown}\" uses %VAR% expansion: rshell cannot verify it"
        ));
    }
    if [&b"yes"[..], b"true", b"1"]
        .iter()
        .any(|t| strwi_eq(value, t))
    {
        Ok(true)
    } else if [&b"no"[..], b"false", b"0"]
        .iter()
        .any(|t| strwi_eq(value, t))
    {
        Ok(false)
    } else {
        Err(format!(
            "line {line}: \"{name} = {shown}\" is not a boolean rsync understands (yes/no, true/false, 1/0): rshell cannot verify it"
        ))
    }
}

fn parse(bytes: &[u8]) -> Result<Vec<Module>, String> {
    if let Some(at) = bytes.iter().position(|b| *b == 0) {
        let line = 1 + bytes[..at].iter().filter(|b| **b == b'\n').count();
        return Err(format!(
            "line {line}: a NUL byte (rsync stops reading there): rshell cannot verify it"
        ));
    }
    let items = Lexer {
        bytes,
        pos: 0,
        line: 1,
    }
    .items()?;
    let mut globals = Params::default();
    let mut modules: Vec<Module> = Vec::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<usize> = None;
    for item in items {
        match item {
            Item::Section(name, line) => {
                if strwi_eq(&name, b"global") {
                    current = None;
                    continue;
                }
                if name.contains(&b'/') {
                    return Err(format!(
                        "line {line}: module name [{}] contains '/' (rsync refuses the whole file)",
                        String::from_utf8_lossy(&name)
                    ));
                }
                // loadparm.c add_a_section: a name seen before continues that module.
                let index = match keys.iter().position(|k| strwi_eq(k, &name)) {
                    Some(i) => i,
                    None => {
                        keys.push(name.clone());
                        modules.push(Module {
                            name: String::from_utf8_lossy(&name).into_owned(),
                            line,
                            path: None,
                            read_only: false,
                            write_only: false,
                            refuse_options: None,
                            auth_users: None,
                            params: globals.clone(),
                        });
                        modules.len() - 1
                    }
                };
                current = Some(index);
            }
            Item::Parameter(name, value, line) => {
                // loadparm.c map_parameter: a leading '-' or an unknown name is ignored.
                if name.first() == Some(&b'-') {
                    continue;
                }
                let Some((label, known)) =
                    KNOWN.iter().find(|(l, _)| strwi_eq(l.as_bytes(), &name))
                else {
                    continue;
                };
                let global = current.is_none();
                let target = match current {
                    Some(i) => &mut modules[i].params,
                    None => &mut globals,
                };
                let origin = Origin::Line {
                    line,
                    global,
                    text: format!(
                        "{} = {}",
                        String::from_utf8_lossy(&name),
                        String::from_utf8_lossy(&value)
                    ),
                };
                let text = String::from_utf8_lossy(&value).into_owned();
                match known {
                    Known::ReadOnly => target.read_only = (boolean(label, &value, line)?, origin),
                    Known::WriteOnly => target.write_only = (boolean(label, &value, line)?, origin),
                    Known::RefuseOptions => target.refuse_options = (Some(text), origin),
                    Known::AuthUsers => target.auth_users = (Some(text), origin),
                    Known::Path => {
                        // loadparm.c P_PATH: trailing slashes go (but "/" stays).
                        let mut p = text.as_str();
                        while p.len() > 1 && p.ends_with('/') {
                            p = &p[..p.len() - 1];
                        }
                        target.path = Some(p.to_string());
                    }
                }
            }
        }
    }
    for m in &mut modules {
        m.path = m.params.path.clone();
        m.read_only = m.params.read_only.0;
        m.write_only = m.params.write_only.0;
        m.refuse_options = m.params.refuse_options.0.clone();
        m.auth_users = m.params.auth_users.0.clone();
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RO: Requirements = Requirements {
        read_only: true,
        write_only: false,
        no_delete: false,
        no_overwrite: false,
    };
    const WO: Requirements = Requirements {
        read_only: false,
        write_only: true,
        no_delete: false,
        no_overwrite: false,
    };
    const NO_DELETE: Requirements = Requirements {
        read_only: false,
        write_only: false,
        no_delete: true,
        no_overwrite: false,
    };
    const NO_OVERWRITE: Requirements = Requirements {
        read_only: false,
        write_only: false,
        no_delete: false,
        no_overwrite: true,
    };

    const FULL_REFUSE: &str = "delete force partial-dir delay-updates backup backup-dir";

    fn module(body: &str) -> String {
        format!("uid = nobody\n[backup]\npath = /srv/backup\n{body}\n")
    }

    #[test]
    fn rsyncd_verdict_table() {
        // (config, requirements, passes?)
        let table: &[(&str, Requirements, bool)] = &[
            // read only: explicit yes/no, rsync's default (yes), the other spellings.
            ("read only = yes", RO, true),
            ("read only = no", RO, false),
            ("", RO, true),
            ("read only = True", RO, true),
            ("read only = 1", RO, true),
            ("read only = FALSE", RO, false),
            ("read only = 0", RO, false),
            // write only: default no.
            ("write only = yes", WO, true),
            ("", WO, false),
            ("write only = no", WO, false),
            // delete: read-only suffices; otherwise the refusals decide.
            ("", NO_DELETE, true),
            ("read only = no", NO_DELETE, false),
            ("read only = no\nrefuse options = delete", NO_DELETE, false),
            (
                "read only = no\nrefuse options = delete force partial-dir delay-updates backup backup-dir",
                NO_DELETE,
                true,
            ),
            (
                "read only = no\nrefuse options = delete* force partial-dir delay-updates b backup-dir",
                NO_DELETE,
                true,
            ),
            ("read only = no\nrefuse options = *", NO_DELETE, true),
            ("read only = no\nrefuse options = * !a !v !compress*", NO_DELETE, true),
            // `delete-*` leaves --del (and --remove-source-files): rsync really deletes.
            (
                "read only = no\nrefuse options = delete-* force partial-dir delay-updates backup backup-dir",
                NO_DELETE,
                false,
            ),
            // ... unless --del and the remove options are refused too.
            (
                "read only = no\nrefuse options = delete-* del remove-source-files remove-sent-files force partial-dir delay-updates backup backup-dir",
                NO_DELETE,
                true,
            ),
            // A later negation un-refuses ...
            ("read only = no\nrefuse options = * !delete*", NO_DELETE, false),
            ("read only = no\nrefuse options = * !delete !delete-during", NO_DELETE, false),
            // ... but `!delete` alone leaves no way to delete: a bare --delete must pick
            // --delete-before or --delete-during, both still refused (options.c).
            ("read only = no\nrefuse options = * !delete", NO_DELETE, true),
            ("read only = no\nrefuse options = * !backup-dir", NO_DELETE, false),
            // Tabs do not separate terms in rsync.
            (
                "read only = no\nrefuse options = delete\tforce partial-dir delay-updates backup backup-dir",
                NO_DELETE,
                false,
            ),
            // auth users ":rw" overrides read only.
            ("auth users = alice:rw bob", RO, false),
            ("auth users = alice:RW", NO_DELETE, false),
            ("auth users = alice:ro, bob", RO, true),
            ("auth users = %RSYNC_USER_NAME%", RO, false),
            // overwrite: only read-only.
            ("", NO_OVERWRITE, true),
            ("read only = no\nrefuse options = *", NO_OVERWRITE, false),
        ];
        for (body, req, pass) in table {
            let text = module(body);
            let got = verify(&text, req);
            assert_eq!(got.is_ok(), *pass, "{body:?} {req:?}: {got:?}");
        }
    }

    #[test]
    fn rsyncd_messages_name_module_and_what_it_must_say() {
        let err = verify(&module("write only = no"), &WO).unwrap_err();
        assert_eq!(
            err,
            vec![
                "module [backup]: access is write-only but the module does not say \"write only = yes\" (line 4 says \"write only = no\")"
            ]
        );
        let err = verify(&module(""), &WO).unwrap_err();
        assert_eq!(
            err,
            vec!["module [backup]: access is write-only but the module does not say \"write only = yes\""]
        );
        let err = verify(&module("read only = no"), &NO_OVERWRITE).unwrap_err();
        assert!(err[0].contains("cannot force --ignore-existing"), "{err:?}");
        assert!(err[0].contains("read only = yes"), "{err:?}");
        let err = verify(
            &module("read only = no\nrefuse options = delete-*"),
            &NO_DELETE,
        )
        .unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        let e = &err[0];
        assert!(e.starts_with("module [backup]: delete = false"), "{e}");
        for missing in ["--del,", "--remove-source-files", "--force", "--backup-dir"] {
            assert!(e.contains(missing), "{missing} in {e}");
        }
        // With --delete-before and --delete-during refused, a bare --delete is refused too.
        assert!(
            !e.contains("--delete,") && !e.contains("--delete-after"),
            "{e}"
        );
        assert!(e.contains(&format!("add \"{FULL_REFUSE}\"")), "{e}");
        assert!(
            e.contains("line 5 says \"refuse options = delete-*\""),
            "{e}"
        );
    }

    #[test]
    fn rsyncd_one_message_per_requirement_per_module() {
        let text =
            "read only = no\n[a]\npath = /a\n[b]\npath = /b\n[c]\npath = /c\nread only = yes\n";
        let req = Requirements {
            read_only: true,
            write_only: true,
            no_delete: true,
            no_overwrite: true,
        };
        let err = verify(text, &req).unwrap_err();
        // a and b: all four; c: write only only.
        assert_eq!(err.len(), 9, "{err:#?}");
        assert_eq!(
            err.iter().filter(|e| e.starts_with("module [c]")).count(),
            1
        );
        assert!(
            err[0].contains("the global \"read only = no\" on line 1 applies"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn rsyncd_partial_refusal_lists_miss_one_variant() {
        let all = "delete force partial-dir delay-updates backup backup-dir";
        for drop in [
            "delete",
            "force",
            "partial-dir",
            "delay-updates",
            "backup",
            "backup-dir",
        ] {
            let list: Vec<&str> = all.split(' ').filter(|t| *t != drop).collect();
            let text = module(&format!(
                "read only = no\nrefuse options = {}",
                list.join(" ")
            ));
            let err = verify(&text, &NO_DELETE).unwrap_err();
            let named =
                err[0].contains(&format!("--{drop},")) || err[0].contains(&format!("--{drop} "));
            assert!(named, "{drop}: {err:?}");
        }
        // Every delete variant but one, without refusing `delete` itself. (Dropping `del`
        // is no gap: the exact `delete-during` refuses it too.)
        let variants = [
            "delete-before",
            "delete-during",
            "delete-delay",
            "delete-after",
            "delete-missing-args",
            "remove-source-files",
            "remove-sent-files",
        ];
        for drop in variants {
            let list: Vec<&str> = variants.iter().copied().filter(|t| *t != drop).collect();
            let text = module(&format!(
                "read only = no\nrefuse options = {} force partial-dir delay-updates backup backup-dir",
                list.join(" ")
            ));
            let err = verify(&text, &NO_DELETE).unwrap_err();
            let named =
                err[0].contains(&format!("--{drop},")) || err[0].contains(&format!("--{drop} "));
            assert!(named, "{drop}: {err:?}");
        }
        let text = module(&format!(
            "read only = no\nrefuse options = {} force partial-dir delay-updates backup backup-dir",
            variants.join(" ")
        ));
        assert!(verify(&text, &NO_DELETE).is_ok());
    }

    #[test]
    fn rsyncd_exact_term_refuses_alias() {
        // "delete-during" names the capability --del also reaches (options.c).
        let r = refusals("delete-during");
        let at = |n: &str| REMOVERS.iter().position(|(x, _)| *x == n).unwrap();
        assert!(r[at("del")] && r[at("delete-during")]);
        assert!(!r[at("delete-delay")]);
        let r = refusals("delete-during !del");
        assert!(!r[at("del")] && !r[at("delete-during")]);
        // A wildcard term does not propagate: `delete-dur*` leaves --del.
        let r = refusals("delete-dur*");
        assert!(!r[at("del")] && r[at("delete-during")]);
        let r = refusals("b");
        assert!(r[at("backup")] && !r[at("backup-dir")]);
    }

    #[test]
    fn rsyncd_globals_inherited_and_overridden() {
        let text = "read only = no\nwrite only = yes\n[a]\npath = /a\n[b]\npath = /b\nread only = yes\nwrite only = no\n[global]\nread only = yes\n[c]\npath = /c\n";
        let m = modules(text).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(!m[0].read_only && m[0].write_only);
        assert!(m[1].read_only && !m[1].write_only);
        // A [global] section after a module changes the defaults of later modules only.
        assert!(m[2].read_only && m[2].write_only);
        assert!(verify(text, &RO).is_err());
        // A module's own refuse options replaces the global one.
        let text = format!("read only = no\nrefuse options = {FULL_REFUSE}\n[a]\npath = /a\n[b]\npath = /b\nrefuse options = c\n");
        let err = verify(&text, &NO_DELETE).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].starts_with("module [b]"), "{err:?}");
    }

    #[test]
    fn rsyncd_name_matching_ignores_case_and_spaces_not_underscores() {
        for spelling in [
            "READ ONLY",
            "readonly",
            "Read  Only",
            " r e a d o n l y",
            "read only",
        ] {
            let m = modules(&format!("[m]\n{spelling} = no\n")).unwrap();
            assert!(!m[0].read_only, "{spelling}");
        }
        // rsync ignores unknown names: `read_only = no` leaves the default (yes).
        let m = modules("[m]\nread_only = no\nwrite-only = yes\n").unwrap();
        assert!(m[0].read_only && !m[0].write_only);
        // Module names match the same way: [Backup ] continues [backup].
        let m =
            modules("[backup]\npath = /x\n[ Back up ]\nread only = no\n[GLOBAL]\nread only = no\n")
                .unwrap();
        assert_eq!(m.len(), 1);
        assert!(!m[0].read_only);
        assert_eq!(m[0].path.as_deref(), Some("/x"));
    }

    #[test]
    fn rsyncd_lexer_comments_continuations_and_whitespace() {
        let text = "# comment\n  ; another = comment\n[  my   mod  ]  trailing ignored\n  path   =   /srv/a b/  \nread \\\n only = \\\n no\r\n";
        let m = modules(text).unwrap();
        assert_eq!(m[0].name, "my mod");
        assert_eq!(m[0].path.as_deref(), Some("/srv/a b"));
        assert!(!m[0].read_only);
        // A comment does not continue; '#' after text is part of the value.
        let m = modules("[m]\n# read only = no \\\nread only = yes\npath = /a#b\n").unwrap();
        assert!(m[0].read_only);
        assert_eq!(m[0].path.as_deref(), Some("/a#b"));
        assert_eq!(
            modules("[m]\npath = /\n").unwrap()[0].path.as_deref(),
            Some("/")
        );
    }

    #[test]
    fn rsyncd_fails_closed_on_what_it_cannot_see() {
        let cases = [
            (
                "&include /etc/rsyncd.d\n[m]\n",
                "includes other files with &include",
            ),
            (
                "[m]\n&merge /etc/rsyncd.d\n",
                "merges other files with &merge",
            ),
            ("[m]\n&Include=/x\n", "&include"),
            ("[m]\njust words\n", "is not \"name = value\""),
            ("[m\npath = /x\n", "without ']'"),
            ("[]\n", "empty module name"),
            ("[a/b]\n", "contains '/'"),
            ("[m]\nread only = maybe\n", "not a boolean"),
            ("[m]\nwrite only = %W%\n", "%VAR%"),
            ("[m]\n= x\n", "without a name"),
            ("[m]\npath = /x\0\n", "NUL"),
        ];
        for (text, why) in cases {
            let err = verify(text, &RO).unwrap_err();
            assert_eq!(err.len(), 1, "{text:?}: {err:?}");
            assert!(err[0].contains(why), "{text:?}: {err:?}");
            assert!(modules(text).is_err(), "{text:?}");
        }
        let err = verify("&include /etc/rsyncd.d\n", &WO).unwrap_err();
        assert_eq!(
            err,
            vec!["line 1: includes other files with &include: rshell cannot verify it"]
        );
        // %VAR% in refuse options cannot be relied on.
        let err = verify(&module("read only = no\nrefuse options = %R%"), &NO_DELETE).unwrap_err();
        assert!(err[0].contains("%VAR%"), "{err:?}");
    }

    #[test]
    fn rsyncd_empty_config_has_no_modules() {
        assert_eq!(modules("").unwrap(), vec![]);
        assert_eq!(modules("# nothing\nread only = no\n").unwrap(), vec![]);
        assert!(verify("", &RO).is_ok());
        // Nothing required: nothing is read.
        assert!(verify("&include /x\n", &Requirements::default()).is_ok());
    }

    #[test]
    fn rsyncd_wildmatch_follows_rsync() {
        let yes = [
            ("delete*", "delete-after"),
            ("delete*", "delete"),
            ("de?ete", "delete"),
            ("*", "backup-dir"),
            ("[bd]el", "del"),
            ("[!x]el", "del"),
            ("[^x]el", "del"),
            ("[a-e]el", "del"),
            ("[[:alpha:]]el", "del"),
            ("dele\\te", "delete"),
            ("*-dir", "partial-dir"),
            ("**", "delay-updates"),
        ];
        for (p, t) in yes {
            assert!(wildmatch(p.as_bytes(), t.as_bytes()), "{p} {t}");
        }
        let no = [
            ("delete-*", "delete"),
            ("delete-*", "del"),
            ("DELETE", "delete"),
            ("[!d]el", "del"),
            ("[[:digit:]]el", "del"),
            ("[[:bogus:]]el", "del"),
            ("[del", "del"),
            ("del?", "del"),
        ];
        for (p, t) in no {
            assert!(!wildmatch(p.as_bytes(), t.as_bytes()), "{p} {t}");
        }
    }

    #[test]
    fn rsyncd_verify_file_reads_regular_files_only() {
        let dir = std::env::temp_dir().join(format!("rshell-rsyncd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("rsyncd.conf");
        std::fs::write(&conf, "[m]\npath = /srv\nread only = no\n").unwrap();
        assert!(verify_file(&conf, &NO_OVERWRITE).is_err());
        let err = verify_file(&conf, &RO).unwrap_err();
        assert!(
            err[0].starts_with(&format!("{}: module [m]", conf.display())),
            "{err:?}"
        );
        std::fs::write(&conf, "[m]\npath = /srv\n").unwrap();
        assert!(verify_file(&conf, &RO).is_ok());
        let link = dir.join("link.conf");
        std::os::unix::fs::symlink(&conf, &link).unwrap();
        let err = verify_file(&link, &RO).unwrap_err();
        assert!(err[0].contains("symbolic link"), "{err:?}");
        let err = verify_file(&dir, &RO).unwrap_err();
        assert!(err[0].contains("not a regular file"), "{err:?}");
        let big = dir.join("big.conf");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES + 1]).unwrap();
        let err = verify_file(&big, &RO).unwrap_err();
        assert!(err[0].contains("larger than 1 MiB"), "{err:?}");
        let err = verify_file(&dir.join("missing"), &RO).unwrap_err();
        assert!(err[0].contains("cannot open"), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
