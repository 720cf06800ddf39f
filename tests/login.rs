//! The built binary in each mode sshd uses (issue 3), run as sshd would run it: a
//! crafted environment (SSH_CONNECTION, SSH_ORIGINAL_COMMAND, hostile USER/HOME/PATH),
//! a fake rsync that records argv, environment, cwd and umask, and syslog captured by a
//! datagram socket bind-mounted over /dev/log in a private mount namespace (`unshare -m`),
//! with the test config bind-mounted over /etc/rshell.toml. Needs root (see
//! `common::needs`).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::TempDir;

/// The tests share /etc/rshell.toml and /dev/log mount targets: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Lab {
    _serial: MutexGuard<'static, ()>,
    dir: TempDir,
    root: PathBuf,
    config: PathBuf,
    record: PathBuf,
    log: UnixDatagram,
    log_path: PathBuf,
    placeholders: Vec<PathBuf>,
}

fn can_run() -> bool {
    common::needs(
        "root, to bind-mount the test config and log socket",
        common::root(),
    ) && common::needs("a private mount namespace", common::mount_namespace())
}

impl Lab {
    fn new(policy_extra: &str) -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new("login");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("dest")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/a.txt"), "a").unwrap();
        let record = root.join("record.txt");
        let fake = dir.path().join("fake-rsync");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n{{ for a in \"$@\"; do echo \"ARG $a\"; done; env | sed 's/^/ENV /'; echo \"CWD $(pwd)\"; echo \"UMASK $(umask)\"; ls /proc/self/fd | sed 's/^/FD /'; if /usr/bin/flock -n {} true; then echo 'LOCK free'; else echo 'LOCK held'; fi; }} > {}\n",
                root.display(),
                record.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("rshell.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\n[users.root]\nrsync = \"{}\"\nroot = \"{}\"\nconfine = \"off\"\numask = \"0027\"\n{policy_extra}",
                fake.display(),
                root.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log_path = dir.path().join("log");
        let log = UnixDatagram::bind(&log_path).unwrap();
        log.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut placeholders = Vec::new();
        for target in ["/etc/rshell.toml", "/dev/log"] {
            if std::fs::symlink_metadata(target).is_err() {
                std::fs::write(target, "").unwrap();
                placeholders.push(PathBuf::from(target));
            }
        }
        Lab {
            _serial: serial,
            dir,
            root,
            config,
            record,
            log,
            log_path,
            placeholders,
        }
    }

    /// Run the binary in a private mount namespace with our config and log socket.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let script = format!(
            "/bin/mount --bind {} /etc/rshell.toml && /bin/mount --bind {} /dev/log && exec \"$@\"",
            self.config.display(),
            self.log_path.display()
        );
        let mut cmd = Command::new("/usr/bin/unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
            "sh",
            common::binary().as_str(),
        ]);
        cmd.args(args);
        cmd.env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let _ = std::fs::remove_file(&self.record);
        cmd.output().unwrap()
    }

    fn records(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = self.log.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        out
    }

    fn recorded(&self) -> Option<String> {
        std::fs::read_to_string(&self.record).ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &self.placeholders {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Landlock tests also need a kernel that enforces Landlock and a C compiler for the hostile
/// program.
fn can_run_hostile_programs() -> bool {
    can_run()
        && common::needs("a kernel that enforces Landlock", common::landlock())
        && common::needs(
            "a C compiler for the hostile program",
            common::command("cc", &["--version"]),
        )
}

/// Compile `source` into the lab and make it the configured rsync.
fn install_program(lab: &Lab, name: &str, source: &str) {
    let src = lab.dir.path().join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let program = lab.dir.path().join(name);
    assert!(Command::new("cc")
        .arg("-o")
        .arg(&program)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let fake = format!(
        "rsync = \"{}\"",
        lab.dir.path().join("fake-rsync").display()
    );
    let text = std::fs::read_to_string(&lab.config).unwrap().replacen(
        &fake,
        &format!("rsync = \"{}\"", program.display()),
        1,
    );
    std::fs::write(&lab.config, text).unwrap();
}

const HOSTILE: &[(&str, &str)] = &[
    ("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22"),
    ("USER", "mallory"),
    ("LOGNAME", "mallory"),
    ("HOME", "/tmp"),
    ("PATH", "/tmp/evil-bin"),
    ("RSYNC_RSH", "/tmp/x.sh"),
    ("POSIXLY_CORRECT", "1"),
    ("LD_LIBRARY_PATH", "/tmp"),
];

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn login_shell_modes_end_to_end_with_syslog() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("");
    let root = lab.root.display().to_string();

    // 1. Allowed push: exactly the rebuilt argv, a fixed environment, cwd = root, umask.
    let out = lab.run(
        &["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"],
        HOSTILE,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "rshell never writes to stdout");
    let rec = lab.recorded().expect("the fake rsync ran");
    let args: Vec<&str> = rec.lines().filter_map(|l| l.strip_prefix("ARG ")).collect();
    assert_eq!(
        args,
        [
            "--server",
            "-logDtpre.iLsfxCIvu",
            "--drop-D",
            &format!("--confine-root={root}"),
            "--",
            ".",
            args.last().copied().unwrap_or_default(),
        ]
    );
    // The destination is the checked directory itself, inherited as a descriptor: it is
    // among the fake rsync's open descriptors and resolves to root's dest.
    let dest = args.last().copied().unwrap_or_default();
    let fd = dest
        .strip_prefix("/proc/self/fd/")
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or_else(|| panic!("destination {dest:?} is not a pinned descriptor"));
    assert!(rec.lines().any(|l| l == format!("FD {fd}")), "{rec}");
    let env: Vec<&str> = rec
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .filter(|e| !e.starts_with("PWD="))
        .collect();
    let mut env_sorted = env.clone();
    env_sorted.sort();
    assert_eq!(
        env_sorted,
        [
            "LANG=C",
            "LC_ALL=C",
            "LOGNAME=root",
            "PATH=/usr/bin:/bin",
            "USER=root"
        ],
        "{rec}"
    );
    assert!(rec.contains(&format!("CWD {root}\n")), "{rec}");
    assert!(rec.contains("UMASK 0027"), "{rec}");
    assert!(
        rec.contains("LOCK held"),
        "a writer holds the root lock while rsync runs: {rec}"
    );
    // Only 0-2, the root lock, the pinned destination and the shell's own descriptor for
    // reading /proc remain.
    let fds: Vec<i32> = rec
        .lines()
        .filter_map(|l| l.strip_prefix("FD ")?.parse().ok())
        .collect();
    assert!(fds.len() <= 6, "unexpected descriptors {fds:?}");
    let logs = lab.records();
    assert!(
        logs.iter()
            .any(|l| l.contains("rshell[") && l.contains("allow user=root uid=0 from=127.0.0.1")),
        "{logs:?}"
    );
    // The outcome names the confinement the child really applied (confine = "off" here).
    assert!(
        logs.iter().any(|l| l.contains("outcome user=root")
            && l.contains("landlock=off")
            && l.contains("exit=0")),
        "{logs:?}"
    );
    // authpriv.info = facility 10 * 8 + 6 = 86
    assert!(
        logs.iter()
            .all(|l| l.starts_with("<86>") || l.starts_with("<84>")),
        "{logs:?}"
    );

    // 1b. With ExposeAuthInfo, the key's fingerprint is logged as ssh-keygen prints it.
    let key = lab.dir.path().join("id_test");
    let made = match Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
    {
        Ok(status) => {
            assert!(status.success(), "ssh-keygen: {status}");
            true
        }
        Err(e) => common::needs(
            "ssh-keygen, for the key fingerprint part",
            Err(format!("cannot run: {e}")),
        ),
    };
    if made {
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let auth = lab.dir.path().join("auth-info");
        std::fs::write(&auth, format!("publickey {}\n", public.trim())).unwrap();
        let expected = String::from_utf8(
            Command::new("ssh-keygen")
                .arg("-lf")
                .arg(key.with_extension("pub"))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let fingerprint = expected.split_whitespace().nth(1).unwrap().to_string();
        let mut env = HOSTILE.to_vec();
        let auth_s = auth.display().to_string();
        env.push(("SSH_USER_AUTH", &auth_s));
        let out = lab.run(&["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        let logs = lab.records();
        assert!(
            logs.iter()
                // sshd's value cannot be told from one set through ~/.pam_environment.
                .any(|l| l.contains(&format!("key_unverified={fingerprint}"))),
            "{fingerprint} in {logs:?}"
        );
    }

    // 2. Refusal: one line on stderr, exit 77, a deny record with the escaped command, nothing run.
    let out = lab.run(
        &[
            "-c",
            "rsync --server -logDtpre.iLsfxCIvu . dest/; touch /tmp/pwned",
        ],
        HOSTILE,
    );
    assert_eq!(out.status.code(), Some(77));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rshell: denied: unquoted ';'"), "{err}");
    assert!(lab.recorded().is_none());
    let logs = lab.records();
    assert!(
        logs.iter().any(|l| l.contains("<84>")
            && l.contains("deny user=root")
            && l.contains("touch /tmp/pwned")),
        "{logs:?}"
    );

    // 3. Control characters are escaped in the record.
    let out = lab.run(&["-c", "rsync --server . a\u{1b}[31mred"], HOSTILE);
    assert_eq!(out.status.code(), Some(77));
    let logs = lab.records();
    assert!(
        logs.iter().any(|l| l.contains("\\x1b[31mred"))
            && logs.iter().all(|l| !l.contains('\u{1b}')),
        "{logs:?}"
    );

    // 4. Interactive login and sshd's ~/.ssh/rc run are refused.
    let out = Command::new(common::binary())
        .arg0("-rshell")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77));
    assert!(
        stderr(&out).contains("rsync transfers only"),
        "{}",
        stderr(&out)
    );
    let out = lab.run(&["-c", "/bin/sh /root/.ssh/rc"], HOSTILE);
    assert_eq!(out.status.code(), Some(77));
    // A forged SSH_ORIGINAL_COMMAND does not turn an interactive login into anything.
    let out = Command::new(common::binary())
        .arg0("-rshell")
        .env_clear()
        .env("SSH_ORIGINAL_COMMAND", "rsync --server . dest/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77));

    // 5. Nested forced key: may only narrow. -ro turns pushes away, pulls still work.
    let mut env = HOSTILE.to_vec();
    env.push((
        "SSH_ORIGINAL_COMMAND",
        "rsync --server -logDtpre.iLsfxCIvu . dest/",
    ));
    let out = lab.run(&["-c", "rshell -ro"], &env);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only"));
    env.pop();
    env.push((
        "SSH_ORIGINAL_COMMAND",
        "rsync --server --sender -logDtpre.iLsfxCIvu . data/",
    ));
    let out = lab.run(&["-c", "rshell -ro data"], &env);
    // `data` is relative to the home (/root), which is outside the configured root: refused.
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    let out = lab.run(&["-c", &format!("rshell -ro {root}/data")], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = lab.recorded().unwrap();
    assert!(
        rec.contains(&format!("ARG --confine-root={root}/data")),
        "{rec}"
    );
    let out = lab.run(&["-c", "rshell -ro /"], &env);
    assert_eq!(
        out.status.code(),
        Some(77),
        "widening to / is refused: {}",
        stderr(&out)
    );

    // 6. Standalone forced key (rrsync's shape): `true` probe, DIR authoritative, no command.
    let out = lab.run(&["-wo", &root], &[("SSH_ORIGINAL_COMMAND", "true")]);
    assert_eq!(out.status.code(), Some(0));
    let out = lab.run(
        &["-wo", &root],
        &[(
            "SSH_ORIGINAL_COMMAND",
            "rsync --server --sender -logDtpre.iLsfxCIvu . data/",
        )],
    );
    assert_eq!(out.status.code(), Some(77));
    assert!(stderr(&out).contains("write-only"));
    let out = lab.run(&["-wo", &root], &[]);
    assert_eq!(out.status.code(), Some(77));
    let out = lab.run(&["-bogus", &root], &[("SSH_ORIGINAL_COMMAND", "true")]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_broken_or_insecure_config_denies_everything() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("");
    std::fs::write(
        &lab.config,
        "version = 1\n[users.root]\nroot = \"/tmp\"\nbogus = 1\n",
    )
    .unwrap();
    let out = lab.run(
        &["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"],
        HOSTILE,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("/etc/rshell.toml:4:1"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        &lab.config,
        std::fs::read_to_string(&lab.config)
            .unwrap()
            .replace("bogus = 1\n", ""),
    )
    .unwrap();
    std::fs::set_permissions(&lab.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = lab.run(
        &["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"],
        HOSTILE,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("group- or world-writable"),
        "{}",
        stderr(&out)
    );
}

/// Issue 4: even an allowed-looking request cannot read outside root once Landlock is on.
/// The configured "rsync" is a compiled program that tries to read a file outside root.
#[test]
fn landlock_require_stops_a_hostile_rsync_from_reading_outside_root() {
    if !can_run_hostile_programs() {
        return;
    }
    let lab = Lab::new("");
    let secret = lab.dir.path().join("outside-secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    install_program(
        &lab,
        "thief",
        &format!(
            "#include <stdio.h>\nint main(void){{FILE*f=fopen(\"{}\",\"r\");FILE*o=fopen(\"stolen.txt\",\"w\");if(!o)return 3;if(!f){{fputs(\"DENIED\",o);return 0;}}char b[64]={{0}};fread(b,1,63,f);fputs(b,o);return 0;}}\n",
            secret.display()
        ),
    );
    let text = std::fs::read_to_string(&lab.config)
        .unwrap()
        .replace("confine = \"off\"", "confine = \"require\"");
    std::fs::write(&lab.config, text).unwrap();
    let out = lab.run(
        &["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"],
        HOSTILE,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stolen = std::fs::read_to_string(lab.root.join("stolen.txt")).unwrap();
    assert_eq!(stolen, "DENIED", "Landlock must stop the read outside root");
    // Twin: with confine = "off" the same program reads it — the guard is Landlock, not luck.
    let text = std::fs::read_to_string(&lab.config)
        .unwrap()
        .replace("confine = \"require\"", "confine = \"off\"");
    std::fs::write(&lab.config, text).unwrap();
    let out = lab.run(
        &["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"],
        HOSTILE,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(lab.root.join("stolen.txt")).unwrap(),
        "TOP-SECRET"
    );
}

/// Issue 4, the check-then-use race (rrsync CVE-2026-53783) made deterministic: the
/// configured "rsync" swaps the checked directory for a symlink to the outside *after*
/// rshell's path check, then reads through it. Landlock, applied before exec, holds.
#[test]
fn a_component_swapped_for_a_symlink_after_the_check_cannot_escape() {
    if !can_run_hostile_programs() {
        return;
    }
    let lab = Lab::new("");
    let outside = lab.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "TOP-SECRET").unwrap();
    std::fs::create_dir(lab.root.join("d")).unwrap();
    std::fs::write(lab.root.join("d/secret"), "inside").unwrap();
    install_program(
        &lab,
        "racer",
        &format!(
            "#include <stdio.h>\n#include <unistd.h>\nint main(void){{rename(\"d\",\"d.orig\");symlink(\"{}\",\"d\");FILE*f=fopen(\"d/secret\",\"r\");FILE*o=fopen(\"stolen.txt\",\"w\");if(!o)return 3;if(!f){{fputs(\"DENIED\",o);return 0;}}char b[64]={{0}};fread(b,1,63,f);fputs(b,o);return 0;}}\n",
            outside.display()
        ),
    );
    let base = std::fs::read_to_string(&lab.config).unwrap();
    let pull = "rsync --server --sender -logDtpre.iLsfxCIvu . d/secret";
    for (confine, expected) in [("require", "DENIED"), ("off", "TOP-SECRET")] {
        let _ = std::fs::remove_file(lab.root.join("d"));
        let _ = std::fs::rename(lab.root.join("d.orig"), lab.root.join("d"));
        std::fs::write(
            &lab.config,
            base.replace("confine = \"off\"", &format!("confine = \"{confine}\"")),
        )
        .unwrap();
        let out = lab.run(&["-c", pull], HOSTILE);
        assert!(out.status.success(), "{}", stderr(&out));
        let got = std::fs::read_to_string(lab.root.join("stolen.txt")).unwrap();
        assert_eq!(got, expected, "confine = {confine}");
    }
}

#[test]
fn without_log_outcome_rshell_execs_in_place_and_logs_only_the_decision() {
    if !can_run() {
        return;
    }
    // lock = false is honoured only with munged links (then nothing uploaded can be
    // followed, so concurrent sessions cannot redirect each other).
    let lab = Lab::new("log_outcome = false\ntimeout = 0\nlock = false\nmunge_links = true\n");
    let out = lab.run(
        &["-c", "rsync --server -logDtpre.iLsfxCIvu . dest/"],
        HOSTILE,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = lab.recorded().expect("the fake rsync ran");
    assert!(rec.contains("LOCK free"), "lock = false: {rec}");
    let logs = lab.records();
    assert!(
        logs.iter().any(|l| l.contains("allow user=root")),
        "{logs:?}"
    );
    assert!(!logs.iter().any(|l| l.contains("outcome")), "{logs:?}");
}
