//! `rshell --check` against crafted deployments: a dedicated sshd_config (`sshd -T -f`,
//! evaluated by the real /usr/sbin/sshd; nothing listens), authorized keys files in a
//! test directory, a PAM directory. Runs the library's `check_to` with the options the
//! CLI's `--sshd-config` and `--user` set. Needs root (sshd -T, a trusted config).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempDir;
use rshell::admin::lint::{self, CheckOptions};

/// A deployment under a root-owned directory in `/`: policy, host key, keys, sshd_config.
struct Site {
    dir: TempDir,
    key: String,
}

impl Site {
    fn new(tag: &str) -> Option<Site> {
        if !common::needs("root, for sshd -T and a trusted config", common::root())
            || !common::needs("/usr/sbin/sshd", exists("/usr/sbin/sshd"))
            || !common::needs("/usr/bin/ssh-keygen", exists("/usr/bin/ssh-keygen"))
        {
            return None;
        }
        let dir = TempDir::trusted(tag);
        let hostkey = dir.path().join("hostkey");
        let status = Command::new("/usr/bin/ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey)
            .status()
            .unwrap();
        assert!(status.success());
        let key = std::fs::read_to_string(dir.path().join("hostkey.pub"))
            .unwrap()
            .trim()
            .to_string();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        Some(Site { dir, key })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The policy: root's section with `extra` keys.
    fn policy(&self, extra: &str) -> PathBuf {
        let p = self.path("rshell.toml");
        std::fs::write(
            &p,
            format!(
                "version = 1\n[users.root]\nroot = \"{}\"\n{extra}",
                self.path("root").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// root's authorized keys (in the test dir: AuthorizedKeysFile names it).
    fn keys(&self, options: &str) {
        std::fs::write(self.path("keys/root"), format!("{options} {}\n", self.key)).unwrap();
    }

    /// An sshd_config with the host key, keys in the test dir, no passwords, and `extra`.
    fn sshd(&self, extra: &str) -> PathBuf {
        let p = self.path("sshd_config");
        std::fs::write(
            &p,
            format!(
                "HostKey {}\nAuthorizedKeysFile {}/keys/%u\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n{extra}",
                self.path("hostkey").display(),
                self.dir.path().display()
            ),
        )
        .unwrap();
        p
    }

    /// `rshell --check --config POLICY --sshd-config SSHD --user root`'s report.
    fn check(&self, policy: &Path, sshd: &Path) -> String {
        let opts = CheckOptions {
            config: Some(policy.to_path_buf()),
            sshd_config: Some(sshd.to_path_buf()),
            user: Some("root".into()),
            pam_dir: Some(self.path("pam")),
            ..CheckOptions::default()
        };
        let mut out = Vec::new();
        lint::check_to(&opts, &mut out);
        String::from_utf8(out).unwrap()
    }
}

fn exists(p: &str) -> Result<(), String> {
    if Path::new(p).exists() {
        Ok(())
    } else {
        Err(format!("{p} is missing"))
    }
}

const FORCED: &str = "command=\"/usr/bin/rshell -ro /srv/backup\"";

#[test]
fn check_reads_the_given_sshd_config_and_restrict_keys_close_forwarding() {
    let Some(site) = Site::new("check-restrict") else {
        return;
    };
    let policy = site.policy("");
    let sshd = site.sshd("ExposeAuthInfo yes\n");

    site.keys(&format!("{FORCED},restrict"));
    let report = site.check(&policy, &sshd);
    // root's login shell is not rshell: the forced key is found in the file sshd names.
    assert!(
        report.contains(&format!(
            "root: {} has a forced rshell key (line 1) but the login shell is",
            site.path("keys/root").display()
        )),
        "{report}"
    );
    assert!(!report.contains("sshd allows"), "{report}");
    assert!(!report.contains("permituserrc"), "{report}");
    assert!(!report.contains("exposeauthinfo"), "{report}");

    // The separate no-* options close the same.
    site.keys(&format!(
        "{FORCED},no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc"
    ));
    let report = site.check(&policy, &sshd);
    assert!(!report.contains("sshd allows"), "{report}");
    assert!(!report.contains("permituserrc"), "{report}");

    // A key without them leaves forwarding open, and the report names the key.
    site.keys(FORCED);
    let report = site.check(&policy, &sshd);
    assert!(
        report.contains(&format!(
            "warning: sshd allows TCP port forwarding (ssh -L/-R/-D/-W) for root (allowtcpforwarding yes): it needs no shell, so rshell never sees it; set `DisableForwarding yes` for this user (or the `restrict` key option); the key on line 1 of {} says neither `restrict` nor `no-port-forwarding`",
            site.path("keys/root").display()
        )),
        "{report}"
    );
    assert!(report.contains("(permituserrc yes)"), "{report}");
    // `restrict` then `port-forwarding` reopens exactly that.
    site.keys(&format!("restrict,{FORCED},port-forwarding"));
    let report = site.check(&policy, &sshd);
    assert!(report.contains("(allowtcpforwarding yes)"), "{report}");
    assert!(
        report.contains("(allowstreamlocalforwarding yes)"),
        "{report}"
    );
    assert!(!report.contains("(allowagentforwarding yes)"), "{report}");
    assert!(!report.contains("(permituserrc yes)"), "{report}");

    // Password logins are not bound by key options.
    let sshd = site.sshd("ExposeAuthInfo yes\nPasswordAuthentication yes\n");
    site.keys(&format!("{FORCED},restrict"));
    let report = site.check(&policy, &sshd);
    // root's password in /etc/shadow decides; a locked one leaves the keys in charge.
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let locked = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .is_some_and(|rest| rest.starts_with('!') || rest.starts_with('*'));
    assert_eq!(
        report.contains("password logins are possible"),
        !locked,
        "{report}"
    );
}

#[test]
fn check_reports_exposeauthinfo_off() {
    let Some(site) = Site::new("check-expose") else {
        return;
    };
    let policy = site.policy("");
    site.keys(&format!("{FORCED},restrict"));
    let report = site.check(&policy, &site.sshd("ExposeAuthInfo no\n"));
    assert!(
        report.contains("warning: sshd does not tell rshell which key root logged in with (exposeauthinfo no): the log cannot name the key, and an SSH_USER_AUTH set through ~/.pam_environment would be taken for it; set `ExposeAuthInfo yes`"),
        "{report}"
    );
    let report = site.check(&policy, &site.sshd("ExposeAuthInfo yes\n"));
    assert!(!report.contains("exposeauthinfo"), "{report}");
}

#[test]
fn check_reports_a_match_address_block_that_bypasses_rshell() {
    let Some(site) = Site::new("check-match") else {
        return;
    };
    site.keys(&format!("{FORCED},restrict"));
    // The policy's own network: a Match block for 10/8 is seen through `from`.
    let policy = site.policy("from = [\"10.1.2.0/24\"]\n");
    let sshd =
        site.sshd("ExposeAuthInfo yes\nMatch Address 10.0.0.0/8\n  ForceCommand internal-sftp\n");
    let report = site.check(&policy, &sshd);
    assert!(
        report.contains("warning: sshd forces internal-sftp for root (forcecommand internal-sftp): the login shell never runs; this account is an sftp account, not an rshell account (for connections from 10.1.2.0)"),
        "{report}"
    );
    // Without `from`, any non-local client stands in (192.0.2.1, 2001:db8::1).
    let policy = site.policy("");
    let sshd = site.sshd(
        "ExposeAuthInfo yes\nMatch Address *,!127.0.0.0/8,!::1\n  AllowTcpForwarding yes\n  DisableForwarding no\n  ForceCommand internal-sftp\n",
    );
    let report = site.check(&policy, &sshd);
    assert!(
        report.contains("(forcecommand internal-sftp)") && report.contains("192.0.2.1"),
        "{report}"
    );
    assert!(
        !report.contains("127.0.0.1"),
        "loopback is not affected: {report}"
    );
    // A block for another port (a dedicated sshd's second ListenAddress) is evaluated
    // with that port.
    let sshd = site.sshd(
        "ExposeAuthInfo yes\nListenAddress 0.0.0.0:22\nListenAddress 0.0.0.0:2222\nMatch LocalPort 2222\n  PermitTunnel yes\n",
    );
    let report = site.check(&policy, &sshd);
    assert!(
        report.contains("(permittunnel yes)") && report.contains("to port 2222)"),
        "{report}"
    );
    assert!(!report.contains("cannot ask sshd"), "{report}");
}

#[test]
fn check_reads_authorized_keys_files_bounded_without_hanging() {
    let Some(site) = Site::new("check-fifo") else {
        return;
    };
    let policy = site.policy("");
    site.keys(&format!("{FORCED},restrict"));
    nix::unistd::mkfifo(
        &site.path("keys/root.fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::fs::write(site.path("keys/root.big"), vec![b'#'; (1 << 20) + 1]).unwrap();
    // Several files, %u and %% tokens, a FIFO, a device, an oversized file.
    let d = site.dir.path().display().to_string();
    let sshd = site.sshd(&format!(
        "ExposeAuthInfo yes\nMatch User root\n  AuthorizedKeysFile {d}/keys/%u {d}/keys/%u.fifo /dev/zero {d}/keys/%u.big {d}/keys/100%%\n"
    ));
    let start = Instant::now();
    let report = site.check(&policy, &sshd);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        report.contains(&format!(
            "warning: root: authorized keys file {d}/keys/root.fifo was not read: it is not a regular file (it is a FIFO); rshell --check cannot see its keys' options"
        )),
        "{report}"
    );
    assert!(
        report.contains("authorized keys file /dev/zero was not read: it is not a regular file (it is a character device)"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "authorized keys file {d}/keys/root.big was not read: it is larger than 1048576 bytes; rshell --check cannot see its keys' options"
        )),
        "{report}"
    );
    // sshd would read the big file, so its keys' options are unknown: forwarding stays
    // reported although the readable key says `restrict`.
    assert!(
        report.contains(&format!("(allowtcpforwarding yes): it needs no shell, so rshell never sees it; set `DisableForwarding yes` for this user (or the `restrict` key option); {d}/keys/root.big was not read: it is larger than 1048576 bytes\n")),
        "{report}"
    );
}

#[test]
fn check_reports_pam_env_with_user_readenv_through_includes() {
    let Some(site) = Site::new("check-pam") else {
        return;
    };
    let policy = site.policy("");
    site.keys(&format!("{FORCED},restrict"));
    let pam = site.path("pam");
    std::fs::create_dir(&pam).unwrap();
    std::fs::write(
        pam.join("sshd"),
        "# PAM for sshd\n@include common-auth\nsession required pam_env.so # [1]\n",
    )
    .unwrap();
    std::fs::write(
        pam.join("common-auth"),
        "auth [success=1 default=ignore] pam_unix.so nullok\nsession    required     pam_env.so user_readenv=1 envfile=/etc/default/locale\n",
    )
    .unwrap();
    let sshd = site.sshd("ExposeAuthInfo yes\nUsePAM yes\n");
    let report = site.check(&policy, &sshd);
    assert!(
        report.contains(&format!(
            "warning: PAM: {}:2 runs pam_env.so with user_readenv=1 for sshd: each user's ~/.pam_environment then sets variables for the session rshell runs in, such as SSH_ORIGINAL_COMMAND and SSH_USER_AUTH; remove `user_readenv=1` from that line (Debian ships it in /etc/pam.d/sshd)",
            pam.join("common-auth").display()
        )),
        "{report}"
    );
    // Without PAM in sshd, the PAM stack does not matter.
    let report = site.check(&policy, &site.sshd("ExposeAuthInfo yes\nUsePAM no\n"));
    assert!(!report.contains("PAM:"), "{report}");
    // user_readenv=0 is harmless.
    std::fs::write(
        pam.join("common-auth"),
        "session required pam_env.so user_readenv=0\n",
    )
    .unwrap();
    let report = site.check(&policy, &site.sshd("ExposeAuthInfo yes\nUsePAM yes\n"));
    assert!(!report.contains("PAM:"), "{report}");
}

#[test]
fn check_warns_that_lock_false_needs_munge_links() {
    let Some(site) = Site::new("check-lock") else {
        return;
    };
    site.keys(&format!("{FORCED},restrict"));
    let sshd = site.sshd("ExposeAuthInfo yes\n");
    let report = site.check(&site.policy("lock = false\n"), &sshd);
    assert!(
        report.contains("warning: root: lock = false is ignored without munge_links = true: rshell keeps locking the root; set munge_links = true as well, or drop lock = false"),
        "{report}"
    );
    let report = site.check(&site.policy("lock = false\nmunge_links = true\n"), &sshd);
    assert!(!report.contains("lock = false"), "{report}");
}
