//! `rshell --check` (design §4): lint the configuration like `visudo -c`, and the
//! deployment around it. Exit 0 without errors (warnings allowed unless `--strict`),
//! 1 with errors, 78 when the config cannot be read.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::Path;

use crate::policy::{self, Access, Config, ConfigError, Layer};
use crate::{check, confine, rsyncd, sys, EXIT_CONFIG};

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

/// What a daemon_config must state itself for these settings: in daemon mode rsync obeys
/// only its rsyncd.conf, never rshell's `access`, `delete` or `overwrite`.
pub fn daemon_requirements(s: &policy::Settings) -> rsyncd::Requirements {
    rsyncd::Requirements {
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
    match rsyncd::modules(text) {
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
    if let Err(problems) = rsyncd::verify(text, &daemon_requirements(s)) {
        for p in problems {
            f.errors.push(format!(
                "{name}: daemon_config {conf}: {p} (in daemon mode rsync obeys only its rsyncd.conf, not rshell's access/delete/overwrite)"
            ));
        }
    }
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
                match rsyncd::read_config(Path::new(&s.daemon_config)) {
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
}
