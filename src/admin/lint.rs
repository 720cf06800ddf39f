//! `rshell --check`: lint the configuration like `visudo -c`, and the
//! deployment around it. Exit 0 without errors (warnings allowed unless `--strict`),
//! 1 with errors, 78 when the config cannot be read.
//!
//! The deployment is read as it is: sshd's effective settings for each rshell account
//! (`sshd -T`, for loopback, a non-local address and each `from` network, on every port
//! it listens on), the AuthorizedKeysFile files sshd names (read bounded, never
//! following a final symlink), sshd's PAM stack, NSS, the log sockets and the rsync
//! package. Files users control are only read with [`trust::read_regular_capped`].
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::admin::sshd::{self, KeyLine, Logins, Password};
use crate::exec::confine;
use crate::policy::trust;
use crate::policy::{self, Access, Config, ConfigError, Layer};
use crate::rsync::daemon;
use crate::system::passwd::Entry;
use crate::{decide, system, EXIT_CONFIG};

/// What `rshell --check` looks at.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--config F` (default /etc/rshell.toml).
    pub config: Option<PathBuf>,
    /// `--strict`: warnings fail the check too.
    pub strict: bool,
    /// `--sshd-config F`: evaluate this sshd_config (`sshd -T -f F`), for a dedicated
    /// sshd; default: sshd's own.
    pub sshd_config: Option<PathBuf>,
    /// `--user U`: check only this account.
    pub user: Option<String>,
    /// Where sshd's PAM service file and its `@include`s live (default /etc/pam.d).
    pub pam_dir: Option<PathBuf>,
}

/// Largest authorized keys file read (OpenSSH reads line by line without a limit, but
/// a file that size is not a list of keys).
const MAX_KEYS_FILE: u64 = 1 << 20;
/// Largest system file read (/etc/shadow, nsswitch.conf, a PAM file).
const MAX_SYSTEM_FILE: u64 = 16 << 20;
/// Client addresses sshd is asked about besides loopback and the `from` networks:
/// TEST-NET-1 (RFC 5737) and the IPv6 documentation prefix (RFC 3849) stand for "any
/// other host" in `sshd -T -C addr=…`; nothing is contacted.
const NON_LOCAL_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NON_LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Server-side rsync flaws fixed in 3.4.0 (heap overflow, info leak, path escapes,
/// symlink race): a client with an account could reach them through rshell.
const RSYNC_CVES: [&str; 5] = [
    "CVE-2024-12084",
    "CVE-2024-12085",
    "CVE-2024-12086",
    "CVE-2024-12087",
    "CVE-2024-12088",
];
const PAM_DIR: &str = "/etc/pam.d";
const NSSWITCH: &str = "/etc/nsswitch.conf";
const SHADOW: &str = "/etc/shadow";
const LOG_SOCKETS: [&str; 2] = ["/dev/log", "/run/systemd/journal/socket"];

/// Findings, in the order found.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Findings {
    /// Add a warning once.
    fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }
}

/// `(major, minor, patch)` from `rsync --version`.
fn rsync_version(rsync: &Path) -> Option<(u32, u32, u32)> {
    let out = std::process::Command::new(rsync)
        .arg("--version")
        .env_clear()
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)?;
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    });
    Some((
        parts.next()?,
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ))
}

/// What a daemon_config must state itself for these settings: in daemon mode rsync obeys
/// only its rsyncd.conf, never rshell's `access`, `delete` or `overwrite`.
pub fn daemon_requirements(s: &policy::Settings) -> daemon::Requirements {
    daemon::Requirements {
        read_only: s.access == Access::ReadOnly,
        write_only: s.access == Access::WriteOnly,
        no_delete: !s.delete,
        no_overwrite: !s.overwrite,
    }
}

/// Findings for one account's daemon_config text: modules whose path lies outside root
/// (warnings) and restrictions of the policy that the modules do not state (errors).
pub fn daemon_findings(
    name: &str,
    s: &policy::Settings,
    root: &Path,
    text: &str,
    f: &mut Findings,
) {
    let conf = &s.daemon_config;
    match daemon::modules(text) {
        Ok(modules) => {
            for m in modules {
                let Some(path) = m.path else { continue };
                if !policy::normalize(Path::new(&path)).starts_with(root) {
                    f.warnings.push(format!(
                        "{name}: module [{}] of {conf} has path {path} outside root {}: Landlock will deny it",
                        m.name,
                        root.display()
                    ));
                }
            }
        }
        // With requirements, verify() below reports the same reason as an error.
        Err(_) if daemon_requirements(s).any() => {}
        Err(e) => f.warnings.push(format!(
            "{name}: daemon_config {conf}: cannot list its modules: {e}"
        )),
    }
    if let Err(problems) = daemon::verify(text, &daemon_requirements(s)) {
        for p in problems {
            f.errors.push(format!(
                "{name}: daemon_config {conf}: {p} (in daemon mode rsync obeys only its rsyncd.conf, not rshell's access/delete/overwrite)"
            ));
        }
    }
}

/// Lint `cfg` for the accounts it concerns.
pub fn lint(cfg: &Config) -> Findings {
    lint_with(cfg, &CheckOptions::default())
}

/// Lint `cfg` as `opts` say (`--user`, `--sshd-config`).
pub fn lint_with(cfg: &Config, opts: &CheckOptions) -> Findings {
    let mut f = Findings::default();
    let entries: Vec<Entry> = crate::system::passwd::entries()
        .into_iter()
        .filter(|e| opts.user.as_ref().is_none_or(|u| *u == e.name))
        .collect();
    let mut names: BTreeSet<String> = cfg.users.keys().cloned().collect();
    for e in entries.iter().filter(|e| crate::cli::is_rshell(&e.shell)) {
        names.insert(e.name.clone());
    }
    if let Some(u) = &opts.user {
        names = BTreeSet::from([u.clone()]);
    }
    let landlock = confine::probe();

    let layers: Vec<&Layer> = cfg
        .defaults
        .iter()
        .chain(cfg.users.values())
        .chain(cfg.groups.values())
        .collect();
    let mut rsyncs: BTreeSet<String> = layers.iter().filter_map(|l| l.rsync.clone()).collect();
    rsyncs.insert(policy::Settings::default().rsync);
    for rsync in &rsyncs {
        let path = Path::new(rsync);
        match rsync_version(path) {
            None => f.errors.push(format!(
                "rsync {rsync} cannot be run (missing or not executable)"
            )),
            Some(v) => {
                if v < (3, 5, 0) {
                    f.warnings.push(format!(
                        "rsync {rsync} is version {}.{}.{}: `confine_root` needs 3.5.0 or newer (--confine-root); set confine_root = false or upgrade; where Landlock is not enforced, rshell also refuses --files-from downloads and uploads with --ignore-existing or under overwrite = false",
                        v.0, v.1, v.2
                    ));
                }
                if let Some(w) = rsync_package_finding(rsync, v) {
                    f.warn(w);
                }
            }
        }
    }

    for name in &names {
        let account = match system::account_by_name(name) {
            Ok(Some(a)) => a,
            Ok(None) if cfg.users.contains_key(name) => {
                f.warnings.push(format!("[users.{name}]: no such account"));
                continue;
            }
            Ok(None) => {
                f.warnings.push(format!("{name}: no such account"));
                continue;
            }
            Err(e) => {
                f.warnings.push(format!("{name}: {e}"));
                continue;
            }
        };
        let policy = match cfg.policy_for(&account.name, &account.groups) {
            Ok(p) => p,
            Err(e) => {
                f.errors.push(e.to_string());
                continue;
            }
        };
        if !policy.configured {
            let shell = entries
                .iter()
                .find(|e| e.name == *name)
                .map(|e| e.shell.as_str());
            f.warnings.push(if shell.is_some_and(crate::cli::is_rshell) {
                format!("{name}: login shell is rshell but no section applies: every request is denied")
            } else {
                format!("{name}: no section applies: rshell denies every request of this account")
            });
            continue;
        }
        let s = &policy.settings;
        let root = policy::expand_root(&s.root, &account.name, &account.home);
        if s.access != Access::ReadOnly
            && !s.dangerous_writable_home
            && decide::holds_home(&root, &account.home)
        {
            f.errors.push(format!(
                "{name}: root {} holds the home directory {} with write access: set a root outside the home (or dangerous_writable_home = true, see rshell.toml(5))",
                root.display(),
                account.home.display()
            ));
        }
        if !root.is_dir() {
            f.warnings.push(format!(
                "{name}: root {} does not exist (requests will be denied)",
                root.display()
            ));
        } else {
            for control in [
                ".ssh",
                ".pam_environment",
                ".profile",
                ".bashrc",
                ".bash_profile",
                ".popt",
                "rsyncd.conf",
                ".forward",
            ] {
                let p = root.join(control);
                if p.exists() {
                    f.warnings.push(format!(
                        "{name}: root {} contains {control}",
                        root.display()
                    ));
                }
            }
        }
        if s.daemon {
            if s.daemon_config.is_empty() {
                f.errors
                    .push(format!("{name}: daemon = true needs daemon_config"));
            } else if let Err(e) = policy::check_trusted(Path::new(&s.daemon_config)) {
                f.errors.push(format!("{name}: daemon_config {e}"));
            } else {
                match daemon::read_config(Path::new(&s.daemon_config)) {
                    Ok(text) => daemon_findings(name, s, &root, &text, &mut f),
                    Err(e) if daemon_requirements(s).any() => {
                        f.errors.push(format!("{name}: daemon_config {e}"))
                    }
                    Err(e) => f.warnings.push(format!("{name}: daemon_config {e}")),
                }
            }
        }
        if !s.munge_links
            && s.confine != policy::ConfineMode::Off
            && landlock.as_ref().map_or(true, |abi| *abi < 2)
        {
            f.warnings.push(format!(
                "{name}: munge_links is off and this kernel cannot enforce Landlock ({}): symlink tricks are only stopped by path checks",
                landlock.as_ref().err().cloned().unwrap_or_else(|| "ABI < 2".into())
            ));
        }
        if !s.lock && !s.munge_links {
            // decide::lock_kind honours `lock = false` only with munged links: otherwise a
            // symlink one session uploads could redirect another session's transfer.
            f.warnings.push(format!(
                "{name}: lock = false is ignored without munge_links = true: rshell keeps locking the root; set munge_links = true as well, or drop lock = false"
            ));
        }
        if s.confine == policy::ConfineMode::Require && landlock.is_err() {
            f.errors.push(format!("{name}: confine = \"require\" but this kernel has no usable Landlock: every request will be refused"));
        }
    }

    // What sshd would do for these accounts: settings that undo rshell (issue 6).
    let ask_sshd = system::current_uid() == 0 && Path::new(sshd::SSHD).exists();
    let passwords = if ask_sshd {
        shadow_passwords(Path::new(SHADOW))
    } else {
        BTreeMap::new()
    };
    // Whether sshd uses PAM: `None` until an `sshd -T` answered.
    let mut use_pam: Option<bool> = None;
    for e in entries.iter().filter(|e| can_run_commands(&e.shell)) {
        let rshell_shell = crate::cli::is_rshell(&e.shell);
        let (base, base_error) = if ask_sshd {
            match sshd::query_with(&e.name, LOOPBACK_V4, None, opts.sshd_config.as_deref()) {
                Ok(out) => (Some(out), None),
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        // Without sshd's answer, its default AuthorizedKeysFile.
        let keys = read_keys(e, base.as_deref().unwrap_or(""));
        let forced = keys.keys.iter().find(|(_, k)| k.forces_rshell());
        if !rshell_shell {
            // A forced key under another login shell: sshd runs `SHELL -c COMMAND`, so
            // that shell (and its start-up files, ~/.ssh/rc) runs before rshell does.
            if let Some((file, k)) = forced {
                f.warnings.push(format!(
                    "{}: {file} has a forced rshell key (line {}) but the login shell is {}: sshd runs ~/.ssh/rc and the shell's start-up files first; use rshell as the login shell or set PermitUserRC no",
                    e.name, k.line, e.shell
                ));
            } else {
                continue;
            }
        }
        for w in &keys.unreadable {
            f.warn(format!(
                "{}: authorized keys file {w}; rshell --check cannot see its keys' options",
                e.name
            ));
        }
        if let Some(why) = base_error {
            f.warn(format!(
                "{}: cannot ask sshd for its effective settings: {why}",
                e.name
            ));
        }
        let Some(base) = base else { continue };
        let from = system::account_by_name(&e.name)
            .ok()
            .flatten()
            .and_then(|a| cfg.policy_for(&a.name, &a.groups).ok())
            .map(|p| p.settings.from)
            .unwrap_or_default();
        let password = passwords.get(&e.name).copied().unwrap_or(Password::Unknown);
        let seen = sshd_findings(e, &base, &from, password, opts, &mut f);
        use_pam = match (use_pam, seen) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (None, None) => None,
            _ => Some(false),
        };
    }

    // Machine-wide: what rshell and sshd trust besides the config.
    if use_pam != Some(false) {
        let dir = opts.pam_dir.as_deref().unwrap_or(Path::new(PAM_DIR));
        for w in pam_findings(dir, "sshd") {
            f.warn(w);
        }
    }
    if let Ok(text) = trust::read_regular_capped(Path::new(NSSWITCH), MAX_SYSTEM_FILE) {
        if let Some(w) = nsswitch_finding(&String::from_utf8_lossy(&text)) {
            f.warn(w);
        }
    }
    let sockets: Vec<&Path> = LOG_SOCKETS.iter().map(Path::new).collect();
    if let Some(w) = log_sink_finding(&sockets) {
        f.warn(w);
    }
    f
}

const LOOPBACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Can sshd run a command for this login shell? `nologin` and `false` refuse every
/// `-c`, so forced keys there do nothing.
fn can_run_commands(shell: &str) -> bool {
    let base = shell.rsplit('/').next().unwrap_or(shell);
    !matches!(base, "nologin" | "false")
}

/// The keys an account has in the files sshd reads for it (`sshd -T` output; empty:
/// OpenSSH's default AuthorizedKeysFile).
struct Keys {
    keys: Vec<(String, KeyLine)>,
    /// "PATH was not read: REASON" for files that exist but were not read.
    unreadable: Vec<String>,
    /// The subset of `unreadable` sshd would still use (a symlink, a big file): their
    /// keys' options are unknown.
    unknown: Vec<String>,
}

fn read_keys(e: &Entry, sshd_t_output: &str) -> Keys {
    let mut out = Keys {
        keys: Vec::new(),
        unreadable: Vec::new(),
        unknown: Vec::new(),
    };
    for file in sshd::authorized_keys_files(sshd_t_output, &e.name, e.uid, &e.home) {
        let path = match file {
            Ok(p) => p,
            Err(why) => {
                out.unreadable.push(why);
                continue;
            }
        };
        match trust::read_regular_capped(&path, MAX_KEYS_FILE) {
            Ok(bytes) => {
                let name = path.display().to_string();
                for k in sshd::authorized_keys(&String::from_utf8_lossy(&bytes)) {
                    out.keys.push((name.clone(), k));
                }
            }
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    || err.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(err) => {
                let not_regular = err.to_string().starts_with("is not a regular file");
                let why = match err.kind() {
                    io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                        format!("{} was not read: it {err}", path.display())
                    }
                    _ => format!("{} was not read: {err}", path.display()),
                };
                // sshd refuses a keys file that is not a regular file (auth2-pubkeyfile.c
                // auth_openfile), so its keys never log in; a symlink or a big file it
                // would use.
                if !not_regular {
                    out.unknown.push(why.clone());
                }
                out.unreadable.push(why);
            }
        }
    }
    out
}

/// The client addresses sshd is asked about for an account: loopback, a non-local
/// address, and the first address of each of the policy's `from` networks.
fn client_addresses(from: &[crate::policy::net::Cidr], v6: bool) -> Vec<IpAddr> {
    let mut addrs = vec![LOOPBACK_V4, IpAddr::V4(NON_LOCAL_V4)];
    if v6 {
        addrs.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        addrs.push(IpAddr::V6(NON_LOCAL_V6));
    }
    for cidr in from {
        // `Cidr` prints as `ADDR/PREFIX`, ADDR being the network's first address.
        let text = cidr.to_string();
        if let Some(Ok(a)) = text.split('/').next().map(str::parse::<IpAddr>) {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
    }
    addrs
}

/// The local ends a connection from `client` can arrive at: each listener of its
/// family, a wildcard one standing for loopback.
fn local_ends(client: IpAddr, listeners: &[(Option<IpAddr>, bool, u16)]) -> Vec<(IpAddr, u16)> {
    let loopback = |v6: bool| -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            LOOPBACK_V4
        }
    };
    let mut ends: Vec<(IpAddr, u16)> = listeners
        .iter()
        .filter(|(_, v6, _)| *v6 == client.is_ipv6())
        .map(|(ip, v6, port)| (ip.unwrap_or_else(|| loopback(*v6)), *port))
        .collect();
    if ends.is_empty() {
        // No listener of this family (or none reported): a dual-stack socket may still
        // take it; ask about the first port.
        let port = listeners.first().map_or(22, |l| l.2);
        ends.push((loopback(client.is_ipv6()), port));
    }
    ends.dedup();
    ends
}

/// sshd findings for one rshell account, over every client address and listener;
/// returns whether sshd uses PAM (`None` if no query answered).
fn sshd_findings(
    e: &Entry,
    base: &str,
    from: &[crate::policy::net::Cidr],
    password: Password,
    opts: &CheckOptions,
    f: &mut Findings,
) -> Option<bool> {
    let listeners = sshd::listeners(base);
    let v6 = listeners.iter().any(|l| l.1);
    let ports: BTreeSet<u16> = listeners.iter().map(|l| l.2).collect();
    let mut queried: Vec<String> = Vec::new();
    // finding → the connections it holds for, in query order.
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    let mut use_pam = None;
    let mut logins_by_files: BTreeMap<String, Logins> = BTreeMap::new();
    for addr in client_addresses(from, v6) {
        for (laddr, lport) in local_ends(addr, &listeners) {
            let label = if ports.len() > 1 {
                format!("{addr} to port {lport}")
            } else {
                addr.to_string()
            };
            let out = match sshd::query_with(
                &e.name,
                addr,
                Some((laddr, lport)),
                opts.sshd_config.as_deref(),
            ) {
                Ok(out) => out,
                Err(why) => {
                    f.warn(format!(
                        "{}: cannot ask sshd for its effective settings (connections from {label}): {why}",
                        e.name
                    ));
                    continue;
                }
            };
            queried.push(label.clone());
            let pam = sshd::setting(&out, "usepam").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
            use_pam = Some(use_pam.unwrap_or(false) || pam);
            let files = sshd::setting(&out, "authorizedkeysfile").unwrap_or_default();
            let logins = logins_by_files.entry(files).or_insert_with(|| {
                let keys = read_keys(e, &out);
                for w in &keys.unreadable {
                    f.warn(format!(
                        "{}: authorized keys file {w}; rshell --check cannot see its keys' options",
                        e.name
                    ));
                }
                Logins {
                    keys: keys.keys,
                    unreadable: keys.unknown,
                    password,
                }
            });
            for w in sshd::findings_with(&e.name, &out, Some(logins)) {
                match found.iter_mut().find(|(text, _)| *text == w) {
                    Some((_, labels)) => labels.push(label.clone()),
                    None => found.push((w, vec![label.clone()])),
                }
            }
        }
    }
    for (w, labels) in found {
        if labels.len() == queried.len() {
            f.warn(w);
        } else {
            // Only some connections get this: a Match Address/LocalPort block.
            f.warn(format!("{w} (for connections from {})", labels.join(", ")));
        }
    }
    use_pam
}

/// Account name → what its /etc/shadow password field allows.
fn shadow_passwords(path: &Path) -> BTreeMap<String, Password> {
    let Ok(bytes) = trust::read_regular_capped(path, MAX_SYSTEM_FILE) else {
        return BTreeMap::new();
    };
    parse_shadow(&String::from_utf8_lossy(&bytes))
}

fn parse_shadow(text: &str) -> BTreeMap<String, Password> {
    text.lines()
        .filter_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next().filter(|n| !n.is_empty())?;
            let hash = fields.next()?;
            let p = if hash.is_empty() {
                Password::Empty
            } else if hash.starts_with('!') || hash.starts_with('*') {
                Password::Locked
            } else {
                Password::Set
            };
            Some((name.to_string(), p))
        })
        .collect()
}

/// PAM lines of sshd's service (following `@include` and `include`/`substack`) that run
/// pam_env with `user_readenv=1`: each user's ~/.pam_environment then sets variables
/// in the session sshd starts rshell in.
pub fn pam_findings(pam_dir: &Path, service: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut visited = BTreeSet::new();
    pam_walk(pam_dir, service, 0, &mut visited, &mut out);
    out
}

fn pam_walk(
    dir: &Path,
    name: &str,
    depth: usize,
    visited: &mut BTreeSet<String>,
    out: &mut Vec<String>,
) {
    // Linux-PAM nests includes a few levels at most; a loop is cut here.
    if depth > 8 || (name.contains('/') && !name.starts_with('/')) || !visited.insert(name.into()) {
        return;
    }
    let path = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        dir.join(name)
    };
    let Ok(bytes) = trust::read_regular_capped(&path, MAX_SYSTEM_FILE) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    // A trailing backslash continues the line (pam.conf(5)).
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(raw);
                logical.push((start, acc));
            }
        }
    }
    if let Some(p) = pending {
        logical.push(p);
    }
    for (line_no, line) in logical {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(included) = line.strip_prefix("@include") {
            pam_walk(dir, included.trim(), depth + 1, visited, out);
            continue;
        }
        let mut words = line.split_whitespace();
        let _kind = words.next();
        let Some(mut control) = words.next().map(str::to_string) else {
            continue;
        };
        // A bracketed control (`[success=ok default=bad]`) holds blanks.
        if control.starts_with('[') {
            while !control.ends_with(']') {
                match words.next() {
                    Some(w) => {
                        control.push(' ');
                        control.push_str(w);
                    }
                    None => break,
                }
            }
        }
        let Some(module) = words.next() else { continue };
        if control == "include" || control == "substack" {
            pam_walk(dir, module, depth + 1, visited, out);
            continue;
        }
        let args: Vec<&str> = words.collect();
        if module.rsplit('/').next() == Some("pam_env.so") && args.contains(&"user_readenv=1") {
            out.push(format!(
                "PAM: {}:{line_no} runs pam_env.so with user_readenv=1 for sshd: each user's ~/.pam_environment then sets variables for the session rshell runs in, such as SSH_ORIGINAL_COMMAND and SSH_USER_AUTH; remove `user_readenv=1` from that line (Debian ships it in /etc/pam.d/sshd)",
                path.display()
            ));
        }
    }
}

/// nsswitch.conf's `passwd:` sources must start with `files`: sshd resolves accounts
/// through NSS, rshell reads /etc/passwd alone (`system::passwd`), and both must see the same
/// account.
pub fn nsswitch_finding(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find(|l| l.starts_with("passwd:"))?;
    let sources = line["passwd:".len()..].trim();
    let first = sources.split_whitespace().next()?;
    (first != "files").then(|| {
        format!(
            "/etc/nsswitch.conf: `passwd: {sources}` asks {first} before files: sshd (through NSS) can then see another account — uid, home, shell — than rshell, which reads only /etc/passwd; put `files` first"
        )
    })
}

/// rshell logs each decision to /dev/log or else the journal's socket (log.rs); with
/// neither, the records are lost (a request is never refused for want of a log).
pub fn log_sink_finding(sockets: &[&Path]) -> Option<String> {
    let present = sockets
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()));
    (!present).then(|| {
        format!(
            "no log sink: neither {} is a socket here, so rshell's records of allowed and refused requests go nowhere; run a syslog daemon or systemd-journald",
            sockets
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" nor ")
        )
    })
}

/// Run a fixed program with an empty environment; its stdout, at most `cap` bytes (more
/// is an error), within `timeout` (then it is killed).
fn run_bounded(
    program: &str,
    args: &[&str],
    cap: usize,
    timeout: Duration,
) -> Result<(ExitStatus, Vec<u8>), String> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let read = (&mut stdout).take(cap as u64 + 1).read_to_end(&mut bytes);
        // Dropping the pipe here makes a child that writes on get EPIPE and end.
        drop(stdout);
        read.map(|_| bytes)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {} s",
                    timeout.as_secs()
                ));
            }
            Err(e) => return Err(format!("{program}: {e}")),
        }
    };
    let bytes = reader
        .join()
        .map_err(|_| format!("{program}: reader failed"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if bytes.len() > cap {
        return Err(format!("{program} printed more than {cap} bytes"));
    }
    Ok((status, bytes))
}

/// `(major, minor, patch)` of a Debian version's upstream part: epoch and revision
/// dropped (`1:3.2.7-1+deb12u1` → 3.2.7, `3.5.0+ds1-0` → 3.5.0).
fn upstream_version(debian: &str) -> Option<(u32, u32, u32)> {
    let v = debian.split_once(':').map_or(debian, |(_, rest)| rest);
    let v = v.rsplit_once('-').map_or(v, |(up, _)| up);
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some((
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The warning for a packaged rsync older than 3.4.0 whose Debian changelog does not
/// list the 3.4.0 fixes (distributions backport them: Debian 12's 3.2.7-1+deb12u1 has
/// them all), or `None`.
pub fn rsync_cve_finding(
    rsync: &str,
    package: &str,
    version: &str,
    changelog: Option<&str>,
) -> Option<String> {
    if upstream_version(version)? >= (3, 4, 0) {
        return None;
    }
    let missing: Vec<&str> = RSYNC_CVES
        .iter()
        .copied()
        .filter(|cve| !changelog.is_some_and(|c| c.contains(cve)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let why = match changelog {
        None => "its changelog is not installed, so backported fixes cannot be seen".to_string(),
        Some(_) => format!("its changelog does not mention {}", missing.join(", ")),
    };
    Some(format!(
        "rsync {rsync} comes from package {package} {version}, older than 3.4.0, and {why}: a client could exploit the server-side flaws fixed in 3.4.0 (CVE-2024-12084..12088: heap overflow, memory leak, files outside the module) in the rsync that rshell starts; upgrade rsync"
    ))
}

/// [`rsync_cve_finding`] for the package (dpkg) that holds `rsync`; `None` when dpkg
/// does not know it. `v` is what `rsync --version` says, for an rsync no package holds.
fn rsync_package_finding(rsync: &str, v: (u32, u32, u32)) -> Option<String> {
    const DPKG: &str = "/usr/bin/dpkg";
    const DPKG_QUERY: &str = "/usr/bin/dpkg-query";
    const GZIP: &str = "/bin/gzip";
    let limit = Duration::from_secs(20);
    if !Path::new(DPKG).exists() {
        return None;
    }
    let (status, out) = run_bounded(DPKG, &["-S", "--", rsync], 64 << 10, limit).ok()?;
    if !status.success() {
        // dpkg knows no package with this file: built from source, no backports.
        return (v < (3, 4, 0)).then(|| {
            format!(
                "rsync {rsync} is version {}.{}.{}, older than 3.4.0, and no package holds it: a client could exploit the server-side flaws fixed in 3.4.0 (CVE-2024-12084..12088) in the rsync that rshell starts; upgrade rsync",
                v.0, v.1, v.2
            )
        });
    }
    // `rsync: /usr/bin/rsync`, or `pkg:arch: path`, or `a, b: path`.
    let text = String::from_utf8_lossy(&out);
    let line = text.lines().find(|l| l.ends_with(&format!(": {rsync}")))?;
    let package = line[..line.len() - rsync.len() - 2]
        .split(", ")
        .next()?
        .trim()
        .to_string();
    if package.is_empty() || package.starts_with('-') || package.contains(char::is_whitespace) {
        return None;
    }
    let format = "-f=${Version}";
    let (status, version) =
        run_bounded(DPKG_QUERY, &["-W", format, "--", &package], 4 << 10, limit).ok()?;
    let version = String::from_utf8_lossy(&version).trim().to_string();
    if !status.success() || version.is_empty() {
        return None;
    }
    if upstream_version(&version)? >= (3, 4, 0) {
        return None;
    }
    let name = package.split(':').next().unwrap_or(&package);
    let changelog_path = format!("/usr/share/doc/{name}/changelog.Debian.gz");
    let changelog = if Path::new(&changelog_path).is_file() {
        run_bounded(GZIP, &["-dc", "--", &changelog_path], 32 << 20, limit)
            .ok()
            .filter(|(status, _)| status.success())
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
    } else {
        None
    };
    rsync_cve_finding(rsync, &package, &version, changelog.as_deref())
}

/// The `--check` command.
pub fn check(config: Option<&Path>, strict: bool) -> i32 {
    check_with(&CheckOptions {
        config: config.map(Path::to_path_buf),
        strict,
        ..CheckOptions::default()
    })
}

/// The `--check` command with every option (`--sshd-config`, `--user`), on stdout.
pub fn check_with(opts: &CheckOptions) -> i32 {
    check_to(opts, &mut io::stdout().lock())
}

/// [`check_with`], writing the report to `out`.
pub fn check_to(opts: &CheckOptions, out: &mut dyn Write) -> i32 {
    let path = opts
        .config
        .as_deref()
        .unwrap_or(Path::new(policy::DEFAULT_CONFIG));
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e @ (ConfigError::Missing(_) | ConfigError::Unreadable(..))) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_CONFIG;
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            let _ = writeln!(out, "rshell --check: 1 error, 0 warnings");
            return 1;
        }
    };
    let f = lint_with(&cfg, opts);
    for e in &f.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for w in &f.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "rshell --check: {} {}: {} error(s), {} warning(s)",
        path.display(),
        if f.errors.is_empty() { "ok" } else { "FAILED" },
        f.errors.len(),
        f.warnings.len()
    );
    if !f.errors.is_empty() || (opts.strict && !f.warnings.is_empty()) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(access: Access, delete: bool, overwrite: bool) -> policy::Settings {
        policy::Settings {
            access,
            delete,
            overwrite,
            daemon: true,
            daemon_config: "/etc/rsyncd.conf".into(),
            ..policy::Settings::default()
        }
    }

    #[test]
    fn lint_daemon_with_narrower_policy_needs_the_modules_to_say_it() {
        let root = Path::new("/srv/backup");
        let conf = "[backup]\npath = /srv/backup/a\nread only = no\n[other]\npath = /elsewhere\nread only = no\nwrite only = yes\nrefuse options = delete force partial-dir delay-updates backup backup-dir\n";
        let mut f = Findings::default();
        daemon_findings(
            "alice",
            &daemon(Access::WriteOnly, false, true),
            root,
            conf,
            &mut f,
        );
        assert_eq!(f.errors.len(), 2, "{f:#?}");
        assert!(f.errors[0].starts_with("alice: daemon_config /etc/rsyncd.conf: module [backup]: access is write-only but the module does not say \"write only = yes\""), "{f:#?}");
        assert!(
            f.errors[1].contains("module [backup]: delete = false"),
            "{f:#?}"
        );
        assert_eq!(f.warnings.len(), 1, "{f:#?}");
        assert!(
            f.warnings[0]
                .contains("module [other] of /etc/rsyncd.conf has path /elsewhere outside root"),
            "{f:#?}"
        );

        // The policy's defaults ask nothing of the modules; read-only modules satisfy
        // read-only access, no deletes and no overwrites.
        for (s, text, errors) in [
            (daemon(Access::ReadWrite, true, true), conf, 0),
            (
                daemon(Access::ReadOnly, false, false),
                "[m]\npath = /srv/backup\n",
                0,
            ),
            (
                daemon(Access::ReadOnly, true, true),
                "[m]\npath = /srv/backup\nread only = false\n",
                1,
            ),
            (
                daemon(Access::ReadWrite, true, false),
                "[m]\npath = /srv/backup\nread only = no\n",
                1,
            ),
            (
                daemon(Access::ReadWrite, false, true),
                "&include /etc/rsyncd.d\n",
                1,
            ),
        ] {
            let mut f = Findings::default();
            daemon_findings("alice", &s, root, text, &mut f);
            assert_eq!(f.errors.len(), errors, "{text:?}: {f:#?}");
        }
    }

    /// A scratch directory under the system temp dir (these tests trust nothing in it).
    fn scratch(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rshell-lint-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn pam_env_with_user_readenv_is_found_through_every_include_form() {
        let dir = scratch("pam");
        std::fs::write(
            dir.join("sshd"),
            "#%PAM-1.0\n@include common-auth\nauth   substack   sub\nsession [success=ok ignore=ignore default=bad] pam_selinux.so open\nsession required pam_env.so # user_readenv=1 only in a comment\n@include sshd\n",
        )
        .unwrap();
        std::fs::write(dir.join("common-auth"), "auth required pam_unix.so\n").unwrap();
        std::fs::write(
            dir.join("sub"),
            "session include deeper\n-session optional /lib/x86_64-linux-gnu/security/pam_env.so \\\n    user_readenv=1\n",
        )
        .unwrap();
        std::fs::write(dir.join("deeper"), "session required pam_env.so user_readenv=0 envfile=/etc/default/locale\nsession required pam_env.so user_readenv=1\n").unwrap();
        let found = pam_findings(&dir, "sshd");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with(&format!(
                "PAM: {}:2 runs pam_env.so with user_readenv=1",
                dir.join("deeper").display()
            )),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with(&format!("PAM: {}:2 runs", dir.join("sub").display())),
            "{found:#?}"
        );
        assert!(pam_findings(&dir, "common-auth").is_empty());
        assert!(pam_findings(&dir, "missing").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nsswitch_passwd_must_start_with_files() {
        for ok in [
            "passwd:         files systemd\n",
            "# passwd: ldap\npasswd: files [NOTFOUND=return] ldap\n",
            "group: ldap files\n",
            "",
        ] {
            assert_eq!(nsswitch_finding(ok), None, "{ok:?}");
        }
        let w = nsswitch_finding("passwd: sss files # sssd\n").unwrap();
        assert_eq!(w, "/etc/nsswitch.conf: `passwd: sss files` asks sss before files: sshd (through NSS) can then see another account — uid, home, shell — than rshell, which reads only /etc/passwd; put `files` first");
        assert!(nsswitch_finding("passwd: compat\n")
            .unwrap()
            .contains("asks compat"));
    }

    #[test]
    fn a_log_sink_is_a_socket() {
        let dir = scratch("sink");
        let sock = dir.join("log");
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let _listener = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
        let missing = dir.join("missing");
        assert_eq!(log_sink_finding(&[&missing, &sock]), None);
        let w = log_sink_finding(&[&missing, &file]).unwrap();
        assert!(
            w.starts_with(&format!(
                "no log sink: neither {} nor {} is a socket here",
                missing.display(),
                file.display()
            )),
            "{w}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shadow_fields_say_whether_a_password_works() {
        let p = parse_shadow(
            "root:*:19000:0:99999:7:::\nu:$y$j9T$abc:1::::::\nl:!$6$x:1::::::\ne::1::::::\nbad\n",
        );
        assert_eq!(p.get("root"), Some(&Password::Locked));
        assert_eq!(p.get("u"), Some(&Password::Set));
        assert_eq!(p.get("l"), Some(&Password::Locked));
        assert_eq!(p.get("e"), Some(&Password::Empty));
        assert_eq!(p.get("bad"), None);
    }

    #[test]
    fn rsync_before_3_4_0_is_reported_unless_its_changelog_lists_the_fixes() {
        assert_eq!(upstream_version("3.2.7-1+deb12u2"), Some((3, 2, 7)));
        assert_eq!(upstream_version("1:3.4.1-0ubuntu1"), Some((3, 4, 1)));
        assert_eq!(upstream_version("3.5.0+ds1-0+deb12u1"), Some((3, 5, 0)));
        assert_eq!(upstream_version("3.4"), Some((3, 4, 0)));
        assert_eq!(upstream_version("x"), None);
        let r = "/usr/bin/rsync";
        assert_eq!(rsync_cve_finding(r, "rsync", "3.4.0-1", None), None);
        let all = "rsync (3.2.7-1+deb12u1) bookworm-security\n  * CVE-2024-12084, CVE-2024-12085, CVE-2024-12086,\n    CVE-2024-12087, CVE-2024-12088, CVE-2024-12747\n";
        assert_eq!(
            rsync_cve_finding(r, "rsync", "3.2.7-1+deb12u1", Some(all)),
            None
        );
        let w = rsync_cve_finding(
            r,
            "rsync",
            "3.2.7-1",
            Some("rsync (3.2.7-1) unstable\n  * CVE-2024-12085 only\n"),
        )
        .unwrap();
        assert!(w.starts_with("rsync /usr/bin/rsync comes from package rsync 3.2.7-1, older than 3.4.0, and its changelog does not mention CVE-2024-12084, CVE-2024-12086, CVE-2024-12087, CVE-2024-12088: "), "{w}");
        assert!(w.ends_with("; upgrade rsync"), "{w}");
        let w = rsync_cve_finding(r, "rsync:amd64", "3.2.3-4", None).unwrap();
        assert!(
            w.contains("its changelog is not installed, so backported fixes cannot be seen"),
            "{w}"
        );
    }

    #[test]
    fn sshd_is_asked_about_loopback_a_foreign_host_and_each_from_network() {
        let from: Vec<crate::policy::net::Cidr> = ["10.1.2.0/24", "2001:db8:5::/48", "127.0.0.1"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let addrs: Vec<String> = client_addresses(&from, true)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1",
                "192.0.2.1",
                "::1",
                "2001:db8::1",
                "10.1.2.0",
                "2001:db8:5::"
            ]
        );
        let v4_only: Vec<String> = client_addresses(&[], false)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v4_only, ["127.0.0.1", "192.0.2.1"]);
        let listeners = [
            (None, true, 22),
            (None, false, 22),
            (Some("192.0.2.9".parse().unwrap()), false, 2222),
        ];
        let v4: IpAddr = "10.1.2.0".parse().unwrap();
        assert_eq!(
            local_ends(v4, &listeners),
            vec![(LOOPBACK_V4, 22), ("192.0.2.9".parse().unwrap(), 2222)]
        );
        assert_eq!(
            local_ends("::1".parse().unwrap(), &listeners),
            vec![("::1".parse().unwrap(), 22)]
        );
        assert_eq!(local_ends(v4, &[]), vec![(LOOPBACK_V4, 22)]);
    }

    #[test]
    fn run_bounded_caps_output_and_time() {
        let (status, out) = run_bounded("/bin/echo", &["hi"], 16, Duration::from_secs(5)).unwrap();
        assert!(status.success());
        assert_eq!(out, b"hi\n");
        let start = Instant::now();
        let e = run_bounded("/usr/bin/yes", &[], 1024, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("printed more than 1024 bytes"), "{e}");
        let e = run_bounded("/bin/sleep", &["10"], 16, Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
