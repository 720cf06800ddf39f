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

/// `--test` with a command from a Latin-1 client: the names are raw bytes (`é` = 0xE9,
/// `ÿ` = 0xFF), passed to rshell as they are; the plan hands rsync exactly those bytes,
/// and the report shows them with the log's escaping, never converted.
#[test]
fn test_mode_takes_a_latin1_command_as_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    if !is_root() {
        return;
    }
    let (_d, cfg, root) = setup("");
    std::fs::create_dir(std::path::Path::new(&root).join(OsStr::from_bytes(b"caf\xe9"))).unwrap();
    std::fs::write(
        std::path::Path::new(&root).join(OsStr::from_bytes(b"caf\xe9/n\xff")),
        b"x",
    )
    .unwrap();
    let run = |command: &[u8], json: bool| {
        let mut c = Command::new(common::binary());
        c.arg("--test")
            .arg(OsStr::from_bytes(command))
            .args(["--user", "root", "--config", &cfg])
            .env_clear();
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    // A push into the Latin-1 directory: rsync gets the pinned directory itself.
    let out = run(b"rsync --server -logDtpre.iLsfxCIvu . caf\xe9/", false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::str::from_utf8(&out.stdout).is_ok(),
        "the report is text"
    );
    let t = text(&out);
    assert!(t.contains("verdict: allow"), "{t}");
    assert!(t.contains(" -- . \"<caf\\xe9>/\"\n"), "{t}");
    assert!(
        t.contains(" = \"caf\\xe9\"\n"),
        "the pin shows its bytes escaped: {t}"
    );
    // A pull of a file named with a trailing 0xFF: the name follows its pinned parent.
    let out = run(
        b"rsync --server --sender -logDtpre.iLsfxCIvu . caf\xe9/n\xff",
        true,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    let argv = v["plan"]["argv"].as_array().unwrap();
    let last = argv.last().unwrap().as_str().unwrap();
    assert!(
        last.starts_with("/proc/self/fd/") && last.ends_with("/n\\xff"),
        "{last}"
    );
    assert_eq!(
        v["plan"]["shown_argv"].as_array().unwrap().last().unwrap(),
        "<caf\\xe9>/n\\xff"
    );
    assert_eq!(v["plan"]["paths"][0], "caf\\xe9/n\\xff");
    // The attack twin: the Latin-1 name does not carry `..` out of the root; the reason
    // names the path with its bytes escaped.
    let out = run(
        b"rsync --server -logDtpre.iLsfxCIvu . caf\xe9/../../x\xe9/",
        false,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("reason: \"caf\\xe9/../../x\\xe9/\" leads outside root"),
        "{t}"
    );
    // A value that is not a path must be text: the refusal names the option.
    let out = run(
        b"rsync --server -blogDtpre.iLsfxCIvu --suffix=~\xe9 . caf\xe9/",
        false,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("reason: the value of --suffix is not valid UTF-8"),
        "{}",
        text(&out)
    );
    // Secluded words (`rsync -s`) are bytes as well.
    let out = Command::new(common::binary())
        .args([
            "--test",
            "rsync --server -slogDtpre.iLsfxCIvu",
            "--secluded",
        ])
        .arg(OsStr::from_bytes(b"rsync\\0.\\0caf\xe9/\\0\\0"))
        .args(["--user", "root", "--config", &cfg])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(" -- . \"<caf\\xe9>/\"\n"),
        "{}",
        text(&out)
    );
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
    // Admin output goes to stdout (`rshell --help | less`); no client reaches --help.
    assert!(out.stderr.is_empty(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--check"));
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

// ---- admin habits, dry runs, drop-ins -----------------------------------------------

/// A root-owned 0755 directory `/rshell-test-<pid>-<n>`, removed on drop. A trusted
/// config cannot live under /tmp: everyone may write there.
struct Trusted(std::path::PathBuf);

impl Trusted {
    fn new() -> Trusted {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::path::PathBuf::from(format!("/rshell-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.join("root")).unwrap();
        Trusted(dir)
    }

    fn root(&self) -> String {
        self.0.join("root").display().to_string()
    }

    /// Write `rel` (0644, parents 0755); its path.
    fn write(&self, rel: &str, text: &str) -> String {
        let path = self.0.join(rel);
        let dir = path.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path.display().to_string()
    }

    /// The main config `rshell.toml` with `[defaults]` rooted in `root/`.
    fn main_config(&self, extra: &str) -> String {
        self.write(
            "rshell.toml",
            &format!(
                "version = 1\n[defaults]\nroot = \"{}\"\n{extra}",
                self.root()
            ),
        )
    }
}

impl Drop for Trusted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real run in standalone forced-key form: `rshell --config F DIR` with the client's
/// command in SSH_ORIGINAL_COMMAND.
fn forced(config: &str, dir: &str, command: &str) -> Output {
    Command::new(common::binary())
        .args(["--config", config, dir])
        .env_clear()
        .env("SSH_ORIGINAL_COMMAND", command)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const PULL: &str = "rsync --server --sender -logDtpre.iLsfxCIvu . ./";

#[test]
fn admin_options_are_accepted_in_any_order() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    let expected = rshell(&["--test", PULL, "--user", "root", "--config", &cfg]);
    assert_eq!(expected.status.code(), Some(0), "{}", text(&expected));
    for argv in [
        &["--config", &cfg, "--test", PULL, "--user", "root"][..],
        &["--user", "root", "--config", &cfg, "--test", PULL],
        &[
            "--config=".to_string() + &cfg,
            "--test=".to_string() + PULL,
            "--user=root".into(),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    ] {
        let out = rshell(argv);
        assert_eq!(out.status.code(), Some(0), "{argv:?}: {}", text(&out));
        assert_eq!(out.stdout, expected.stdout, "{argv:?}");
    }
    let out = rshell(&[
        "--config", &cfg, "--test", PULL, "--user", "root", "--json", "--from", "10.0.0.1",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["client"], "10.0.0.1");
    let out = rshell(&["--user", "root", "--config", &cfg, "--policy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = rshell(&["--strict", "--config", &cfg, "--check"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    assert!(stdout(&out).contains("rshell --check:"), "{}", text(&out));
    // Misplaced options are named.
    let out = rshell(&["--config", &cfg, "--policy", "--json"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out).contains("--json is an option of --test"),
        "{}",
        text(&out)
    );
}

#[test]
fn admin_modes_print_to_stdout() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    for argv in [
        &["--help"][..],
        &["--version"],
        &["--policy", "--user", "root", "--config", &cfg],
        &["--test", PULL, "--user", "root", "--config", &cfg],
        &["--check", "--config", &cfg],
    ] {
        let out = rshell(argv);
        assert!(!out.stdout.is_empty(), "{argv:?}: {}", text(&out));
        assert!(
            out.stderr.is_empty(),
            "{argv:?} wrote to stderr: {}",
            text(&out)
        );
    }
    // A client's refusal still goes to stderr, and only there.
    let out = forced(&cfg, &t.root(), "rsync --server --log-file=/x . ./");
    assert_eq!(out.status.code(), Some(77));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("rshell: denied: "));
}

#[test]
fn a_dry_run_evaluates_a_config_root_does_not_own_and_says_so_first() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    for (owner, mode, why) in [
        (65534, 0o644, "must be owned by root (owner uid is 65534)"),
        (
            0,
            0o664,
            "must not be group- or world-writable (it is group-writable, mode 0664)",
        ),
    ] {
        std::os::unix::fs::chown(&cfg, Some(owner), None).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = rshell(&["--test", PULL, "--user", "root", "--config", &cfg]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let first = stdout(&out).lines().next().unwrap_or_default().to_string();
        assert!(
            first.starts_with(&format!("warning: a real run refuses {cfg}: {why}")),
            "{first}"
        );
        assert!(first.contains("sudo install -m 644"), "{first}");
        assert!(stdout(&out).contains("verdict: allow"), "{}", text(&out));
        let out = rshell(&["--policy", "--user", "root", "--config", &cfg]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            stdout(&out).starts_with("warning: a real run refuses"),
            "{}",
            text(&out)
        );
        let out = rshell(&["--test", PULL, "--user", "root", "--config", &cfg, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["refused_by_a_real_run"][0]
                .as_str()
                .unwrap()
                .contains(why),
            "{v}"
        );
        // The real paths keep refusing it.
        let out = forced(&cfg, &t.root(), PULL);
        assert_eq!(out.status.code(), Some(78), "{}", text(&out));
        assert!(text(&out).contains(why), "{}", text(&out));
        let out = rshell(&["--check", "--config", &cfg]);
        assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    }
}

#[test]
fn policy_shows_a_configured_user_that_has_no_account_yet() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config(
        "[users.rshell-test-no-account]\nroot = \"~/backup/%u\"\naccess = \"write-only\"\n",
    );
    let out = rshell(&[
        "--policy",
        "--user",
        "rshell-test-no-account",
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let o = stdout(&out);
    assert!(
        o.contains("no such account yet: its groups are unknown"),
        "{o}"
    );
    assert!(
        o.contains("access = write-only  ([users.rshell-test-no-account])"),
        "{o}"
    );
    assert!(
        o.contains("root expands to: ~/backup/rshell-test-no-account (unexpanded"),
        "{o}"
    );
    let out = rshell(&[
        "--policy",
        "--user",
        "rshell-test-nobody-at-all",
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("no [users.rshell-test-nobody-at-all] section"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_client_refusal_shows_quotes_as_they_are_and_escapes_controls() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    let out = forced(&cfg, &t.root(), "rsync --server --sender . '../a\"b'");
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // The reason quotes the word; the line shows that quote as is, not as `\"`.
    assert!(err.starts_with("rshell: denied: \"../a"), "{err}");
    let out = forced(
        &cfg,
        &t.root(),
        "rsync --server --sender . '../\u{1b}[2J\u{202e}x'",
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{202e}'),
        "{err:?}"
    );
}

#[test]
fn test_mode_escapes_control_and_format_characters_of_file_names() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    // A root whose name holds ESC and a right-to-left override: it shows up in the
    // policy rows, the argv, the working directory and the Landlock rules.
    let name = "evil\u{1b}[31m\u{202e}txt\nfake: line";
    std::fs::create_dir(t.0.join(name)).unwrap();
    let cfg = t.write(
        "rshell.toml",
        &format!(
            "version = 1\n[defaults]\nroot = \"{}/evil\\u001b[31m\\u202etxt\\nfake: line\"\n",
            t.0.display()
        ),
    );
    let out = rshell(&["--test", PULL, "--user", "root", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let o = stdout(&out);
    assert!(!o.contains('\u{1b}') && !o.contains('\u{202e}'), "{o:?}");
    assert!(o.contains("cwd: /rshell-test-"), "{o}");
    assert!(
        o.contains("/evil\\x1b[31m\\u{202e}txt\\x0afake: line (the opened root"),
        "{o}"
    );
    assert!(!o.lines().any(|l| l.starts_with("fake")), "{o}");
    let out = rshell(&["--policy", "--user", "root", "--config", &cfg]);
    let o = stdout(&out);
    assert!(
        !o.contains('\u{1b}') && o.contains("evil\\x1b[31m"),
        "{o:?}"
    );
}

#[test]
fn drop_ins_merge_in_name_order_and_only_toml_files_count() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    t.write(
        "rshell.d/20-root.toml",
        "version = 1\n[users.root]\naccess = \"read-only\"\n",
    );
    t.write(
        "rshell.d/10-groups.toml",
        "version = 1\n[groups.root]\ndelete = false\n",
    );
    // Not drop-ins: a dotfile, editor and package-manager leftovers (all invalid).
    for junk in [
        ".20-root.toml",
        "20-root.toml~",
        "20-root.toml.dpkg-dist",
        "#20-root.toml#",
        "README",
    ] {
        t.write(&format!("rshell.d/{junk}"), "this is not TOML [");
    }
    let out = rshell(&["--policy", "--user", "root", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let o = stdout(&out);
    let d = t.0.join("rshell.d").display().to_string();
    assert!(
        o.contains(&format!("config: {cfg} + 2 drop-ins in {d}")),
        "{o}"
    );
    assert!(
        o.contains(&format!("section: [users.root] ({d}/20-root.toml)")),
        "{o}"
    );
    assert!(
        o.contains(&format!("section: [groups.root] ({d}/10-groups.toml)")),
        "{o}"
    );
    assert!(o.contains("access = read-only  ([users.root])"), "{o}");
    assert!(o.contains("delete = false  ([groups.root])"), "{o}");
    let out = rshell(&["--test", PULL, "--user", "root", "--config", &cfg]);
    assert!(
        stdout(&out).contains(&format!("section: [users.root] ({d}/20-root.toml)")),
        "{}",
        text(&out)
    );
    // The real run reads them too.
    let out = forced(&cfg, &t.root(), "rsync --server -logDtpre.iLsfxCIvu . ./");
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
}

#[test]
fn any_error_in_any_drop_in_denies_everything() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    let d = t.0.join("rshell.d").display().to_string();
    for (file, body, needle) in [
        (
            "30-x.toml",
            "version = 1\n[users.x]\nacess = \"read-only\"\n",
            "30-x.toml:3:1: unknown field `acess`",
        ),
        (
            "30-x.toml",
            "[users.x]\n",
            "30-x.toml:1:1: `version = 1` is missing",
        ),
        ("30-x.toml", "version = 1\n[users.x\n", "30-x.toml:2:"),
        (
            "30-x.toml",
            "version = 1\n[defaults]\nlock = false\n",
            "30-x.toml:2:2: [defaults] is already defined at",
        ),
    ] {
        t.write(&format!("rshell.d/{file}"), body);
        for out in [
            rshell(&["--test", PULL, "--user", "root", "--config", &cfg]),
            forced(&cfg, &t.root(), PULL),
        ] {
            assert_eq!(out.status.code(), Some(78), "{body}: {}", text(&out));
            assert!(
                text(&out).contains(&format!("{d}/{needle}")),
                "{body}: {}",
                text(&out)
            );
        }
        std::fs::remove_file(format!("{d}/{file}")).unwrap();
    }
    // One section in two files: both files are named.
    t.write(
        "rshell.d/10-a.toml",
        "version = 1\n[users.root]\nlock = false\n",
    );
    t.write(
        "rshell.d/20-b.toml",
        "version = 1\n\n[users.root]\nmunge_links = true\n",
    );
    let out = rshell(&["--policy", "--user", "root", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{d}/20-b.toml:3:8: [users.root] is already defined at {d}/10-a.toml:2:8"
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn drop_ins_follow_the_trust_rules() {
    if !is_root() {
        return;
    }
    let t = Trusted::new();
    let cfg = t.main_config("");
    let drop_in = t.write(
        "rshell.d/10-root.toml",
        "version = 1\n[users.root]\naccess = \"read-only\"\n",
    );
    let d = t.0.join("rshell.d");
    // A directory others can write: anyone could add policy.
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = forced(&cfg, &t.root(), PULL);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("the drop-in directory must not be group- or world-writable"),
        "{}",
        text(&out)
    );
    let out = rshell(&["--test", PULL, "--user", "root", "--config", &cfg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the dry run evaluates it: {}",
        text(&out)
    );
    assert!(
        stdout(&out).starts_with(&format!("warning: a real run refuses {}", d.display())),
        "{}",
        text(&out)
    );
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A drop-in root does not own.
    std::os::unix::fs::chown(&drop_in, Some(65534), None).unwrap();
    let out = forced(&cfg, &t.root(), PULL);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{drop_in}: must be owned by root")),
        "{}",
        text(&out)
    );
    // No drop-in directory at all is fine.
    std::fs::remove_dir_all(&d).unwrap();
    let out = forced(&cfg, &t.root(), PULL);
    assert_ne!(out.status.code(), Some(78), "{}", text(&out));
}

/// `--test --secluded`: an administrator checks a BackupPC command (secluded arguments)
/// before deploying it, and hidden options in the words are refused like on a command line.
#[test]
fn test_mode_takes_the_secluded_words_of_a_backuppc_command() {
    if !is_root() {
        return;
    }
    let (_dir, cfg, _root) = setup("");
    let bpc = "/usr/bin/rsync --server --sender -slHogDtprcxe.iLsfxC";
    let out = rshell(&[
        "--test",
        bpc,
        "--secluded",
        r"rsync\0--timeout=72000\0--numeric-ids\0.\0/\0\0",
        "--user",
        "root",
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.contains("verdict: allow"), "{t}");
    assert!(t.contains("--timeout=72000"), "{t}");
    // Without the words the command line alone is refused with the hint.
    let out = rshell(&["--test", bpc, "--user", "root", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("--secluded"), "{}", text(&out));
    // A hidden --log-file in the words: refused.
    let out = rshell(&[
        "--test",
        bpc,
        "--secluded",
        r"rsync\0--log-file=/tmp/x\0.\0/\0\0",
        "--user",
        "root",
        "--config",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("--log-file"), "{}", text(&out));
}

#[test]
fn closed_standard_descriptors_are_reopened_on_dev_null_before_anything_else() {
    use std::os::unix::process::CommandExt;
    if !is_root() {
        return;
    }
    // The configured "rsync" records what its standard descriptors are.
    let (dir, _, root) = setup("");
    let script = dir.path().join("fake-rsync");
    std::fs::write(
        &script,
        "#!/bin/sh\nreadlink /proc/self/fd/2 > fd2; readlink /proc/self/fd/0 > fd0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("closed.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n[users.root]\nroot = \"{root}\"\nrsync = \"{}\"\nconfine = \"off\"\n",
            script.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(common::binary());
    cmd.args(["--config", cfg.to_str().unwrap(), &root])
        .env_clear()
        .env("SSH_ORIGINAL_COMMAND", PULL)
        .stdin(std::process::Stdio::null());
    // SAFETY: close(2) in the child between fork and exec: a plain system call.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(2);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let seen =
        |name: &str| std::fs::read_to_string(std::path::Path::new(&root).join(name)).unwrap();
    // Without the reopening, the first file or socket rshell opened would have become
    // descriptor 2, and rsync's error output would go there.
    assert_eq!(seen("fd2").trim(), "/dev/null");
    assert_eq!(seen("fd0").trim(), "/dev/null");
}
