//! The built binary's admin tools: `--test` (text and `--json`), `--policy`, `--check`,
//! exit codes and messages. Configs are checked for ownership, so the cases that need a
//! trusted config file need root (see `common::needs`).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::TempDir;

fn rshell(args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn is_root() -> bool {
    common::needs("root, to own the test config", common::root())
}

/// A trusted config (root-owned, 0644, in root-owned 0755 directories up to `/`) with a
/// root directory.
fn setup(extra: &str) -> (TempDir, String, String) {
    let dir = TempDir::trusted("cli");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("dest")).unwrap();
    let cfg = dir.path().join("rshell.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n[users.root]\nroot = \"{}\"\n{extra}",
            root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, cfg.display().to_string(), root.display().to_string())
}

#[test]
fn test_mode_prints_verdict_section_and_exact_argv() {
    if !is_root() {
        return;
    }
    let (_d, cfg, root) = setup("");
    let out = rshell(&[
        "--test",
        "rsync --server -vlogDtpre.iLsfxCIvu . dest/",
        "--user",
        "root",
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("verdict: allow"), "{t}");
    assert!(t.contains("section: [users.root]"), "{t}");
    assert!(t.contains(&format!("root = {root}  ([users.root])")), "{t}");
    assert!(t.contains("access = read-write  (built-in)"), "{t}");
    assert!(t.contains(&format!("argv (pins as <path>): /usr/bin/rsync --server -vlogDtpre.iLsfxCIvu --drop-D '--confine-root={root}' -- . '<dest>/'")), "{t}");
    // The exact argv hands rsync the checked directory itself, and says which it is.
    assert!(t.contains("-- . /proc/self/fd/"), "{t}");
    assert!(t.contains("pin: /proc/self/fd/"), "{t}");
    assert!(
        t.contains("env: PATH=/usr/bin:/bin USER=root LOGNAME=root LANG=C LC_ALL=C"),
        "{t}"
    );
    assert!(t.contains(&format!("cwd: {root}")), "{t}");
    // What Landlock will do follows from the running kernel, asked independently of rshell.
    let landlock = match common::kernel_landlock_abi() {
        Ok(abi) if abi >= 2 => format!("enforced(abi {abi})"),
        Ok(abi) => format!("unavailable(abi {abi} < 2)"),
        Err(libc::ENOSYS) => "unavailable(kernel built without landlock)".into(),
        Err(libc::EOPNOTSUPP) => "unavailable(landlock not enabled at boot (lsm=))".into(),
        Err(errno) => panic!("landlock_create_ruleset: errno {errno}"),
    };
    assert!(
        t.contains(&format!("confine: auto -> landlock={landlock}\n")),
        "{t}"
    );

    // Its attack twin: denied, exit 1, the reason names the word.
    let out = rshell(&[
        "--test",
        "rsync --server -logDtpre.iLsfxCIvu --log-file=/x . dest/",
        "--user",
        "root",
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("verdict: deny") && text(&out).contains("--log-file"),
        "{}",
        text(&out)
    );
}

#[test]
fn test_mode_json_is_one_object_with_the_plan() {
    if !is_root() {
        return;
    }
    let (_d, cfg, root) = setup("from = [\"10.0.0.0/8\"]\n");
    let out = rshell(&[
        "--test",
        "rsync --server --sender -logDtpre.iLsfxCIvu . dest/",
        "--user",
        "root",
        "--from",
        "10.1.1.1",
        "--config",
        &cfg,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["client"], "10.1.1.1");
    assert_eq!(v["policy"]["from"]["source"], "[users.root]");
    assert_eq!(v["plan"]["cwd"], root);
    assert_eq!(v["plan"]["argv"][2], "--sender");
    let lock = v["plan"]["lock"].as_str().unwrap();
    assert!(
        lock.starts_with("shared lock on"),
        "readers take the shared lock: {lock}"
    );
    let out = rshell(&[
        "--test",
        "rsync --server --sender -logDtpre.iLsfxCIvu . dest/",
        "--user",
        "root",
        "--from",
        "192.0.2.1",
        "--config",
        &cfg,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert!(v["plan"].is_null());
}

#[test]
fn test_mode_with_a_forced_key_uses_the_key_as_authority() {
    if !is_root() {
        return;
    }
    let (_d, cfg, root) = setup("");
    let out = rshell(&[
        "--test",
        "rsync --server -logDtpre.iLsfxCIvu . dest/",
        "--user",
        "root",
        "--key",
        &format!("-ro {root}"),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("read-only"), "{}", text(&out));
    let out = rshell(&[
        "--test",
        "true",
        "--user",
        "root",
        "--key",
        &format!("-ro {root}"),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn config_errors_and_usage_errors_have_their_exit_codes() {
    let out = rshell(&[
        "--test",
        "rsync --server . x",
        "--config",
        "/nonexistent/rshell.toml",
        "--user",
        "root",
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("/nonexistent/rshell.toml"),
        "{}",
        text(&out)
    );
    let out = rshell(&["--test"]);
    assert_eq!(out.status.code(), Some(64));
    let out = rshell(&["--test", "x", "--bogus"]);
    assert_eq!(out.status.code(), Some(64));
    let out = rshell(&["--test", "x", "--user", "no-such-user-rshell"]);
    assert_eq!(out.status.code(), Some(64));
    let out = rshell(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.is_empty(),
        "help goes to stderr: stdout may be a protocol channel"
    );
    assert!(text(&out).contains("--check"));
}

#[test]
fn check_reports_errors_with_file_line_col_and_exit_codes() {
    if !is_root() {
        return;
    }
    let (d, cfg, _root) = setup("");
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("ok"), "{}", text(&out));
    std::fs::write(
        &cfg,
        "version = 1\n[users.root]\nroot = \"/srv/x\"\nacess = \"read-only\"\n",
    )
    .unwrap();
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("{cfg}:4:1: unknown field `acess`")),
        "{}",
        text(&out)
    );
    // A writable root holding the home is an error; a missing root a warning (--strict fails).
    std::fs::write(&cfg, "version = 1\n[users.root]\nroot = \"~\"\n").unwrap();
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("holds the home directory"),
        "{}",
        text(&out)
    );
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n[users.root]\nroot = \"{}/missing\"\n",
            d.path().display()
        ),
    )
    .unwrap();
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    let out = rshell(&["--check", "--config", &cfg, "--strict"]);
    assert_eq!(out.status.code(), Some(1));
    // Group/world-writable config: refused at every run, and by --check.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("world-writable"), "{}", text(&out));
    let out = rshell(&["--check", "--config", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn check_fails_when_daemon_modules_do_not_state_the_narrower_policy() {
    if !is_root() {
        return;
    }
    // In daemon mode rsync obeys only rsyncd.conf: a write-only, no-delete policy with
    // daemon = true is an error unless every module says so itself.
    let (d, cfg, root) = setup("");
    let conf = d.path().join("rsyncd.conf");
    let write_conf = |body: &str| {
        std::fs::write(&conf, format!("[backup]\npath = {root}\n{body}")).unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n[users.root]\nroot = \"{root}\"\naccess = \"write-only\"\ndelete = false\ndaemon = true\ndaemon_config = \"{}\"\n",
            conf.display()
        ),
    )
    .unwrap();
    write_conf("read only = no\n");
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "module [backup]: access is write-only but the module does not say \"write only = yes\""
        ),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("module [backup]: delete = false"),
        "{}",
        text(&out)
    );
    write_conf("read only = no\nwrite only = yes\nrefuse options = delete force partial-dir delay-updates backup backup-dir\n");
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    write_conf("&include /etc/rsyncd.d\n");
    let out = rshell(&["--check", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("&include: rshell cannot verify it"),
        "{}",
        text(&out)
    );
}

#[test]
fn policy_shows_each_key_with_its_section() {
    if !is_root() {
        return;
    }
    let (_d, cfg, root) = setup("access = \"read-only\"\n");
    let out = rshell(&["--policy", "--user", "root", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("access = read-only  ([users.root])"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("root expands to: {root}")),
        "{}",
        text(&out)
    );
}

#[test]
fn test_mode_run_as_root_checks_paths_with_the_named_users_permissions() {
    if !is_root() {
        return;
    }
    let dir = TempDir::trusted("perm");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("private/inner")).unwrap();
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = dir.path().join("rshell.toml");
    std::fs::write(
        &cfg,
        format!("version = 1\n[defaults]\nroot = \"{}\"\n", root.display()),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cmd = "rsync --server --sender -logDtpre.iLsfxCIvu . private/inner/";
    let cfg = cfg.display().to_string();
    let out = rshell(&["--test", cmd, "--user", "root", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = rshell(&["--test", cmd, "--user", "nobody", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("permission denied"), "{}", text(&out));
}
