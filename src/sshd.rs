//! The deployment lint of `rshell --check` (design §3a, §4; issue 6): read sshd's
//! effective settings for one account (`sshd -T -C user=…`) and name every setting that
//! lets that account past its login shell.
//!
//! A restricted shell only restricts what sshd hands to the shell. Forwarding (`ssh -N
//! -L/-R/-W`, agent, X11, tunnels) never starts the shell; `internal-sftp` is served inside
//! sshd; `~/.ssh/rc` and user environment files run or apply before the shell (spec §10
//! A24, A25; prior-art O1–O4). Those are sshd's to close.
//!
//! Rules: `findings` is pure (text in, sentences out); `query` runs exactly one fixed
//! program with fixed arguments and an empty environment, and never a shell.
#![forbid(unsafe_code)]

use std::process::{Command, Stdio};

/// The one program `query` runs.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The settings sshd reports for one connection, from `sshd -T` output: lowercase
/// `key value…` lines; a key may repeat (`subsystem`, `hostkey`, `acceptenv`).
struct Settings<'a> {
    lines: Vec<(&'a str, &'a str)>,
}

impl<'a> Settings<'a> {
    fn parse(text: &'a str) -> Self {
        let lines = text
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                (!key.is_empty()).then_some((key, value.trim()))
            })
            .collect();
        Settings { lines }
    }

    /// Every value given for `key`, in order.
    fn all(&self, key: &str) -> impl Iterator<Item = &'a str> + '_ {
        let key = key.to_string();
        self.lines
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(&key))
            .map(|(_, v)| *v)
    }

    /// The value of `key`, or OpenSSH's documented default when sshd did not print it.
    fn get(&self, key: &str, default: &'a str) -> &'a str {
        self.all(key).next().unwrap_or(default)
    }
}

/// One warning per sshd setting that undoes rshell for `user`, given `sshd -T` output
/// for that user (see [`query`]). Empty when the deployment is sound.
pub fn findings(user: &str, sshd_t_output: &str) -> Vec<String> {
    let s = Settings::parse(sshd_t_output);
    if s.lines.is_empty() {
        return vec![format!(
            "sshd settings for {user}: `sshd -T` printed nothing, so forwarding, PermitUserRC and the sftp subsystem could not be checked"
        )];
    }
    let mut out = Vec::new();

    // Forwarding needs no shell: `ssh -N` opens channels and never runs rshell
    // (prior-art O1). `DisableForwarding yes` overrides every individual switch.
    if !s.get("disableforwarding", "no").eq_ignore_ascii_case("yes") {
        let forwarding = [
            (
                "allowtcpforwarding",
                "yes",
                "TCP port forwarding (ssh -L/-R/-D/-W)",
            ),
            (
                "allowstreamlocalforwarding",
                "yes",
                "Unix-socket forwarding",
            ),
            ("x11forwarding", "no", "X11 forwarding"),
            ("allowagentforwarding", "yes", "agent forwarding"),
            ("permittunnel", "no", "tun/tap tunnels (ssh -w)"),
        ];
        for (key, default, what) in forwarding {
            let value = s.get(key, default);
            if !value.eq_ignore_ascii_case("no") {
                out.push(format!(
                    "sshd allows {what} for {user} ({key} {value}): it needs no shell, so rshell never sees it; set `DisableForwarding yes` for this user (or the `restrict` key option)"
                ));
            }
        }
    }

    // sshd runs `<login shell> -c '/bin/sh ~/.ssh/rc'` first (prior-art O3): harmless under
    // rshell as login shell (refused), fatal under any other shell with a forced key.
    let rc = s.get("permituserrc", "yes");
    if !rc.eq_ignore_ascii_case("no") {
        out.push(format!(
            "sshd lets {user} run ~/.ssh/rc (permituserrc {rc}): a forced rshell key under another login shell runs that file first; set `PermitUserRC no` (or the `restrict` key option)"
        ));
    }

    // ~/.ssh/environment can set LD_PRELOAD, PATH, HOME for the shell and what it runs
    // (spec A24). Only allowed globally in sshd_config, not in a Match block.
    let env = s.get("permituserenvironment", "no");
    if !env.eq_ignore_ascii_case("no") {
        out.push(format!(
            "sshd reads {user}'s ~/.ssh/environment (permituserenvironment {env}): user-chosen variables reach the login shell; set `PermitUserEnvironment no` (a global setting)"
        ));
    }

    // internal-sftp is served inside sshd: the login shell never runs (prior-art O2).
    for value in s.all("subsystem") {
        let mut words = value.split_whitespace();
        let name = words.next().unwrap_or("");
        if words.next() == Some("internal-sftp") {
            out.push(format!(
                "sshd serves the `{name}` subsystem to {user} with internal-sftp (subsystem {value}): files are read and written inside sshd without running rshell; use the external /usr/lib/openssh/sftp-server (which rshell refuses) or no sftp subsystem for this user"
            ));
        }
    }
    let force = s.get("forcecommand", "none");
    if force.split_whitespace().next() == Some("internal-sftp") {
        out.push(format!(
            "sshd forces internal-sftp for {user} (forcecommand {force}): the login shell never runs; this account is an sftp account, not an rshell account"
        ));
    }
    out
}

/// `sshd -T` output for `user` connecting from localhost, or the reason it is not
/// available (not root, sshd missing, no `/run/sshd`, no host keys, bad config…).
/// Runs exactly `/usr/sbin/sshd -T -C user=USER,host=localhost,addr=127.0.0.1`.
pub fn query(user: &str) -> Result<String, String> {
    // The name goes into one comma-separated `-C` spec: a `,` or `=` would add criteria.
    if user.is_empty()
        || user.starts_with('-')
        || user
            .chars()
            .any(|c| c == ',' || c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("cannot ask sshd about user name {user:?}"));
    }
    let output = Command::new(SSHD)
        .arg("-T")
        .arg("-C")
        .arg(format!("user={user},host=localhost,addr=127.0.0.1"))
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {SSHD} -T: {e}"))?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        let why = why.trim();
        return Err(format!(
            "{SSHD} -T failed ({}){}{}",
            output.status,
            if why.is_empty() { "" } else { ": " },
            why
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| format!("{SSHD} -T printed non-UTF-8 output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of `sshd -T -C user=root,host=localhost,addr=127.0.0.1` on a stock
    /// Debian 12 server (OpenSSH 9.2p1, unmodified /etc/ssh/sshd_config).
    const DEBIAN12: &str = include_str!("../tests/data/sshd-T-debian12.txt");

    /// `sample` with the line of each `key` replaced by `key value`.
    fn with(sample: &str, changes: &[(&str, &str)]) -> String {
        let mut text = sample.to_string();
        for (key, value) in changes {
            let prefix = format!("{key} ");
            let mut found = false;
            text = text
                .lines()
                .map(|line| {
                    if line.starts_with(&prefix) && !found {
                        found = true;
                        format!("{key} {value}")
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert!(found, "sample has no {key} line");
        }
        text
    }

    /// The documented `Match Group rshell-users` block, as sshd -T reports it.
    fn hardened() -> String {
        with(
            DEBIAN12,
            &[
                ("disableforwarding", "yes"),
                ("permituserrc", "no"),
                ("permittunnel", "no"),
            ],
        )
    }

    fn mentions(found: &[String], key: &str) -> bool {
        found.iter().any(|f| f.contains(&format!("({key} ")))
    }

    #[test]
    fn given_stock_debian_sshd_then_forwarding_and_user_rc_are_reported() {
        let found = findings("amanda", DEBIAN12);
        for key in [
            "allowtcpforwarding",
            "allowstreamlocalforwarding",
            "x11forwarding",
            "allowagentforwarding",
            "permituserrc",
        ] {
            assert!(mentions(&found, key), "{key} missing from {found:#?}");
        }
        // Debian's defaults that are already safe are not reported.
        assert!(!mentions(&found, "permittunnel"));
        assert!(!mentions(&found, "permituserenvironment"));
        assert!(
            !mentions(&found, "subsystem"),
            "external sftp-server is fine"
        );
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found.iter().all(|f| f.contains("amanda")));
    }

    #[test]
    fn given_the_documented_match_block_then_nothing_is_reported() {
        assert_eq!(findings("amanda", &hardened()), Vec::<String>::new());
    }

    #[test]
    fn given_disable_forwarding_then_individual_switches_do_not_matter() {
        // sshd -T keeps printing `allowtcpforwarding yes` under DisableForwarding yes.
        let text = with(
            &hardened(),
            &[("x11forwarding", "yes"), ("permittunnel", "yes")],
        );
        assert!(findings("u", &text).is_empty());
    }

    #[test]
    fn given_forwarding_not_disabled_then_each_open_switch_is_one_finding() {
        let closed = with(
            &hardened(),
            &[
                ("disableforwarding", "no"),
                ("allowtcpforwarding", "no"),
                ("allowstreamlocalforwarding", "no"),
                ("x11forwarding", "no"),
                ("allowagentforwarding", "no"),
                ("permittunnel", "no"),
            ],
        );
        assert!(
            findings("u", &closed).is_empty(),
            "all switches off is sound"
        );
        for (key, value) in [
            ("allowtcpforwarding", "local"),
            ("allowtcpforwarding", "remote"),
            ("allowstreamlocalforwarding", "all"),
            ("x11forwarding", "yes"),
            ("allowagentforwarding", "yes"),
            ("permittunnel", "point-to-point"),
            ("permittunnel", "ethernet"),
            ("permittunnel", "yes"),
        ] {
            let found = findings("u", &with(&closed, &[(key, value)]));
            assert_eq!(found.len(), 1, "{key} {value}: {found:#?}");
            assert!(found[0].contains(&format!("({key} {value})")), "{found:#?}");
        }
    }

    #[test]
    fn given_user_environment_then_it_is_reported() {
        for value in ["yes", "LANG,LC_*"] {
            let found = findings("u", &with(&hardened(), &[("permituserenvironment", value)]));
            assert_eq!(found.len(), 1, "{found:#?}");
            assert!(found[0].contains("PermitUserEnvironment no"));
        }
    }

    #[test]
    fn given_internal_sftp_subsystem_then_it_is_reported_in_every_spelling() {
        for value in [
            "sftp internal-sftp",
            "sftp internal-sftp -l INFO -f AUTHPRIV",
            "files internal-sftp -d /srv",
        ] {
            let found = findings("u", &with(&hardened(), &[("subsystem", value)]));
            assert_eq!(found.len(), 1, "{value}: {found:#?}");
            assert!(found[0].contains("internal-sftp"));
        }
        // An external sftp-server goes through the login shell, which refuses it.
        let external = with(
            &hardened(),
            &[("subsystem", "sftp /usr/lib/openssh/sftp-server")],
        );
        assert!(findings("u", &external).is_empty());
    }

    #[test]
    fn given_forced_internal_sftp_then_it_is_reported() {
        let text = with(&hardened(), &[("forcecommand", "internal-sftp -R")]);
        let found = findings("u", &text);
        assert_eq!(found.len(), 1, "{found:#?}");
        let other = with(
            &hardened(),
            &[("forcecommand", "/usr/bin/rshell -ro /srv/x")],
        );
        assert!(findings("u", &other).is_empty());
    }

    #[test]
    fn given_no_output_then_the_check_says_it_could_not_run() {
        let found = findings("u", "");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("could not be checked"));
    }

    #[test]
    fn given_missing_keys_then_openssh_defaults_apply() {
        // An sshd that prints only some keys: unprinted ones take OpenSSH's defaults
        // (forwarding allowed, user rc allowed, no user environment, X11 off).
        let found = findings("u", "port 22\npermittunnel no\n");
        for key in [
            "allowtcpforwarding",
            "allowstreamlocalforwarding",
            "allowagentforwarding",
            "permituserrc",
        ] {
            assert!(mentions(&found, key), "{key}: {found:#?}");
        }
        assert_eq!(found.len(), 4, "{found:#?}");
    }

    #[test]
    fn given_a_user_name_that_would_add_match_criteria_then_query_refuses() {
        for bad in ["", "a,addr=10.0.0.1", "a=b", "-f/tmp/x", "a b", "a\nb"] {
            let err = query(bad).unwrap_err();
            assert!(err.contains("cannot ask sshd"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn query_returns_settings_or_a_reason() {
        // Depends on the machine (root, host keys, /run/sshd): either outcome is valid,
        // but success must look like sshd -T output and failure must say why.
        match query("root") {
            Ok(text) => assert!(
                text.lines().any(|l| l.starts_with("permituserrc ")),
                "{text}"
            ),
            Err(why) => assert!(why.contains(SSHD), "{why}"),
        }
    }
}
