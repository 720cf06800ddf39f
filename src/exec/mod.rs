//! The last step: prepare the pins, spawn (for the outcome record and the idle timeout) or
//! exec in place, confined by Landlock; then wait and record the outcome.
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

/// Prepare the pins, spawn (for the outcome record and the idle timeout), confine and exec.
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
    let spawn = plan.log_outcome || plan.timeout > 0;
    let image = system::ExecImage {
        program: &plan.program,
        argv: &plan.argv,
        env: &plan.env,
        cwd: &plan.root.fd,
        umask: plan.umask,
        keep: &keep,
        new_process_group: spawn,
    };
    if !spawn {
        let confine = || {
            confine::apply(&plan.ruleset, plan.confine, plan.root.fd.as_fd())
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let err = system::exec(&image, confine);
        return exec_failed(&err);
    }
    // Everything the child needs is made ready here: the argument strings and the Landlock
    // ruleset with its rules. The child (sharing this process's memory until it execs) then
    // only makes system calls (`system::spawn`).
    let ready = confine::prepare(&plan.ruleset, plan.confine, plan.root.fd.as_fd());
    let started = Instant::now();
    let started_child = match (system::prepare_exec(&image), ready) {
        (Err(e), _) => Err(exec_failed(&e)),
        (_, Err(e)) => Err(exec_failed(&system::SysError::Confine(e.to_string()))),
        (Ok(prepared), Ok(ready)) => match system::spawn(&prepared, ready.ruleset_fd()) {
            Ok(pid) => Ok((pid, ready.status().to_string())),
            Err(system::SpawnError::Setup(e)) => Err(exec_failed(&e)),
            Err(system::SpawnError::Child(step, errno)) => {
                Err(exec_failed(&child_error(step, errno, &plan.program)))
            }
        },
    };
    let (pid, landlock) = match started_child {
        Ok(spawned) => spawned,
        Err(code) => {
            if plan.log_outcome {
                let line = format!("exit={code} io=unknown");
                send_outcome(record, "landlock=unknown", started, &line);
            }
            return code;
        }
    };
    // The child is exec'ing rsync now: its I/O counters are opened as soon as this uid may
    // (see `system::open_proc_io`), while it lives.
    let io = system::open_proc_io(pid);
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
    if plan.log_outcome {
        send_outcome(record, &landlock, started, &line);
    }
    code
}

/// The outcome record: who, the decision's reason, the Landlock status the child had, how
/// long it took since the spawn, and `how` it ended (exit or signal, bytes, idle timeout).
fn send_outcome(record: &log::Decision, landlock: &str, started: Instant, how: &str) {
    log::send(
        &format!(
            "outcome user={} uid={} from={} {} {} duration_ms={} {how}",
            record.user,
            record.uid,
            record.client.as_deref().unwrap_or("-"),
            record.reason,
            log::escape(landlock, 128),
            started.elapsed().as_millis(),
        ),
        false,
    );
}

/// The error for the step at which the spawned child stopped: a Landlock step is a refusal
/// (exit 77, as in place), the others are system errors (exit 71).
fn child_error(
    step: system::ChildStep,
    errno: nix::errno::Errno,
    program: &std::path::Path,
) -> system::SysError {
    use system::{ChildStep, SysError};
    match step {
        ChildStep::Exec => SysError::Exec(program.display().to_string(), errno),
        ChildStep::NoNewPrivs | ChildStep::Landlock => {
            SysError::Confine(confine::failed(step, errno).to_string())
        }
        ChildStep::Chdir => SysError::Io("chdir to root".into(), errno),
        ChildStep::Descriptors => SysError::Io("keep descriptors".into(), errno),
        ChildStep::ProcessGroup => SysError::Io("setpgid".into(), errno),
    }
}

fn exec_failed(err: &system::SysError) -> i32 {
    eprintln!("rshell: denied: {err}");
    match err {
        system::SysError::Confine(_) => EXIT_DENIED,
        _ => EXIT_SYSTEM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use system::ChildStep;

    #[test]
    fn each_failed_child_step_has_its_message_and_exit_code() {
        let rsync = std::path::Path::new("/usr/bin/rsync");
        let table = [
            (
                ChildStep::Exec,
                "cannot run /usr/bin/rsync: ENOENT: No such file or directory",
                EXIT_SYSTEM,
            ),
            (
                ChildStep::Chdir,
                "chdir to root: ENOENT: No such file or directory",
                EXIT_SYSTEM,
            ),
            (
                ChildStep::Descriptors,
                "keep descriptors: ENOENT: No such file or directory",
                EXIT_SYSTEM,
            ),
            (
                ChildStep::ProcessGroup,
                "setpgid: ENOENT: No such file or directory",
                EXIT_SYSTEM,
            ),
            (
                ChildStep::NoNewPrivs,
                "landlock: no_new_privs could not be set: No such file or directory",
                EXIT_DENIED,
            ),
            (
                ChildStep::Landlock,
                "landlock: landlock_restrict_self: No such file or directory",
                EXIT_DENIED,
            ),
        ];
        for (step, message, code) in table {
            let err = child_error(step, Errno::ENOENT, rsync);
            assert_eq!(err.to_string(), message, "{step:?}");
            assert_eq!(exec_failed(&err), code, "{step:?}");
        }
    }
}
