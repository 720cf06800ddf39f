//! Landlock confinement of the exec'd rsync, proved against the running kernel.
//!
//! Every confining test runs in a child process: this test binary re-executes itself with
//! `RSHELL_CONFINE_CHILD` set, and the child ([`child_entry`], before the test harness starts)
//! applies the ruleset to itself and `exec`s the program under test — the same apply-then-exec
//! order rshell uses. The tests that need the kernel to enforce Landlock (ABI 2 or newer) fail
//! without it (see `common::needs`); which Landlock the kernel has is asked of the kernel
//! itself, not of the code under test.
mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rshell::exec::confine::{self, plan, probe, ConfineError, Plan, Ruleset, Status};
use rshell::policy::{Access, ConfineMode};

const RSYNC: &str = "/usr/bin/rsync";
const CHILD_ENV: &str = "RSHELL_CONFINE_CHILD";
const OUTSIDE_FILE: &str = "/etc/hostname";

// ---------------------------------------------------------------- child side

/// Runs before the test harness's `main` in every start of this binary (an ELF
/// `.init_array` entry), so the child side is not a test that would count as passed.
#[used]
#[link_section = ".init_array"]
static CHILD_ENTRY: extern "C" fn() = child_entry;

/// In a normal test run this returns at once. Re-executed by [`run_confined`] or [`fake_ssh`],
/// it applies the ruleset described by the environment and execs the program with this
/// process's stdin and stdout; it never returns then.
extern "C" fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: HashMap<&str, Vec<String>> = spec
        .split('\u{1e}')
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| {
            (
                k,
                v.split('\u{1f}')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            )
        })
        .collect();
    let paths = |key: &str| spec[key].iter().map(PathBuf::from).collect::<Vec<_>>();
    let ruleset = Ruleset {
        read_write: paths("rw"),
        read_only: paths("ro"),
        read_exec: paths("rx"),
        devices: paths("dev"),
    };
    let mode = match spec["mode"][0].as_str() {
        "auto" => ConfineMode::Auto,
        "require" => ConfineMode::Require,
        _ => ConfineMode::Off,
    };
    if let Some(errno) = spec["simulate"].first() {
        simulate_kernel_without_landlock(errno.parse().unwrap());
    }
    // The root rule is built from an opened descriptor, as the real pipeline does.
    let root_fd = std::fs::File::open(
        ruleset
            .read_write
            .first()
            .or(ruleset.read_only.first())
            .expect("a root rule"),
    )
    .expect("open the root");
    match confine::apply(&ruleset, mode, std::os::fd::AsFd::as_fd(&root_fd)) {
        Ok(status) => eprintln!("confine-status: {status}"),
        Err(e) => {
            eprintln!("confine-error: {e}");
            std::process::exit(97);
        }
    }
    let argv = &spec["argv"];
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    eprintln!("exec {}: {err}", argv[0]);
    std::process::exit(98);
}

/// Makes the Landlock syscalls (444–446, the same number on every architecture) fail with
/// `errno` in this thread and what it execs, as on a kernel without Landlock (ENOSYS) or with
/// Landlock not enabled at boot (EOPNOTSUPP).
fn simulate_kernel_without_landlock(errno: u32) {
    common::fail_system_calls(&[444, 445, 446], errno);
}

// ---------------------------------------------------------------- parent side

/// What a confined child did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// How rsync reports the kernel's EACCES, which is what Landlock answers a denied access with.
const EACCES: &str = "Permission denied (13)";

impl Run {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// rsync failed with exit `code` (rsync's 11: file I/O error, 23: partial transfer) and
    /// said `message`.
    fn assert_refused(&self, code: i32, message: &str) {
        assert_eq!(self.code, Some(code), "{self:?}");
        assert!(self.stderr.contains(message), "{message:?} in {self:?}");
    }
    fn status_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("confine-"))
            .unwrap_or("(no confine line)")
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The child's spec, less `argv`, as [`child_entry`] reads it.
fn child_spec(ruleset: &Ruleset, mode: ConfineMode, simulate_errno: Option<i32>) -> String {
    let join = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect::<Vec<_>>()
            .join("\u{1f}")
    };
    let mode = match mode {
        ConfineMode::Auto => "auto",
        ConfineMode::Require => "require",
        ConfineMode::Off => "off",
    };
    [
        format!("rw={}", join(&ruleset.read_write)),
        format!("ro={}", join(&ruleset.read_only)),
        format!("rx={}", join(&ruleset.read_exec)),
        format!("dev={}", join(&ruleset.devices)),
        format!("mode={mode}"),
        format!(
            "simulate={}",
            simulate_errno.map(|e| e.to_string()).unwrap_or_default()
        ),
    ]
    .join("\u{1e}")
}

fn run_confined(
    ruleset: &Ruleset,
    mode: ConfineMode,
    simulate_errno: Option<i32>,
    argv: &[&str],
) -> Run {
    let spec =
        child_spec(ruleset, mode, simulate_errno) + &format!("\u{1e}argv={}", argv.join("\u{1f}"));
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, spec)
        .output()
        .unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The kernel's Landlock ABI, which must be one that enforces rshell's rulesets (≥ 2): the
/// test fails otherwise (or, with `RSHELL_ALLOW_SKIP=1`, skips visibly: `None`).
fn enforcing_kernel() -> Option<u32> {
    if !common::needs("a kernel that enforces Landlock", common::landlock()) {
        return None;
    }
    common::kernel_landlock_abi().ok()
}

/// A fresh transfer root under /tmp, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(name: &str) -> TempRoot {
        let path = PathBuf::from(format!("/tmp/rshell-confine-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempRoot(path)
    }
    fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    /// `rel` under root, as an argument string.
    fn arg(&self, rel: &str) -> String {
        self.join(rel).to_str().unwrap().to_string()
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

/// A source tree inside root with a hard-linked pair and a symlink.
fn populate_source(root: &TempRoot) {
    write(&root.join("src/a.txt"), "alpha\n");
    write(&root.join("src/sub/b.txt"), "bravo\n");
    fs::hard_link(root.join("src/a.txt"), root.join("src/a-link.txt")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("src/sym")).unwrap();
}

// ---------------------------------------------------------------- pure ruleset

#[test]
fn given_read_write_root_then_ruleset_lists_root_rsync_libraries_and_named_system_files() {
    let root = TempRoot::new("pure-rw");
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new(RSYNC), &[]);
    assert_eq!(rs.read_write, vec![root.0.clone()]);
    assert_eq!(rs.read_exec[0], PathBuf::from(RSYNC));
    assert!(rs.read_exec.iter().any(|p| p.starts_with("/usr/lib")));
    assert!(rs.read_only.contains(&PathBuf::from("/etc/passwd")));
    assert!(rs.read_only.contains(&PathBuf::from("/etc/group")));
    assert!(
        !rs.read_only.contains(&PathBuf::from("/etc")),
        "never all of /etc"
    );
    assert!(rs.read_only.iter().all(|p| !p.starts_with(&root.0)));
    assert_eq!(rs.devices, vec![PathBuf::from("/dev/null")]);
    let lines = rs.describe();
    assert_eq!(lines[0], format!("rw {}", root.0.display()));
    assert!(lines.contains(&format!("rx {RSYNC}")));
    assert!(lines.contains(&"dev /dev/null".to_string()));
    println!("{}", lines.join("\n"));
}

#[test]
fn given_write_only_then_root_is_read_write_because_the_receiver_reads_for_deltas() {
    let root = TempRoot::new("pure-wo");
    let wo = Ruleset::for_transfer(&root.0, Access::WriteOnly, Path::new(RSYNC), &[]);
    let rw = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new(RSYNC), &[]);
    assert_eq!(wo, rw);
}

#[test]
fn given_read_only_then_root_is_only_in_read_only() {
    let root = TempRoot::new("pure-ro");
    let rs = Ruleset::for_transfer(&root.0, Access::ReadOnly, Path::new(RSYNC), &[]);
    assert!(rs.read_write.is_empty());
    assert_eq!(rs.read_only[0], root.0);
}

#[test]
fn given_extra_read_then_existing_paths_are_added_and_missing_ones_skipped() {
    let root = TempRoot::new("pure-extra");
    write(&root.join("conf/rsyncd.conf"), "[m]\n");
    let conf = root.join("conf/rsyncd.conf");
    let rs = Ruleset::for_transfer(
        Path::new("/srv"),
        Access::ReadOnly,
        Path::new(RSYNC),
        &[conf.clone(), PathBuf::from("/nonexistent/rsyncd.conf")],
    );
    assert!(rs.read_only.contains(&conf));
    assert!(!rs.read_only.iter().any(|p| p.starts_with("/nonexistent")));
    assert!(rs.describe().contains(&format!("ro {}", conf.display())));
}

#[test]
fn status_displays_as_one_log_token() {
    assert_eq!(
        Status::Enforced { abi: 4 }.to_string(),
        "landlock=enforced(abi 4)"
    );
    assert_eq!(
        Status::Partial { abi: 3 }.to_string(),
        "landlock=partial(abi 3)"
    );
    assert_eq!(
        Status::NotEnforced {
            reason: "kernel landlock ABI < 2".into()
        }
        .to_string(),
        "landlock=unavailable(kernel landlock ABI < 2)"
    );
    assert_eq!(Status::Off.to_string(), "landlock=off");
}

// ---------------------------------------------------------------- decision table

#[test]
fn given_off_then_nothing_is_attempted_whatever_the_kernel() {
    assert_eq!(plan(ConfineMode::Off, Ok(7)), Plan::Skip(Status::Off));
    assert_eq!(
        plan(ConfineMode::Off, Err("x".into())),
        Plan::Skip(Status::Off)
    );
}

#[test]
fn given_abi_1_then_auto_applies_nothing_and_require_refuses() {
    let reason = "kernel landlock ABI < 2".to_string();
    assert_eq!(
        plan(ConfineMode::Auto, Ok(1)),
        Plan::Skip(Status::NotEnforced {
            reason: reason.clone()
        })
    );
    assert_eq!(plan(ConfineMode::Require, Ok(1)), Plan::Refuse(reason));
}

#[test]
fn given_no_landlock_then_auto_applies_nothing_and_require_refuses() {
    let why = "kernel built without landlock".to_string();
    assert_eq!(
        plan(ConfineMode::Auto, Err(why.clone())),
        Plan::Skip(Status::NotEnforced {
            reason: why.clone()
        })
    );
    assert_eq!(
        plan(ConfineMode::Require, Err(why.clone())),
        Plan::Refuse(why)
    );
}

#[test]
fn given_abi_2_or_newer_then_both_modes_enforce_capped_at_the_vetted_abi() {
    for mode in [ConfineMode::Auto, ConfineMode::Require] {
        assert_eq!(plan(mode, Ok(2)), Plan::Enforce { abi: 2 });
        assert_eq!(plan(mode, Ok(7)), Plan::Enforce { abi: 7 });
        assert_eq!(plan(mode, Ok(42)), Plan::Enforce { abi: 8 });
    }
}

// ---------------------------------------------------------------- against the running kernel

/// `probe` gives the answer that follows from the kernel's active LSM list
/// (/sys/kernel/security/lsm) and the raw `landlock_create_ruleset` version query: the ABI
/// where Landlock is active, else the reason the kernel's errno means.
#[test]
fn probe_reports_the_kernel_landlock_abi() {
    let lsms = match common::active_lsms() {
        Ok(lsms) => lsms,
        Err(why) => {
            common::needs("the kernel's active LSM list", Err(why));
            return;
        }
    };
    let kernel = common::kernel_landlock_abi();
    println!("active LSMs: {lsms:?}; landlock_create_ruleset version query: {kernel:?}");
    if lsms.iter().any(|l| l == "landlock") {
        let abi = kernel.expect("Landlock is an active LSM, so the version query answers");
        assert!(abi >= 1);
        assert_eq!(probe(), Ok(abi));
    } else {
        let reason = match kernel {
            Err(libc::ENOSYS) => "kernel built without landlock",
            Err(libc::EOPNOTSUPP) => "landlock not enabled at boot (lsm=)",
            other => panic!("Landlock is not an active LSM, yet the version query gave {other:?}"),
        };
        assert_eq!(probe(), Err(reason.to_string()));
    }
}

#[test]
fn given_read_write_root_then_confined_rsync_copies_links_and_backs_up_inside_root() {
    let Some(abi) = enforcing_kernel() else {
        return;
    };
    let root = TempRoot::new("rsync-rw");
    populate_source(&root);
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new(RSYNC), &[]);
    let rsync = |args: &[&str]| {
        let mut argv = vec![RSYNC];
        argv.extend_from_slice(args);
        let run = run_confined(&rs, ConfineMode::Require, None, &argv);
        assert_eq!(
            run.status_line(),
            format!("confine-status: landlock=enforced(abi {})", abi.min(8))
        );
        run
    };

    // -a -H: plain copy, hard links preserved.
    let run = rsync(&["-aH", &(root.arg("src") + "/"), &(root.arg("dst1") + "/")]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        fs::read_to_string(root.join("dst1/sub/b.txt")).unwrap(),
        "bravo\n"
    );
    assert_eq!(
        ino(&root.join("dst1/a.txt")),
        ino(&root.join("dst1/a-link.txt"))
    );
    assert_eq!(
        fs::read_link(root.join("dst1/sym")).unwrap(),
        PathBuf::from("a.txt")
    );

    // --link-dest: unchanged files become hard links into another directory (needs `refer`).
    let run = rsync(&[
        "-aH",
        &format!("--link-dest={}", root.arg("dst1")),
        &(root.arg("src") + "/"),
        &(root.arg("dst2") + "/"),
    ]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        ino(&root.join("dst2/sub/b.txt")),
        ino(&root.join("dst1/sub/b.txt"))
    );

    // --backup-dir: the replaced file is renamed into another directory (needs `refer`),
    // and --temp-dir writes the new one elsewhere first.
    write(&root.join("src/sub/b.txt"), "bravo, changed\n");
    fs::create_dir(root.join("tmp")).unwrap();
    let run = rsync(&[
        "-aH",
        "--backup",
        &format!("--backup-dir={}", root.arg("bak")),
        &format!("--temp-dir={}", root.arg("tmp")),
        &(root.arg("src") + "/"),
        &(root.arg("dst1") + "/"),
    ]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        fs::read_to_string(root.join("dst1/sub/b.txt")).unwrap(),
        "bravo, changed\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("bak/sub/b.txt")).unwrap(),
        "bravo\n"
    );

    // --delay-updates: files wait in .~tmp~ and are renamed into place at the end.
    let run = rsync(&[
        "-a",
        "--delay-updates",
        &(root.arg("src") + "/"),
        &(root.arg("dst3") + "/"),
    ]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        fs::read_to_string(root.join("dst3/sub/b.txt")).unwrap(),
        "bravo, changed\n"
    );

    // Reading outside root is denied.
    let run = rsync(&["-a", OUTSIDE_FILE, &root.arg("x")]);
    run.assert_refused(
        23,
        &format!("send_files failed to open \"{OUTSIDE_FILE}\": {EACCES}"),
    );
    assert!(!root.join("x").exists());
}

/// A stand-in for sshd running `rshell -c "rsync --server ..."`: the client's rsync runs this
/// script as its remote shell (the child's spec in `$SPEC`); it starts the confined child as
/// the server, the protocol on its stdin and stdout.
fn fake_ssh(dir: &TempRoot) -> PathBuf {
    let script = dir.join("fake-ssh");
    let body = format!(
        "#!/bin/bash\n\
         # $1 is the host, $2 the remote rsync's name: serve with {RSYNC} instead.\n\
         shift 2\n\
         argv=$(IFS=$'\\x1f'; echo \"{RSYNC}\"$'\\x1f'\"$*\")\n\
         export {CHILD_ENV}=\"$SPEC\"$'\\x1e'\"argv=$argv\"\n\
         exec {exe}\n",
        exe = std::env::current_exe().unwrap().display(),
    );
    write(&script, &body);
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn given_read_write_root_then_confined_rsync_server_receives_and_sends() {
    let Some(_) = enforcing_kernel() else {
        return;
    };
    let root = TempRoot::new("server");
    let client = TempRoot::new("server-client");
    populate_source(&client);
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new(RSYNC), &[]);
    let spec = child_spec(&rs, ConfineMode::Require, None);
    let ssh = fake_ssh(&client);
    let try_client_rsync = |args: &[String]| {
        let out = Command::new(RSYNC)
            .args(args)
            .env("SPEC", &spec)
            .output()
            .unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let client_rsync = |args: &[String]| {
        let run = try_client_rsync(args);
        assert!(run.ok(), "{run:?}");
    };
    let e = format!("--rsh={}", ssh.display());

    // Push (confined receiver), then a second push with --link-dest and --backup-dir.
    client_rsync(&[
        "-aH".into(),
        e.clone(),
        client.arg("src") + "/",
        format!("x:{}/", root.arg("day1")),
    ]);
    assert_eq!(
        ino(&root.join("day1/a.txt")),
        ino(&root.join("day1/a-link.txt"))
    );
    write(&client.join("src/sub/b.txt"), "bravo, changed\n");
    client_rsync(&[
        "-aH".into(),
        e.clone(),
        format!("--link-dest={}", root.arg("day1")),
        client.arg("src") + "/",
        format!("x:{}/", root.arg("day2")),
    ]);
    assert_eq!(ino(&root.join("day2/a.txt")), ino(&root.join("day1/a.txt")));
    assert_eq!(
        fs::read_to_string(root.join("day2/sub/b.txt")).unwrap(),
        "bravo, changed\n"
    );
    client_rsync(&[
        "-aH".into(),
        e.clone(),
        "--backup".into(),
        format!("--backup-dir={}", root.arg("bak")),
        client.arg("src") + "/",
        format!("x:{}/", root.arg("day1")),
    ]);
    assert_eq!(
        fs::read_to_string(root.join("bak/sub/b.txt")).unwrap(),
        "bravo\n"
    );

    // Pull (confined sender).
    client_rsync(&[
        "-aH".into(),
        e.clone(),
        format!("x:{}/", root.arg("day2")),
        client.arg("back") + "/",
    ]);
    assert_eq!(
        fs::read_to_string(client.join("back/sub/b.txt")).unwrap(),
        "bravo, changed\n"
    );

    // The server can neither write nor read outside root.
    let outside = TempRoot::new("server-outside");
    let run = try_client_rsync(&[
        "-a".into(),
        e.clone(),
        client.arg("src") + "/",
        format!("x:{}/", outside.arg("dst")),
    ]);
    run.assert_refused(
        11,
        &format!("mkdir \"{}\" failed: {EACCES}", outside.arg("dst")),
    );
    assert!(!outside.join("dst/a.txt").exists());
    let run = try_client_rsync(&[
        "-a".into(),
        e,
        format!("x:{OUTSIDE_FILE}"),
        client.arg("stolen"),
    ]);
    run.assert_refused(
        23,
        &format!("send_files failed to open \"{OUTSIDE_FILE}\": {EACCES}"),
    );
    assert!(!client.join("stolen").exists());
}

#[test]
fn given_read_write_root_then_confined_rsync_cannot_write_outside_root() {
    let Some(_) = enforcing_kernel() else {
        return;
    };
    let root = TempRoot::new("rsync-out");
    let outside = TempRoot::new("rsync-out-target");
    populate_source(&root);
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new(RSYNC), &[]);
    let run = run_confined(
        &rs,
        ConfineMode::Require,
        None,
        &[
            RSYNC,
            "-a",
            &(root.arg("src") + "/"),
            &(outside.arg("dst") + "/"),
        ],
    );
    run.assert_refused(
        11,
        &format!("mkdir \"{}\" failed: {EACCES}", outside.arg("dst")),
    );
    assert!(!outside.join("dst/a.txt").exists());
}

#[test]
fn given_cat_as_the_program_then_it_reads_inside_root_and_gets_eacces_outside() {
    let Some(_) = enforcing_kernel() else {
        return;
    };
    let root = TempRoot::new("cat");
    write(&root.join("file"), "inside\n");
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new("/bin/cat"), &[]);

    let run = run_confined(
        &rs,
        ConfineMode::Require,
        None,
        &["/bin/cat", &root.arg("file")],
    );
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("inside\n"), "{run:?}");

    let run = run_confined(&rs, ConfineMode::Require, None, &["/bin/cat", OUTSIDE_FILE]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("{OUTSIDE_FILE}: Permission denied")),
        "{run:?}"
    );

    // And nothing else may be executed, not even from the library directories' neighbours.
    let run = run_confined(&rs, ConfineMode::Require, None, &["/bin/ls", &root.arg("")]);
    assert_eq!(run.code, Some(98), "{run:?}");
    assert!(
        run.stderr
            .contains("exec /bin/ls: Permission denied (os error 13)"),
        "{run:?}"
    );
}

#[test]
fn given_read_only_root_then_confined_rsync_reads_but_cannot_write_under_root() {
    let Some(_) = enforcing_kernel() else {
        return;
    };
    let root = TempRoot::new("ro");
    populate_source(&root);
    let rs = Ruleset::for_transfer(&root.0, Access::ReadOnly, Path::new(RSYNC), &[]);

    let run = run_confined(
        &rs,
        ConfineMode::Require,
        None,
        &[RSYNC, "-a", "--list-only", &(root.arg("src") + "/")],
    );
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("a-link.txt"), "{run:?}");

    let run = run_confined(
        &rs,
        ConfineMode::Require,
        None,
        &[
            RSYNC,
            "-a",
            &(root.arg("src") + "/"),
            &(root.arg("dst") + "/"),
        ],
    );
    run.assert_refused(
        11,
        &format!("mkdir \"{}\" failed: {EACCES}", root.arg("dst")),
    );
    assert!(!root.join("dst").exists());

    // An existing file can't be opened for writing either: an in-place update of it
    // (--ignore-times, or the quick check would skip the same-size file).
    let run = run_confined(
        &rs,
        ConfineMode::Require,
        None,
        &[
            RSYNC,
            "--inplace",
            "--ignore-times",
            &root.arg("src/sub/b.txt"),
            &root.arg("src/a.txt"),
        ],
    );
    run.assert_refused(
        23,
        &format!("open \"{}\" failed: {EACCES}", root.arg("src/a.txt")),
    );
    assert_eq!(
        fs::read_to_string(root.join("src/a.txt")).unwrap(),
        "alpha\n"
    );
}

#[test]
fn given_off_then_the_program_runs_unconfined() {
    let root = TempRoot::new("off");
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new("/bin/cat"), &[]);
    let run = run_confined(&rs, ConfineMode::Off, None, &["/bin/cat", OUTSIDE_FILE]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.status_line(), "confine-status: landlock=off");
}

#[test]
fn given_a_kernel_without_landlock_then_require_refuses_and_auto_runs_unconfined() {
    let root = TempRoot::new("nolandlock");
    let rs = Ruleset::for_transfer(&root.0, Access::ReadWrite, Path::new("/bin/cat"), &[]);
    for (errno, reason) in [
        (libc::ENOSYS, "kernel built without landlock"),
        (libc::EOPNOTSUPP, "landlock not enabled at boot (lsm=)"),
    ] {
        let run = run_confined(
            &rs,
            ConfineMode::Require,
            Some(errno),
            &["/bin/cat", OUTSIDE_FILE],
        );
        assert_eq!(run.code, Some(97), "{run:?}");
        assert_eq!(
            run.status_line(),
            format!("confine-error: landlock required but {reason}")
        );
        let secret = fs::read_to_string(OUTSIDE_FILE).unwrap();
        assert!(
            !run.stdout.lines().any(|l| l == secret.trim()),
            "cat must not have run: {run:?}"
        );

        let run = run_confined(
            &rs,
            ConfineMode::Auto,
            Some(errno),
            &["/bin/cat", OUTSIDE_FILE],
        );
        assert!(run.ok(), "{run:?}");
        assert_eq!(
            run.status_line(),
            format!("confine-status: landlock=unavailable({reason})")
        );
    }
}

#[test]
fn given_require_error_then_its_message_is_the_log_sentence() {
    let e = ConfineError::Required("kernel landlock ABI < 2".into());
    assert_eq!(
        e.to_string(),
        "landlock required but kernel landlock ABI < 2"
    );
}
