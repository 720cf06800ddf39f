//! The decision (design §5 `check`): a parsed request plus the effective policy becomes
//! a [`Verdict`] — a denial with its reason, or the exact plan rshell would exec.
//!
//! No writes and no exec here; the only file-system access is the read-only
//! resolution of paths beneath root (resolve.rs).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::confine::Ruleset;
use crate::policy::{self, Access, ConfineMode, Policy};
use crate::resolve::{self, Root};
use crate::rsync::{Class, Invocation, Opt, PathBase, ServerInvocation, Value};
use crate::sys::Account;

/// Everything the decision needs, already typed.
#[derive(Debug)]
pub struct Request<'a> {
    pub account: &'a Account,
    pub client: Option<IpAddr>,
    pub invocation: &'a Invocation,
    pub policy: &'a Policy,
}

/// What would be exec'd, and how it is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    pub program: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub umask: u32,
    /// Take the exclusive root lock first (writers only).
    pub lock: bool,
    pub confine: ConfineMode,
    pub ruleset: Ruleset,
    pub log_outcome: bool,
    /// "push", "pull" or "daemon", for logs.
    pub kind: &'static str,
}

/// The decision. Never a bool.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(ExecPlan),
    Deny(String),
}

/// The fixed environment of the exec'd rsync (design §1, issue 3): nothing from the client.
pub fn exec_env(account: &Account) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("USER".into(), account.name.clone()),
        ("LOGNAME".into(), account.name.clone()),
        ("LANG".into(), "C".into()),
        ("LC_ALL".into(), "C".into()),
    ]
}

/// Decide one request.
pub fn decide(req: &Request) -> Verdict {
    match decide_inner(req) {
        Ok(plan) => Verdict::Allow(plan),
        Err(reason) => Verdict::Deny(reason),
    }
}

fn decide_inner(req: &Request) -> Result<ExecPlan, String> {
    let s = &req.policy.settings;
    if !s.from.is_empty() {
        let client = req
            .client
            .ok_or("the policy limits client addresses (`from`) but SSH_CONNECTION gives none")?;
        if !s.from.iter().any(|net| net.contains(client)) {
            return Err(format!(
                "client address {client} is not in `from` for this user"
            ));
        }
    }
    let root_path = policy::expand_root(&s.root, &req.account.name, &req.account.home);
    let root = Root::open(&root_path)?;
    let writes = match req.invocation {
        Invocation::Daemon => s.access != Access::ReadOnly,
        Invocation::Transfer(t) => !t.sender,
    };
    if writes && !s.dangerous_writable_home && holds_home(&root_path, &req.account.home) {
        return Err(format!(
            "root {} holds the home directory {}: write access there is refused (it could change ~/.ssh, ~/.pam_environment, shell start-up files); set dangerous_writable_home = true to allow",
            root_path.display(),
            req.account.home.display()
        ));
    }
    let program = PathBuf::from(&s.rsync);
    let mut plan = ExecPlan {
        program: program.clone(),
        argv: vec![s.rsync.clone(), "--server".into()],
        env: exec_env(req.account),
        cwd: root_path.clone(),
        umask: s.umask,
        lock: writes && s.lock,
        confine: s.confine,
        ruleset: Ruleset::for_transfer(&root_path, s.access, &program, &[]),
        log_outcome: s.log_outcome,
        kind: "daemon",
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
                &root_path,
                s.access,
                &program,
                &[PathBuf::from(&s.daemon_config)],
            );
            plan.argv.extend([
                "--daemon".to_string(),
                format!("--config={}", s.daemon_config),
                ".".to_string(),
            ]);
            Ok(plan)
        }
        Invocation::Transfer(t) => {
            transfer(req, t, &root, &mut plan)?;
            Ok(plan)
        }
    }
}

/// True if `root` is the home directory or one of its ancestors.
pub fn holds_home(root: &Path, home: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| policy::normalize(p));
    canon(home).starts_with(canon(root))
}

fn transfer(
    req: &Request,
    t: &ServerInvocation,
    root: &Root,
    plan: &mut ExecPlan,
) -> Result<(), String> {
    let s = &req.policy.settings;
    plan.kind = if t.sender { "pull" } else { "push" };
    match (s.access, t.sender) {
        (Access::ReadOnly, false) => {
            return Err("this account is read-only: uploads are refused".into())
        }
        (Access::WriteOnly, true) => {
            return Err("this account is write-only: downloads are refused".into())
        }
        _ => {}
    }
    let deletes_refused = !s.delete || s.access == Access::ReadOnly;
    for opt in &t.options {
        match opt.spec.class {
            Class::Deletes if deletes_refused => {
                return Err(format!(
                    "--{} is refused: deletion is not allowed for this account",
                    opt.spec.long
                ))
            }
            Class::ReadPath
                if s.access == Access::WriteOnly && opt.value.as_deref() != Some("-") =>
            {
                return Err(format!(
                    "--{} with a server file is refused on a write-only account (it reads)",
                    opt.spec.long
                ))
            }
            _ => {}
        }
    }

    // Paths after `.`: mapped onto root, expanded, checked beneath root.
    let mut paths = Vec::new();
    for word in &t.paths {
        let mapped = resolve::map_client_path(word, &root.path)?;
        for rel in resolve::expand(root, &mapped)? {
            resolve::check_beneath(root, Path::new(""), &rel)?;
            // A name that starts with `-` (from `/-x` or a wildcard) stays a name.
            paths.push(if rel.starts_with('-') {
                format!("./{rel}")
            } else {
                rel
            });
        }
    }
    if !t.sender && paths.len() != 1 {
        return Err(format!(
            "an upload takes exactly one destination, the pattern gave {}",
            paths.len()
        ));
    }

    // The receiver's destination directory: the base of relative basis/backup/temp dirs.
    let dest_dir = if t.sender {
        PathBuf::new()
    } else {
        let dest = &paths[0];
        let dest_path = Path::new(dest.as_str());
        if dest.ends_with('/')
            || dest == "."
            || t.has_flag('r')
            || t.has_flag('d')
            || resolve::is_dir_beneath(root, dest_path)
        {
            policy::normalize(dest_path)
        } else {
            dest_path
                .parent()
                .map(policy::normalize)
                .unwrap_or_default()
        }
    };

    let mut resolved_values = Vec::new();
    for opt in &t.options {
        if let Value::Path(base) = opt.spec.value {
            let value = opt.value.as_deref().unwrap_or_default();
            resolved_values.push(path_option(root, opt, base, value, &dest_dir)?);
        }
    }
    let mut values = resolved_values.into_iter();
    let mut words = t.option_words(|_opt: &Opt| values.next());

    // Forced options, after validation and last (spec §8.7): the client cannot undo them.
    let mut forced: Vec<String> = Vec::new();
    if s.munge_links {
        forced.push("--munge-links".into());
    }
    if s.fake_super {
        forced.push("--fake-super".into());
    }
    if !t.sender {
        forced.push("--drop-D".into());
        if !s.overwrite {
            forced.push("--ignore-existing".into());
        }
    }
    if s.confine_root {
        forced.push(format!("--confine-root={}", root.path.display()));
    }
    words.retain(|w| !forced.contains(w));
    if t.sender {
        plan.argv.push("--sender".into());
    }
    plan.argv.extend(words);
    plan.argv.extend(forced);
    plan.argv.push("--".into());
    plan.argv.push(".".into());
    plan.argv.extend(paths);
    Ok(())
}

/// Check one path-valued option and return the value rsync gets (spec §4 "relative to").
fn path_option(
    root: &Root,
    opt: &Opt,
    base: PathBase,
    value: &str,
    dest_dir: &Path,
) -> Result<String, String> {
    let name = opt.spec.long;
    if base == PathBase::Start && value == "-" {
        return Ok(value.to_string());
    }
    let word = crate::command::Word {
        text: value.to_string(),
        position: 0,
        active_glob: Vec::new(),
        tilde: value == "~" || value.starts_with("~/"),
    };
    if value.starts_with('~') && !word.tilde {
        return Err(format!("--{name}={value}: `~user` paths are not allowed"));
    }
    let absolute = value.starts_with('/') || word.tilde;
    let mapped =
        resolve::map_client_path(&word, &root.path).map_err(|e| format!("--{name}: {e}"))?;
    if absolute {
        // Anchored at root: hand rsync root's real absolute path.
        resolve::check_beneath(root, Path::new(""), &mapped.rel)
            .map_err(|e| format!("--{name}: {e}"))?;
        return Ok(policy::normalize(&root.path.join(&mapped.rel))
            .display()
            .to_string());
    }
    match base {
        PathBase::EachFileDir => {
            resolve::plain_relative(value).map_err(|e| format!("--{name}: {e}"))?;
            resolve::check_beneath(root, dest_dir, value).map_err(|e| format!("--{name}: {e}"))?;
        }
        PathBase::Destination => {
            resolve::check_beneath(root, dest_dir, value).map_err(|e| format!("--{name}: {e}"))?;
        }
        PathBase::Start => {
            resolve::check_beneath(root, Path::new(""), value)
                .map_err(|e| format!("--{name}: {e}"))?;
        }
    }
    Ok(value.to_string())
}
