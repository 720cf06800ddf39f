//! `system::spawn`: the child that becomes rsync on rshell's default path (outcome record,
//! idle timeout). It shares rshell's memory until it execs (CLONE_VM | CLONE_VFORK), so each
//! of its steps is proved here by what the exec'd program finds: working directory, umask,
//! process group, signal mask, inherited descriptors, Landlock; and each failing step by the
//! error spawn returns and by the program not having run.
mod common;

use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use rshell::exec::confine::{self, Ruleset, Status};
use rshell::policy::ConfineMode;
use rshell::system::{self, ChildStep, ExecImage, SpawnError};

const OLD_KERNEL_ENV: &str = "RSHELL_SPAWN_OLD_KERNEL";

/// Runs before the test harness's `main` in every start of this binary (an ELF `.init_array`
/// entry). In a normal run it returns at once; re-executed by
/// [`without_close_range_the_child_marks_every_open_descriptor_itself`] it makes close_range
/// fail as on Linux before 5.11 (seccomp, this process only), spawns, and exits.
#[used]
#[link_section = ".init_array"]
static CHILD_ENTRY: extern "C" fn() = child_entry;

extern "C" fn child_entry() {
    let Some(dir) = std::env::var_os(OLD_KERNEL_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    fail_close_range_with_enosys();
    let cwd = open_dir(&dir);
    let (kept, _other, script) = kept_and_other(&dir);
    let code = run(&cwd, &script, &[kept.as_raw_fd()], None).unwrap();
    std::process::exit(code);
}

/// close_range fails with ENOSYS in this process from now on, as before Linux 5.9.
fn fail_close_range_with_enosys() {
    common::fail_system_calls(&[libc::SYS_close_range as u32], libc::ENOSYS as u32);
}

/// Two descriptors opened without close-on-exec in `dir` ("kept" and "other"), and a script
/// that records, in kept.seen and other.seen, what the shell finds behind their numbers.
fn kept_and_other(dir: &Path) -> (OwnedFd, OwnedFd, String) {
    let kept = open(&dir.join("kept"), OFlag::O_RDONLY, Mode::empty()).unwrap();
    let other = open(&dir.join("other"), OFlag::O_RDONLY, Mode::empty()).unwrap();
    let script = format!(
        "readlink /proc/$$/fd/{} > kept.seen; readlink /proc/$$/fd/{} > other.seen; true",
        kept.as_raw_fd(),
        other.as_raw_fd()
    );
    (kept, other, script)
}

/// What [`kept_and_other`]'s script saw: the kept file, and nothing for the other.
fn assert_only_kept_seen(dir: &Path) {
    assert_eq!(
        read(dir, "kept.seen").trim(),
        dir.join("kept").to_str().unwrap()
    );
    assert_eq!(
        read(dir, "other.seen"),
        "",
        "a descriptor not kept leaked into the child"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rshell-spawn-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn open_dir(path: &Path) -> OwnedFd {
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

fn sh(script: &str) -> Vec<OsString> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn env() -> Vec<(String, String)> {
    vec![("PATH".into(), "/usr/bin:/bin".into())]
}

/// Spawn `/bin/sh -c script` in `cwd` and wait for it; the exit code.
fn run(
    cwd: &OwnedFd,
    script: &str,
    keep: &[i32],
    ruleset: Option<std::os::fd::BorrowedFd>,
) -> Result<i32, SpawnError> {
    run_program("/bin/sh", sh(script), cwd, keep, ruleset)
}

fn run_program(
    program: &str,
    argv: Vec<OsString>,
    cwd: &OwnedFd,
    keep: &[i32],
    ruleset: Option<std::os::fd::BorrowedFd>,
) -> Result<i32, SpawnError> {
    let env = env();
    let image = ExecImage {
        program: Path::new(program),
        argv: &argv,
        env: &env,
        cwd,
        umask: 0o027,
        keep,
        new_process_group: true,
    };
    let prepared = system::prepare_exec(&image).unwrap();
    let pid = system::spawn(&prepared, ruleset)?;
    match waitpid(Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, code) => Ok(code),
        other => panic!("child ended as {other:?}"),
    }
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_child_runs_in_the_root_with_the_umask_in_its_own_group_with_the_callers_signal_mask() {
    let dir = scratch("setup");
    let cwd = open_dir(&dir);
    let before = std::env::current_dir().unwrap();
    // Block SIGUSR1 in this thread: the child must exec with exactly this mask, not with the
    // everything-blocked mask spawn holds while the child shares its memory. Perl reports it
    // (dash, /bin/sh here, clears the mask when it starts).
    let mut usr1 = nix::sys::signal::SigSet::empty();
    usr1.add(nix::sys::signal::Signal::SIGUSR1);
    let old = usr1
        .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
        .unwrap();
    let perl = run_program(
        "/usr/bin/perl",
        vec![
            "perl".into(),
            "-e".into(),
            "open(S, '<', '/proc/self/status') or exit 2; open(O, '>', 'status') or exit 3; \
             print O <S>; close(O) or exit 4"
                .into(),
        ],
        &cwd,
        &[],
        None,
    );
    old.thread_set_mask().unwrap();
    assert_eq!(perl.unwrap(), 0);
    let code = run(
        &cwd,
        "echo $$ > pid; cat /proc/self/stat > stat; umask > umask; pwd -P > pwd",
        &[],
        None,
    );
    assert_eq!(code.unwrap(), 0);
    assert_eq!(read(&dir, "pwd").trim(), dir.to_str().unwrap());
    assert_eq!(read(&dir, "umask").trim(), "0027");
    // The shell leads its own process group (cat, its child, is in it).
    let pid = read(&dir, "pid").trim().to_string();
    let stat = read(&dir, "stat");
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let pgrp = after_comm.split_whitespace().nth(2).unwrap();
    assert_eq!(pgrp, pid, "process group of the spawned child");
    let status = read(&dir, "status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        field("SigBlk:"),
        format!("{:016x}", 1u64 << (libc::SIGUSR1 - 1))
    );
    assert_eq!(
        field("NoNewPrivs:"),
        "0",
        "no ruleset given: nothing restricted"
    );
    // spawn changed neither this process's working directory nor its umask.
    assert_eq!(std::env::current_dir().unwrap(), before);
    let umask = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(umask);
    assert_ne!(umask.bits(), 0o027);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_child_inherits_the_descriptors_kept_and_no_other() {
    let dir = scratch("fds");
    let cwd = open_dir(&dir);
    fs::write(dir.join("kept"), "k").unwrap();
    fs::write(dir.join("other"), "o").unwrap();
    // Both opened without close-on-exec: spawn itself must decide what the child gets.
    let (kept, _other, script) = kept_and_other(&dir);
    assert_eq!(run(&cwd, &script, &[kept.as_raw_fd()], None).unwrap(), 0);
    assert_only_kept_seen(&dir);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spawn_leaves_the_callers_descriptor_flags_as_they_were() {
    let dir = scratch("flags");
    let cwd = open_dir(&dir);
    fs::write(dir.join("f"), "").unwrap();
    let plain = open(&dir.join("f"), OFlag::O_RDONLY, Mode::empty()).unwrap();
    let cloexec = open(
        &dir.join("f"),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let flags = |fd: &OwnedFd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    let before = (flags(&plain), flags(&cloexec));
    assert_eq!(run(&cwd, "true", &[cloexec.as_raw_fd()], None).unwrap(), 0);
    assert_eq!((flags(&plain), flags(&cloexec)), before);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_close_range_the_child_marks_every_open_descriptor_itself() {
    let dir = scratch("oldkernel");
    fs::write(dir.join("kept"), "k").unwrap();
    fs::write(dir.join("other"), "o").unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(OLD_KERNEL_ENV, &dir)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    assert_only_kept_seen(&dir);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_child_is_confined_by_the_prepared_landlock_ruleset() {
    if !common::needs("a kernel enforcing Landlock", common::landlock()) {
        return;
    }
    let dir = scratch("landlock");
    let cwd = open_dir(&dir);
    let ruleset = Ruleset {
        read_write: vec![dir.clone()],
        read_only: vec![],
        read_exec: ["/usr", "/bin", "/lib", "/lib64"]
            .iter()
            .map(PathBuf::from)
            .collect(),
        devices: vec![PathBuf::from("/dev/null")],
    };
    let ready = confine::prepare(&ruleset, ConfineMode::Require, cwd.as_fd()).unwrap();
    assert!(
        matches!(ready.status(), Status::Enforced { .. }),
        "{}",
        ready.status()
    );
    let code = run(
        &cwd,
        "echo in > inside; cat /etc/hostname > copy 2>/dev/null; echo $? > rc; true",
        &[],
        ready.ruleset_fd(),
    )
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        read(&dir, "inside").trim(),
        "in",
        "writing beneath the root is allowed"
    );
    assert_ne!(
        read(&dir, "rc").trim(),
        "0",
        "reading /etc/hostname must be denied"
    );
    assert_eq!(read(&dir, "copy"), "");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_step_that_fails_is_named_and_the_program_never_runs() {
    let dir = scratch("fail");
    let cwd = open_dir(&dir);
    let marker = "touch ran";

    // execve: no such program.
    let (argv, env) = (sh(marker), env());
    let image = ExecImage {
        program: Path::new("/nonexistent/rsync"),
        argv: &argv,
        env: &env,
        cwd: &cwd,
        umask: 0o022,
        keep: &[],
        new_process_group: true,
    };
    let prepared = system::prepare_exec(&image).unwrap();
    match system::spawn(&prepared, None) {
        Err(SpawnError::Child(ChildStep::Exec, Errno::ENOENT)) => {}
        other => panic!("exec of a missing program: {other:?}"),
    }

    // fchdir: the "root" is a regular file.
    fs::write(dir.join("file"), "").unwrap();
    let file = open(
        &dir.join("file"),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    match run(&file, marker, &[], None) {
        Err(SpawnError::Child(ChildStep::Chdir, Errno::ENOTDIR)) => {}
        other => panic!("chdir into a file: {other:?}"),
    }

    // landlock_restrict_self: the descriptor is no Landlock ruleset (on a kernel without
    // Landlock the call fails too). The shell must not have run unconfined.
    match run(&cwd, marker, &[], Some(file.as_fd())) {
        Err(SpawnError::Child(ChildStep::Landlock, _)) => {}
        other => panic!("restricting with a non-ruleset descriptor: {other:?}"),
    }
    assert!(
        !dir.join("ran").exists(),
        "the program ran although a step failed"
    );
    fs::remove_dir_all(&dir).unwrap();
}
