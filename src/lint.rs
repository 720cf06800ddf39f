//! `rshell --check` (design §4): lint the configuration like `visudo -c`, and the
//! deployment around it. Exit 0 without errors (warnings allowed unless `--strict`),
//! 1 with errors, 78 when the config cannot be read.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::Path;

use crate::policy::{self, Access, Config, ConfigError, Layer};
use crate::{check, confine, sys, EXIT_CONFIG};

/// Findings, in the order found.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
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

/// Does the account's authorized_keys force an rshell command?
fn has_forced_rshell_key(home: &Path) -> bool {
    std::fs::read_to_string(home.join(".ssh/authorized_keys")).is_ok_and(|text| {
        text.lines()
            .any(|l| l.contains("command=") && l.contains("rshell"))
    })
}

/// `(module, path)` pairs of an rsyncd.conf (`[name]` sections, `path = ...` lines).
fn daemon_module_paths(conf: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(conf).unwrap_or_default();
    let mut module = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            module = Some(name.trim().to_string());
        } else if let (Some(m), Some((key, value))) = (&module, line.split_once('=')) {
            if key.trim() == "path" {
                out.push((m.clone(), value.trim().to_string()));
            }
        }
    }
    out
}

/// Lint `cfg` for the accounts it concerns.
pub fn lint(cfg: &Config) -> Findings {
    let mut f = Findings::default();
    let entries = crate::passwd::entries();
    let mut names: BTreeSet<String> = cfg.users.keys().cloned().collect();
    for e in entries.iter().filter(|e| crate::cli::is_rshell(&e.shell)) {
        names.insert(e.name.clone());
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
            None => f.errors.push(format!("rsync {rsync} cannot be run (missing or not executable)")),
            Some(v) if v < (3, 5, 0) => f.warnings.push(format!(
                "rsync {rsync} is version {}.{}.{}: `confine_root` needs 3.5.0 or newer (--confine-root); set confine_root = false or upgrade",
                v.0, v.1, v.2
            )),
            Some(_) => {}
        }
    }

    for name in &names {
        let account = match sys::account_by_name(name) {
            Ok(Some(a)) => a,
            Ok(None) => {
                f.warnings.push(format!("[users.{name}]: no such account"));
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
            f.warnings.push(format!(
                "{name}: login shell is rshell but no section applies: every request is denied"
            ));
            continue;
        }
        let s = &policy.settings;
        let root = policy::expand_root(&s.root, &account.name, &account.home);
        if s.access != Access::ReadOnly
            && !s.dangerous_writable_home
            && check::holds_home(&root, &account.home)
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
                for (module, path) in daemon_module_paths(Path::new(&s.daemon_config)) {
                    if !policy::normalize(Path::new(&path)).starts_with(&root) {
                        f.warnings.push(format!(
                            "{name}: module [{module}] of {} has path {path} outside root {}: Landlock will deny it",
                            s.daemon_config,
                            root.display()
                        ));
                    }
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
        if s.confine == policy::ConfineMode::Require && landlock.is_err() {
            f.errors.push(format!("{name}: confine = \"require\" but this kernel has no usable Landlock: every request will be refused"));
        }
    }

    // What sshd would do for these accounts: settings that undo rshell (issue 6).
    if sys::current_uid() == 0 && Path::new(crate::sshd::SSHD).exists() {
        for e in entries
            .iter()
            .filter(|e| crate::cli::is_rshell(&e.shell) || has_forced_rshell_key(&e.home))
        {
            match crate::sshd::query(&e.name) {
                Ok(out) => f.warnings.extend(crate::sshd::findings(&e.name, &out)),
                Err(why) => f.warnings.push(format!(
                    "{}: cannot ask sshd for its effective settings: {why}",
                    e.name
                )),
            }
        }
    }

    // Forced keys whose login shell is not rshell: only as strong as that shell (design §3a).
    for e in &entries {
        if crate::cli::is_rshell(&e.shell) {
            continue;
        }
        if has_forced_rshell_key(&e.home) {
            f.warnings.push(format!(
                "{}: {}/.ssh/authorized_keys has a forced rshell key but the login shell is {}: sshd runs ~/.ssh/rc and the shell's start-up files first; use rshell as the login shell or set PermitUserRC no",
                e.name,
                e.home.display(),
                e.shell
            ));
        }
    }
    f
}

/// The `--check` command.
pub fn check(config: Option<&Path>, strict: bool) -> i32 {
    let path = config.unwrap_or(Path::new(policy::DEFAULT_CONFIG));
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e @ (ConfigError::Missing(_) | ConfigError::Unreadable(..))) => {
            println!("error: {e}");
            return EXIT_CONFIG;
        }
        Err(e) => {
            println!("error: {e}");
            println!("rshell --check: 1 error, 0 warnings");
            return 1;
        }
    };
    let f = lint(&cfg);
    for e in &f.errors {
        println!("error: {e}");
    }
    for w in &f.warnings {
        println!("warning: {w}");
    }
    println!(
        "rshell --check: {} {}: {} error(s), {} warning(s)",
        path.display(),
        if f.errors.is_empty() { "ok" } else { "FAILED" },
        f.errors.len(),
        f.warnings.len()
    );
    if !f.errors.is_empty() || (strict && !f.warnings.is_empty()) {
        1
    } else {
        0
    }
}
