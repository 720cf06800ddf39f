//! The decision: a parsed request, the effective policy and the opened (and, for a real
//! run, already locked) root become a [`Verdict`] — a denial with its reason, or the exact
//! plan rshell would exec.
//!
//! Three rules shape it:
//! - **Promises are effects.** Each option's effect on existing files is a column of the
//!   option table ([`Class`]); [`refused_by_policy`] maps the account's promises
//!   (read-only, write-only, `delete = false`, `overwrite = false`) onto those effects,
//!   and [`forced_options`] adds what rsync must be told (`--ignore-existing`,
//!   `--whole-file`, ...), last, so the client cannot undo it.
//! - **Use what you checked.** Every path is resolved beneath the root descriptor and
//!   rsync is handed the resolved descriptor (`/proc/self/fd/N`), never a name to look up
//!   again; the working directory is the root descriptor itself.
//! - **Nothing about existing names on a write-only account**: path errors there are
//!   generic.
//! - **Bytes, not text.** A path is the client's bytes from the word to the argv (a
//!   Latin-1 name stays `caf\xe9`); messages and `--test` escape them, nothing converts.
//!
//! No writes and no exec here; the only file-system access is read-only resolution.
#![forbid(unsafe_code)]

pub mod resolve;

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::command::{show, show_quoted};
use crate::exec::confine::Ruleset;
use crate::policy::{self, Access, ConfineMode, Policy, Settings};
use crate::rsync::version;
use crate::rsync::{Class, Invocation, Opt, OptSpec, PathBase, ServerInvocation, Value};
use crate::system::{self, Account, LockKind};
use resolve::{Located, Pin, Prepare, Root};

/// Everything the decision needs, already typed.
#[derive(Debug)]
pub struct Request<'a> {
    pub account: &'a Account,
    pub client: Option<IpAddr>,
    pub invocation: &'a Invocation,
    pub policy: &'a Policy,
    /// The effective root, opened once (a nested key's narrowed root is opened beneath
    /// the configured one).
    pub root: &'a Root,
    /// Whether rsync will be guarded by Landlock (as far as it can be known before the
    /// child applies it) — decides what rshell may leave unseen.
    pub landlock_enforced: bool,
}

/// What would be exec'd, and how it is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    pub program: PathBuf,
    /// Exactly what rsync gets: bytes, as checked (a client's names need not be UTF-8).
    pub argv: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// rsync's working directory: the root descriptor itself (shown by its path).
    pub root: Root,
    pub umask: u32,
    /// The lock this session takes on the configured root (before resolving).
    pub lock: Option<LockKind>,
    /// The configured root whose descriptor carries that lock (set by the pipeline).
    pub locked: Option<Root>,
    /// Descriptors rsync inherits, named in `argv` as `/proc/self/fd/N`.
    pub pins: Vec<Pin>,
    pub confine: ConfineMode,
    pub ruleset: Ruleset,
    pub log_outcome: bool,
    /// End the session when no byte moved for this many seconds (0: never).
    pub timeout: u64,
    /// "push", "pull" or "daemon", for logs.
    pub kind: &'static str,
    /// The vetted paths, root-relative, for the log record (in full; the log escapes them).
    pub paths: Vec<Vec<u8>>,
}

impl ExecPlan {
    /// `argv` with every `/proc/self/fd/N` spelled as `<path>` (the root-relative path the
    /// pin stands for), as bytes: for `--test`, which quotes and escapes each word.
    pub fn shown_argv_bytes(&self) -> Vec<Vec<u8>> {
        self.argv
            .iter()
            .map(|word| {
                let w = word.as_bytes();
                for pin in &self.pins {
                    let prefix = pin.fd_path();
                    let Some(at) = find(w, prefix.as_bytes()) else {
                        continue;
                    };
                    let after = &w[at + prefix.len()..];
                    if after.is_empty() || after.starts_with(b"/") {
                        return [&w[..at], b"<", &pin.shown, b">", after].concat();
                    }
                }
                w.to_vec()
            })
            .collect()
    }

    /// [`ExecPlan::shown_argv_bytes`] as text for people and tests: UTF-8 words as they
    /// are, others with the log's escaping ([`crate::command::display`]).
    pub fn shown_argv(&self) -> Vec<String> {
        self.shown_argv_bytes()
            .iter()
            .map(|w| crate::command::display(w))
            .collect()
    }
}

/// The first position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split `hay` at the first `needle`: the parts before and after it.
fn split_once<'a>(hay: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    find(hay, needle).map(|at| (&hay[..at], &hay[at + needle.len()..]))
}

/// Split `hay` at the last `/`.
fn rsplit_slash(hay: &[u8]) -> Option<(&[u8], &[u8])> {
    hay.iter()
        .rposition(|&b| b == b'/')
        .map(|at| (&hay[..at], &hay[at + 1..]))
}

/// `hay` without its trailing `/`s.
fn trim_end_slashes(mut hay: &[u8]) -> &[u8] {
    while let Some(rest) = hay.strip_suffix(b"/") {
        hay = rest;
    }
    hay
}

/// The decision. Never a bool.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Box<ExecPlan>),
    Deny(String),
}

/// The fixed environment of the exec'd rsync: nothing from the client.
pub fn exec_env(account: &Account) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("USER".into(), account.name.clone()),
        ("LOGNAME".into(), account.name.clone()),
        ("LANG".into(), "C".into()),
        ("LC_ALL".into(), "C".into()),
    ]
}

/// Whether the request writes under root (a receiver, or a daemon that may write).
pub fn writes(invocation: &Invocation, settings: &Settings) -> bool {
    match invocation {
        Invocation::Daemon => settings.access != Access::ReadOnly,
        Invocation::Transfer(t) => !t.sender,
    }
}

/// The lock a session takes on the configured root before anything is resolved: writers
/// exclusive, readers shared, so no session of this root can swap a name between another
/// session's check and its rsync's use of it. `lock = false` is honoured only together
/// with `munge_links = true`: then nothing a transfer uploads can be followed as a
/// symlink, so concurrent sessions cannot redirect each other (rrsync's `-no-lock` has the
/// same premise).
pub fn lock_kind(invocation: &Invocation, settings: &Settings) -> Option<LockKind> {
    if !settings.lock && settings.munge_links {
        return None;
    }
    Some(if writes(invocation, settings) {
        LockKind::Exclusive
    } else {
        LockKind::Shared
    })
}

/// The direction the account's access allows: no upload to read-only, no download from
/// write-only. Needs no disk, so the pipeline asks it before taking the root lock too.
pub fn check_direction(s: &Settings, sender: bool) -> Result<(), String> {
    match (s.access, sender) {
        (Access::ReadOnly, false) => Err("this account is read-only: uploads are refused".into()),
        (Access::WriteOnly, true) => {
            Err("this account is write-only: downloads are refused".into())
        }
        _ => Ok(()),
    }
}

/// Decide one request.
pub fn decide(req: &Request) -> Verdict {
    match decide_inner(req) {
        Ok(plan) => Verdict::Allow(Box::new(plan)),
        Err(reason) => Verdict::Deny(reason),
    }
}

/// The client-address rule (`from`), checked before anything touches the disk.
pub fn check_from(settings: &Settings, client: Option<IpAddr>) -> Result<(), String> {
    if settings.from.is_empty() {
        return Ok(());
    }
    let client = client
        .ok_or("the policy limits client addresses (`from`) but SSH_CONNECTION gives none")?;
    if !settings.from.iter().any(|net| net.contains(client)) {
        return Err(format!(
            "client address {client} is not in `from` for this user"
        ));
    }
    Ok(())
}

fn decide_inner(req: &Request) -> Result<ExecPlan, String> {
    let s = &req.policy.settings;
    check_from(s, req.client)?;
    let root = req.root;
    let writes = writes(req.invocation, s);
    if writes && !s.dangerous_writable_home && holds_home(&root.path, &req.account.home) {
        return Err(format!(
            "root {} holds the home directory {}: write access there is refused (it could change ~/.ssh, ~/.pam_environment, shell start-up files); set dangerous_writable_home = true to allow",
            root.path.display(),
            req.account.home.display()
        ));
    }
    let program = PathBuf::from(&s.rsync);
    let mut plan = ExecPlan {
        program: program.clone(),
        argv: vec![OsString::from(&s.rsync), OsString::from("--server")],
        env: exec_env(req.account),
        root: root.clone(),
        umask: s.umask,
        lock: lock_kind(req.invocation, s),
        locked: None,
        pins: Vec::new(),
        confine: s.confine,
        ruleset: Ruleset::for_transfer(&root.path, s.access, &program, &[]),
        log_outcome: s.log_outcome,
        timeout: s.timeout,
        kind: "daemon",
        paths: Vec::new(),
    };
    match req.invocation {
        Invocation::Daemon => {
            if !s.daemon {
                return Err(
                    "rsync daemon over ssh is not enabled for this user (`daemon = true`)".into(),
                );
            }
            if s.daemon_config.is_empty() {
                return Err(
                    "daemon over ssh needs `daemon_config` (the administrator's rsyncd.conf)"
                        .into(),
                );
            }
            policy::check_trusted(Path::new(&s.daemon_config))
                .map_err(|e| format!("daemon_config {e}"))?;
            plan.ruleset = Ruleset::for_transfer(
                &root.path,
                s.access,
                &program,
                &[PathBuf::from(&s.daemon_config)],
            );
            plan.argv.extend([
                OsString::from("--daemon"),
                OsString::from(format!("--config={}", s.daemon_config)),
                OsString::from("."),
            ]);
            Ok(plan)
        }
        Invocation::Transfer(t) => {
            transfer(req, t, &mut plan)?;
            Ok(plan)
        }
    }
}

/// True if `root` is the home directory or one of its ancestors.
pub fn holds_home(root: &Path, home: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| policy::normalize(p));
    canon(home).starts_with(canon(root))
}

/// Every option occurrence of the request with its table row and value: bundle letters
/// and long options alike (a promise must not depend on how the client spelled it).
fn all_specs(t: &ServerInvocation) -> impl Iterator<Item = (&'static OptSpec, Option<&[u8]>)> + '_ {
    t.flags
        .iter()
        .filter_map(|&c| crate::rsync::short_flag_spec(c))
        .map(|spec| (spec, None))
        .chain(t.options.iter().map(|o| (o.spec, o.value.as_deref())))
}

/// The promise an option would break under these settings, if any (for a transfer in
/// the given direction). The reason names the option and the promise.
pub fn refused_by_policy(
    s: &Settings,
    sender: bool,
    spec: &OptSpec,
    value: Option<&[u8]>,
) -> Option<String> {
    let name = format!("--{}", spec.long);
    let why = match (spec.class, sender) {
        (Class::RemovesSources, true) if s.access == Access::ReadOnly => {
            "deletion is not allowed for this read-only account"
        }
        (Class::RemovesSources, true) if !s.delete => "deletion is not allowed for this account",
        (Class::Deletes, false) if !s.delete => "deletion is not allowed for this account",
        (Class::Deletes, false) if s.access == Access::WriteOnly => {
            "this account is write-only: deleting would report the names of existing files"
        }
        (Class::Unlinks, false) if !s.delete => {
            "rsync removes existing files it finds there, and deletion is not allowed for this account"
        }
        (Class::Unlinks, false) if !s.overwrite => {
            "rsync replaces existing files through it, and overwriting is not allowed for this account"
        }
        (Class::Backups, false) if !s.delete || !s.overwrite => {
            "a backup onto an existing name replaces that file, and this account may not remove or overwrite files"
        }
        (Class::RevealsContent, false) if s.access == Access::WriteOnly => {
            "this account is write-only: it would reveal the content of existing files"
        }
        (Class::DryRun, false) if s.access == Access::WriteOnly => {
            "this account is write-only: a dry run would report what exists"
        }
        // `-` is the client's own list, sent over the protocol: nothing is read here.
        (Class::ReadPath, _) if s.access == Access::WriteOnly && value != Some(b"-") => {
            "this account is write-only: the server would read a file"
        }
        _ => return None,
    };
    Some(format!("{name} is refused: {why}"))
}

/// Options rshell appends after the client's, so they win (popt: the last occurrence of
/// a value option counts), per the account's promises and rsync's safety options. The two
/// that only rsync 3.5.0 and newer know (`--drop-D`, `--confine-root`) are given only to an
/// rsync that has them (older ones stop at "unknown option"); [`transfer`] refuses what
/// their absence would leave unguarded.
pub fn forced_options(
    s: &Settings,
    sender: bool,
    root: &Root,
    rsync: &version::Features,
) -> Vec<OsString> {
    let mut forced: Vec<OsString> = Vec::new();
    if s.munge_links {
        forced.push("--munge-links".into());
    }
    if s.fake_super {
        forced.push("--fake-super".into());
    }
    if !sender {
        if rsync.drop_d {
            forced.push("--drop-D".into());
        }
        if !s.overwrite {
            forced.push("--ignore-existing".into());
            // rsync sets directory times by name after the transfer (touch_up_dirs), also
            // on a name --ignore-existing kept as a file: no directory times at all.
            forced.push("--omit-dir-times".into());
        }
        if s.access == Access::WriteOnly {
            // No block checksums of existing files go back to the client.
            forced.push("--whole-file".into());
        }
    }
    if s.confine_root && rsync.confine_root {
        // The root's own bytes (`display()` would replace what is not UTF-8).
        let mut word = OsString::from("--confine-root=");
        word.push(&root.path);
        forced.push(word);
    }
    forced
}

fn transfer(req: &Request, t: &ServerInvocation, plan: &mut ExecPlan) -> Result<(), String> {
    let s = &req.policy.settings;
    let root = req.root;
    plan.kind = if t.sender { "pull" } else { "push" };
    check_direction(s, t.sender)?;
    for (spec, value) in all_specs(t) {
        if let Some(reason) = refused_by_policy(s, t.sender, spec, value) {
            return Err(reason);
        }
    }
    let rsync = version::features(Path::new(&s.rsync));
    if s.confine_root && !rsync.confine_root && !req.landlock_enforced {
        // rsync reads per-directory filter merge files named by the client over the
        // protocol (a `dir-merge` rule), on the sender and, for deletions, the receiver:
        // rshell never sees them. --confine-root (3.5.0) or Landlock keeps those opens
        // inside the root; `confine_root = false` is the administrator accepting the gap.
        return Err(format!(
            "{} is older than 3.5.0 (no --confine-root) and Landlock is not enforced here: filter merge files named by the client could be read outside the root; install rsync 3.5.0 or newer, run on a kernel with Landlock (confine = \"auto\" or \"require\"), or set confine_root = false",
            s.rsync
        ));
    }
    let guarded = req.landlock_enforced || (s.confine_root && rsync.confine_root);
    // A sender that reads a list of names from a server file (`Class::ReadPath`,
    // `--files-from`) opens each listed name itself: rshell never sees them.
    if t.sender && all_specs(t).any(|(spec, _)| spec.class == Class::ReadPath) && !guarded {
        return Err("--files-from on a download needs Landlock or --confine-root: the names come from a list rshell cannot vet".into());
    }
    if !t.sender
        && (!s.overwrite || all_specs(t).any(|(spec, _)| spec.class == Class::KeepsExisting))
        && !rsync.confine_root
        && !req.landlock_enforced
    {
        // rsync before 3.5.0 (3.2.7 with Debian's 3.4 security backports included) keeps an
        // existing destination entry under --ignore-existing even where the sender has a
        // directory and the entry is a symlink, then creates that directory's files through
        // it: outside the root. rsync 3.5.0's receiver does not follow it ("Too many levels
        // of symbolic links"); Landlock stops the writes. Neither here: refused.
        return Err(format!(
            "{} with {} (older than 3.5.0) and no Landlock: rsync would write through a symlink in the destination that stands where the client sends a directory; run on a kernel with Landlock (confine = \"auto\" or \"require\") or install rsync 3.5.0 or newer",
            if s.overwrite { "--ignore-existing" } else { "overwrite = false (rshell forces --ignore-existing)" },
            s.rsync
        ));
    }
    if !t.sender && !rsync.drop_d && req.account.uid == 0 && !s.fake_super && t.has_flag('D') {
        // Without --drop-D a receiver running as root creates the device nodes the client
        // lists (rsync: devices only when am_root; mknod(2) needs CAP_MKNOD, which uid 0
        // has). Any other uid cannot (EPERM), and --fake-super stores them as plain files.
        // `D` cannot be dropped from the argv alone: both ends encode rdev fields by it.
        return Err(format!(
            "-D/--devices is refused for this account (uid 0): {} is older than 3.5.0 (no --drop-D) and would create device files; send --no-D (rsync -a --no-D), or install rsync 3.5.0 or newer",
            s.rsync
        ));
    }
    let write_only = s.access == Access::WriteOnly;
    // On a write-only account no message may tell what exists under root.
    let hide = |e: String| {
        if write_only {
            "the destination is refused (details are not shown on a write-only account)".to_string()
        } else {
            e
        }
    };

    let mut exec_paths: Vec<Vec<u8>> = Vec::new();
    // One wildcard budget for the whole request (all words), with a wall-clock deadline.
    let mut budget = crate::command::glob::Budget::new(&crate::command::glob::Limits::DEFAULT);
    let base: (PathBuf, usize) = if t.sender {
        let relative = t.has_flag('R') && !t.has("no-relative");
        for word in &t.paths {
            let mapped = resolve::map_client_path(word, &root.path)?;
            for rel in resolve::expand(root, &mapped, &mut budget)? {
                let (exec, shown) = source_word(root, &mapped, &rel, relative, &mut plan.pins)?;
                exec_paths.push(exec);
                plan.paths.push(shown);
            }
        }
        (PathBuf::new(), 0)
    } else {
        let word = &t.paths[0];
        let mapped = resolve::map_client_path(word, &root.path).map_err(hide)?;
        if write_only && !mapped.active_glob.is_empty() {
            return Err(
                "wildcards in the destination are not allowed on a write-only account".into(),
            );
        }
        let rels = resolve::expand(root, &mapped, &mut budget).map_err(hide)?;
        let [dest] = rels.as_slice() else {
            return Err(
                "an upload takes exactly one destination, and the wildcard does not name exactly one"
                    .into(),
            );
        };
        let dir_like = dest.ends_with(b"/") || dest == b"." || t.has_flag('r') || t.has_flag('d');
        if write_only && !t.has("mkpath") {
            // rsync creates one missing level; deeper ones fail in rsync with a message
            // that differs from a name in the way: refuse both alike.
            let loc = resolve::locate(root, Path::new(""), 0, dest).map_err(hide)?;
            if loc.missing.len() > 1 {
                return Err(hide(String::new()));
            }
        }
        let d = dest_word(root, dest, dir_like, &mut plan.pins).map_err(hide)?;
        exec_paths.push(d.exec);
        plan.paths.push(d.shown);
        (d.base, d.created)
    };

    // A sender never uses receiver directories: they are dropped from its argv (rsync
    // would ignore them), so a pull that carries `--backup-dir ../old` is not refused.
    let mut kept = t.clone();
    kept.options.retain(|o| {
        !(t.sender
            && matches!(
                o.spec.value,
                Value::Path(PathBase::Destination | PathBase::EachFileDir)
            ))
    });
    // `--super` (BackupPC's restore sends it): see `Class::SuperUser`.
    if req.account.uid != 0 {
        kept.options.retain(|o| o.spec.class != Class::SuperUser);
    }
    let mut resolved = Vec::new();
    let mut protect = Vec::new();
    for opt in &kept.options {
        resolved.push(match opt.spec.value {
            Value::Path(kind) => {
                let pinned = plan.pins.len();
                let word = path_option(root, opt, kind, &base, &mut plan.pins).map_err(hide)?;
                if !t.sender && opt.spec.class == Class::Backups && plan.pins.len() > pinned {
                    let dir = &plan.pins[pinned].shown;
                    protect.extend(protect_rule(base.0.as_os_str().as_bytes(), dir));
                }
                Some(word)
            }
            _ => None,
        });
    }
    let mut words: Vec<OsString> = kept
        .option_words(&resolved)
        .into_iter()
        .map(OsString::from_vec)
        .collect();

    let mut forced = forced_options(s, t.sender, root, &rsync);
    forced.extend(protect);
    words.retain(|w| !forced.contains(w));
    if t.sender {
        plan.argv.push("--sender".into());
    }
    plan.argv.extend(words);
    plan.argv.extend(forced);
    plan.argv.push("--".into());
    plan.argv.push(".".into());
    plan.argv
        .extend(exec_paths.into_iter().map(OsString::from_vec));
    Ok(())
}

/// A backup directory inside the destination is a name the sender does not have, so
/// rsync's `--delete` would remove it; rshell pins it (creating it when missing) before
/// rsync starts, and backups into a removed directory fail. Plain rsync gets away with
/// it only while the directory does not exist yet (it creates it by name when the first
/// backup is made); rshell keeps it with a protect rule instead: rsync's filter rules
/// anchor `/` at the transfer root (the destination), a trailing `/` matches directories
/// only, and a protect rule only ever prevents deletions. In a pattern with a wildcard
/// character, rsync's matcher takes a backslash as quoting the next character.
/// `None` when the directory is not beneath the destination.
pub fn protect_rule(dest: &[u8], dir: &[u8]) -> Option<OsString> {
    let dest = dest.strip_suffix(b"/").unwrap_or(dest);
    let rel = if dest.is_empty() || dest == b"." {
        dir
    } else {
        dir.strip_prefix(dest)?.strip_prefix(b"/")?
    };
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    if rel.is_empty() || rel == b"." || rel.starts_with(b"../") || rel == b".." {
        return None;
    }
    let wild = rel.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
    let mut rule = b"--filter=P /".to_vec();
    for &b in rel {
        if wild && matches!(b, b'*' | b'?' | b'[' | b'\\') {
            rule.push(b'\\');
        }
        rule.push(b);
    }
    rule.push(b'/');
    Some(OsString::from_vec(rule))
}

/// The root itself as rsync gets it, followed by `suffix`. rsync records its working
/// directory by name at start-up (getcwd) and goes back to it by that name for a `.`
/// destination and for `-R` sources, so the working directory alone does not pin the
/// root (a nested key's directory could be swapped by name); `/proc/self/fd/R` does.
fn root_word(root: &Root, pins: &mut Vec<Pin>, suffix: &[u8]) -> Vec<u8> {
    if !pins.iter().any(|p| std::sync::Arc::ptr_eq(&p.fd, &root.fd)) {
        pins.push(Pin {
            fd: root.fd.clone(),
            shown: b".".to_vec(),
            prepare: Prepare::Nothing,
        });
    }
    let fd = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&*root.fd)
    );
    [fd.as_bytes(), suffix].concat()
}

/// The word rsync gets for one pull source, and its root-relative spelling.
///
/// rsync names what it sends after the path it was given, so the pin depends on the
/// shape (as rrsync 3.5 does): a directory with a trailing `/` is pinned itself; any
/// other path keeps its last name beneath its pinned parent (rsync's sender does not
/// follow a symlink there). With `-R` the whole path after a `/./` marker is the name
/// sent: the part before the marker (the root, or the client's own anchor) is pinned and
/// the rest is walked by rsync beneath it, under the shared lock. Root's own absolute
/// spelling with `-R` is kept as text (those are the names the client asked for).
fn source_word(
    root: &Root,
    mapped: &resolve::Mapped,
    rel: &[u8],
    relative: bool,
    pins: &mut Vec<Pin>,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let full = resolve::locate(root, Path::new(""), 0, rel)?;
    let shown = full.shown();
    if relative {
        if mapped.root_spelling.is_some() {
            return Ok((mapped.exec_word(rel), shown));
        }
        let rel = rel.strip_prefix(b"./").unwrap_or(rel);
        if let Some((anchor, rest)) = split_once(rel, b"/./") {
            let dir = resolve::locate(root, Path::new(""), 0, anchor)?;
            if dir.missing.is_empty() && dir.kind == system::Kind::Directory {
                let dir_shown = dir.shown();
                let pin = Pin::new(dir.existing, dir_shown, Prepare::Nothing);
                let word = pin.word(&[&b"/./"[..], rest].concat());
                pins.push(pin);
                return Ok((word, shown));
            }
        }
        return Ok((root_word(root, pins, &[&b"/./"[..], rel].concat()), shown));
    }
    if rel == b"." || rel == b"./" {
        return Ok((
            root_word(root, pins, if rel == b"." { b"/." } else { b"/" }),
            shown,
        ));
    }
    let (trimmed, tail): (&[u8], &[u8]) = if let Some(t) = rel.strip_suffix(b"/.") {
        (trim_end_slashes(t), b"/.")
    } else if rel.ends_with(b"/") {
        (trim_end_slashes(rel), b"/")
    } else {
        (rel, b"")
    };
    let slash_rel = [&b"/"[..], rel].concat();
    if !tail.is_empty() {
        if full.missing.is_empty() && full.kind == system::Kind::Directory {
            let pin = Pin::new(full.existing, shown.clone(), Prepare::Nothing);
            let word = pin.word(tail);
            pins.push(pin);
            return Ok((word, shown));
        }
        // Missing or not a directory: rsync reports it; the checked name beneath the
        // pinned root is all it gets.
        return Ok((root_word(root, pins, &slash_rel), shown));
    }
    let (parent, leaf) = rsplit_slash(trimmed).unwrap_or((b"", trimmed));
    if parent.is_empty() {
        return Ok((root_word(root, pins, &[&b"/"[..], leaf].concat()), shown));
    }
    if leaf == b".." || leaf == b"." {
        return Ok((root_word(root, pins, &slash_rel), shown));
    }
    // The parent is resolved again to pin it: if it changed since, the refusal still
    // names the path the client asked for.
    let dir = resolve::locate(root, Path::new(""), 0, parent)
        .map_err(|e| e.replacen(&show_quoted(parent), &show_quoted(rel), 1))?;
    if !dir.missing.is_empty() || dir.kind != system::Kind::Directory {
        return Ok((root_word(root, pins, &slash_rel), shown));
    }
    Ok((
        dir_word(root, pins, dir, &[&b"/"[..], leaf].concat()),
        shown,
    ))
}

/// A push destination as rsync gets it, with the base of destination-relative options.
struct Dest {
    exec: Vec<u8>,
    shown: Vec<u8>,
    /// Root-relative directory that relative `--backup-dir`, basis and temp dirs start
    /// from, and how many of its last names rsync will create.
    base: PathBuf,
    created: usize,
}

fn dest_word(
    root: &Root,
    dest: &[u8],
    dir_like: bool,
    pins: &mut Vec<Pin>,
) -> Result<Dest, String> {
    let trailing: &[u8] = if dest.ends_with(b"/") { b"/" } else { b"" };
    let loc = resolve::locate(root, Path::new(""), 0, dest)?;
    let shown = loc.shown();
    if loc.missing.is_empty() && loc.kind == system::Kind::Directory {
        // An existing directory: the directory itself.
        let base = loc.existing_rel.clone();
        let exec = dir_word(
            root,
            pins,
            loc,
            if base.as_os_str().is_empty() {
                b"/"
            } else {
                trailing
            },
        );
        return Ok(Dest {
            exec,
            shown,
            base,
            created: 0,
        });
    }
    if loc.missing.is_empty() {
        // An existing file (or other non-directory): rsync replaces it by name in its
        // parent directory, which is then the base.
        let trimmed = trim_end_slashes(dest);
        let (parent, leaf) = rsplit_slash(trimmed).unwrap_or((b"", trimmed));
        let dir = resolve::locate(root, Path::new(""), 0, parent)?;
        if !dir.missing.is_empty() || dir.kind != system::Kind::Directory {
            return Err(format!(
                "{}: its directory does not exist",
                show_quoted(dest)
            ));
        }
        let base = dir.existing_rel.clone();
        let exec = dir_word(root, pins, dir, &[&b"/"[..], leaf].concat());
        return Ok(Dest {
            exec,
            shown,
            base,
            created: 0,
        });
    }
    // Missing names beneath an existing directory: rsync creates them.
    let tail = [&resolve::suffix(&loc.missing)[..], trailing].concat();
    let mut base = loc.existing_rel.clone();
    let created = if dir_like {
        base.extend(&loc.missing);
        loc.missing.len()
    } else {
        base.extend(&loc.missing[..loc.missing.len() - 1]);
        loc.missing.len() - 1
    };
    let exec = dir_word(root, pins, loc, &tail);
    Ok(Dest {
        exec,
        shown,
        base,
        created,
    })
}

/// An existing directory, pinned, followed by `suffix`, as rsync gets it (the root
/// itself through its own descriptor).
fn dir_word(root: &Root, pins: &mut Vec<Pin>, dir: Located, suffix: &[u8]) -> Vec<u8> {
    if dir.existing_rel.as_os_str().is_empty() {
        return root_word(root, pins, suffix);
    }
    let shown = dir.existing_rel.as_os_str().as_bytes().to_vec();
    let pin = Pin::new(dir.existing, shown, Prepare::Nothing);
    let word = pin.word(suffix);
    pins.push(pin);
    word
}

/// Check one path-valued option and return the value rsync gets.
///
/// Relative values start where rsync starts them (the destination directory for basis,
/// backup and temp dirs; each file's directory for `--partial-dir`; root for
/// `--files-from`); a leading `/` or `~` means root. The result is pinned, so rsync uses
/// the directory that was checked. A missing `--backup-dir` (or root-anchored
/// `--partial-dir`) is created at exec time beneath its pinned parent, a missing basis
/// directory becomes an empty unnamed directory: the transfer can then not plant a
/// symlink at that name first.
fn path_option(
    root: &Root,
    opt: &Opt,
    kind: PathBase,
    base: &(PathBuf, usize),
    pins: &mut Vec<Pin>,
) -> Result<Vec<u8>, String> {
    let name = opt.spec.long;
    let value = opt.value.as_deref().unwrap_or_default();
    let err = |e: String| format!("--{name}: {e}");
    if kind == PathBase::Start && value == b"-" {
        return Ok(value.to_vec());
    }
    let tilde = value == b"~" || value.starts_with(b"~/");
    if value.starts_with(b"~") && !tilde {
        return Err(format!(
            "--{name}={}: `~user` paths are not allowed",
            show(value)
        ));
    }
    let anchored = value.starts_with(b"/") || tilde;
    if kind == PathBase::EachFileDir && !anchored {
        resolve::plain_name(value).map_err(err)?;
        return Ok(value.to_vec());
    }
    let word = crate::command::Word {
        text: value.to_vec(),
        position: 0,
        active_glob: Vec::new(),
        tilde,
    };
    let mapped = resolve::map_client_path(&word, &root.path).map_err(err)?;
    let loc: Located = if anchored || kind == PathBase::Start {
        resolve::locate(root, Path::new(""), 0, &mapped.rel)
    } else {
        resolve::locate(root, &base.0, base.1, value)
    }
    .map_err(err)?;
    let shown = loc.shown();
    let quoted = show_quoted(&shown);
    let exists = loc.missing.is_empty();
    let is_dir = loc.kind == system::Kind::Directory;
    let pin = match (name, exists) {
        ("files-from", true) if loc.kind == system::Kind::File => {
            Pin::new(loc.existing, shown, Prepare::Nothing)
        }
        ("files-from", _) => return Err(err(format!("{quoted} is not an existing file"))),
        (_, true) if !is_dir => return Err(err(format!("{quoted} is not a directory"))),
        (_, true) => Pin::new(loc.existing, shown, Prepare::Nothing),
        ("temp-dir", false) => {
            return Err(err(format!(
                "{quoted} does not exist (rsync needs an existing directory)"
            )))
        }
        ("backup-dir" | "partial-dir", false) => {
            let mode = if name == "partial-dir" { 0o700 } else { 0o777 };
            Pin::new(
                loc.existing,
                shown,
                Prepare::CreateDirs {
                    names: loc.missing,
                    mode,
                },
            )
        }
        ("compare-dest" | "copy-dest" | "link-dest", false) => {
            // Any descriptor reserves the number; the empty directory replaces it at exec.
            let reserve = system::dup(&root.fd).map_err(|e| err(e.desc().to_string()))?;
            Pin::new(reserve, shown, Prepare::EmptyDir)
        }
        _ => return Err(err(format!("{quoted} does not exist"))),
    };
    let word = pin.word(b"");
    pins.push(pin);
    Ok(word)
}

#[cfg(test)]
mod tests {
    use super::protect_rule;
    use rstest::rstest;

    #[rstest]
    #[case::inside(b"dest", b"dest/old", Some("--filter=P /old/"))]
    #[case::deeper(b"dest", b"dest/a/b", Some("--filter=P /a/b/"))]
    #[case::dest_is_root(b"", b"dest/old", Some("--filter=P /dest/old/"))]
    #[case::dest_is_dot(b".", b"old", Some("--filter=P /old/"))]
    #[case::beside(b"dest", b"old", None)]
    #[case::prefix_only(b"dest", b"destination/old", None)]
    #[case::the_dest_itself(b"dest", b"dest", None)]
    #[case::wildcard_quoted(b"dest", b"dest/o*l[d]\\x", Some("--filter=P /o\\*l\\[d]\\\\x/"))]
    #[case::backslash_alone_literal(b"dest", b"dest/a\\b", Some("--filter=P /a\\b/"))]
    #[case::latin1(b"dest", b"dest/caf\xe9", None)]
    fn a_backup_dir_inside_the_destination_gets_a_protect_rule(
        #[case] dest: &[u8],
        #[case] dir: &[u8],
        #[case] want: Option<&str>,
    ) {
        let got = protect_rule(dest, dir);
        if dir.is_ascii() {
            assert_eq!(got.as_deref().and_then(|w| w.to_str()), want);
        } else {
            // Bytes stay bytes.
            assert_eq!(
                std::os::unix::ffi::OsStrExt::as_bytes(got.unwrap().as_os_str()),
                b"--filter=P /caf\xe9/"
            );
        }
    }
}
