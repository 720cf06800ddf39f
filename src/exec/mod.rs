//! The last step: prepare the pins, fork (for the outcome record and the idle timeout),
//! confine (Landlock) and exec rsync; then wait and record the outcome.
#![forbid(unsafe_code)]

pub mod confine;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use crate::decide::{resolve, ExecPlan};
use crate::log;
use crate::system;
use crate::{EXIT_DENIED, EXIT_SYSTEM};

/// What Landlock will do for this plan, as far as can be known before the child applies
/// it: the same decision table the child uses, with its ABI cap.
pub fn predicted_landlock(plan: &ExecPlan) -> String {
    match confine::plan(plan.confine, confine::probe()) {
        confine::Plan::Skip(status) => status.to_string(),
        confine::Plan::Refuse(why) => format!("landlock=refused({why})"),
        confine::Plan::Enforce { abi } => confine::Status::Enforced { abi }.to_string(),
    }
}

/// Prepare the pins, fork (for the outcome record and the idle timeout), confine and exec.
/// The root lock was taken before the paths were resolved; rsync inherits it.
pub(crate) fn execute(plan: &ExecPlan, record: &log::Decision) -> i32 {
    // Directories rshell creates for pins get the policy's umask, as rsync's would.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(plan.umask));
    for pin in &plan.pins {
        let made = match &pin.prepare {
            resolve::Prepare::Nothing => continue,
            resolve::Prepare::CreateDirs { names, mode } => {
                system::create_dirs_beneath(&pin.fd, names, *mode)
            }
            resolve::Prepare::EmptyDir => system::empty_unnamed_dir(&plan.root.fd),
        }
        .and_then(|fd| system::move_fd_to(fd, pin.fd.as_raw_fd()));
        if let Err(e) = made {
            let why = format!(
                "cannot prepare {}: {}",
                crate::command::show(&pin.shown),
                e.desc()
            );
            // As every refusal the client reads: escaped for a terminal, the name's bytes
            // already spelled `\xNN` by `show`.
            eprintln!("rshell: denied: {}", log::escape_for_terminal(&why, 1024));
            log::send(
                &format!(
                    "deny user={} reason=\"{}\"",
                    record.user,
                    log::escape(&why, 256)
                ),
                true,
            );
            return EXIT_SYSTEM;
        }
    }
    let mut keep: Vec<i32> = plan.pins.iter().map(|p| p.fd.as_raw_fd()).collect();
    if let Some(locked) = &plan.locked {
        keep.push(locked.fd.as_raw_fd());
    }
    let forked = plan.log_outcome || plan.timeout > 0;
    let image = system::ExecImage {
        program: &plan.program,
        argv: &plan.argv,
        env: &plan.env,
        cwd: &plan.root.fd,
        umask: plan.umask,
        keep: &keep,
        new_process_group: forked,
    };
    if !forked {
        let confine = || {
            confine::apply(&plan.ruleset, plan.confine, plan.root.fd.as_fd())
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let err = system::exec(&image, confine);
        return exec_failed(&err);
    }
    // Everything the child needs is made ready here, before fork: the argument strings and
    // the Landlock ruleset with its rules. The child then only makes system calls (each page
    // a forked child writes is copied first). Errors surface in the child, as before.
    let prepared = system::prepare_exec(&image);
    let ready = confine::prepare(&plan.ruleset, plan.confine, plan.root.fd.as_fd())
        .map_err(|e| e.to_string());
    let started = Instant::now();
    let (ready_r, ready_w) = match system::exec_notice() {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("rshell: {e}");
            return EXIT_SYSTEM;
        }
    };
    match system::fork() {
        Err(e) => {
            eprintln!("rshell: {e}");
            EXIT_SYSTEM
        }
        Ok(system::Forked::Child) => {
            drop(ready_r);
            // The child reports the Landlock status it really got (the decision record could
            // only predict it) through the exec notice pipe, for the outcome record.
            let confine = || {
                let status = ready?.restrict_self().map_err(|e| e.to_string())?;
                notify_status(&ready_w, &status);
                Ok(())
            };
            let err = match prepared {
                Ok(prepared) => system::exec_prepared(prepared, confine),
                Err(e) => e,
            };
            std::process::exit(exec_failed(&err));
        }
        Ok(system::Forked::Parent(pid)) => {
            drop(ready_w);
            // Open the child's I/O counters once it runs rsync (before exec it is the
            // not-dumpable rshell, whose /proc files belong to root) and while it lives
            // (once it is a zombie, /proc hands its files to root again).
            let applied = system::wait_for_exec(ready_r);
            drop((prepared, ready));
            let landlock = match String::from_utf8_lossy(&applied).into_owned() {
                s if s.is_empty() => "landlock=unknown".to_string(),
                s => s,
            };
            let io = std::fs::File::open(format!("/proc/{pid}/io")).ok();
            system::release_session_stdio();
            let idle = (plan.timeout > 0).then(|| Duration::from_secs(plan.timeout));
            let (code, line) = match system::wait_with_io(pid, io, idle) {
                Ok(ended) => {
                    let (code, status) = match ended.kind {
                        system::ExitKind::Code(c) => (c, format!("exit={c}")),
                        system::ExitKind::Signal(s) => (128 + s, format!("signal={s}")),
                    };
                    let io = ended.io.map_or("io=unknown".to_string(), |(r, w)| {
                        format!("read_bytes={r} written_bytes={w}")
                    });
                    let idle = if ended.idle_killed {
                        format!(" idle_timeout={}", plan.timeout)
                    } else {
                        String::new()
                    };
                    (code, status + " " + &io + &idle)
                }
                Err(e) => (EXIT_SYSTEM, format!("wait failed: {e}")),
            };
            if !plan.log_outcome {
                return code;
            }
            log::send(
                &format!(
                    "outcome user={} uid={} from={} {} {} duration_ms={} {}",
                    record.user,
                    record.uid,
                    record.client.as_deref().unwrap_or("-"),
                    record.reason,
                    log::escape(&landlock, 128),
                    started.elapsed().as_millis(),
                    line
                ),
                false,
            );
            code
        }
    }
}

/// Write `status` into the exec notice pipe, formatted on the stack (no allocation in the
/// forked child).
fn notify_status(fd: &std::os::fd::OwnedFd, status: &confine::Status) {
    use std::io::Write;
    let mut buf = [0u8; 1024];
    let mut rest = &mut buf[..];
    // A status longer than the buffer is cut (the parent keeps at most 1 KiB anyway).
    let _ = write!(rest, "{status}");
    let len = 1024 - rest.len();
    system::notify(fd, &buf[..len]);
}

fn exec_failed(err: &system::SysError) -> i32 {
    eprintln!("rshell: denied: {err}");
    match err {
        system::SysError::Confine(_) => EXIT_DENIED,
        _ => EXIT_SYSTEM,
    }
}
