//! rshell: a restricted login shell that runs only vetted `rsync --server` invocations.
//!
//! The pipeline reads like the security argument (docs/ARCHITECTURE.md, `pipeline`):
//! argv → mode → policy (user from passwd, client from SSH_CONNECTION, key flags)
//! → split the command (no shell) → parse the rsync invocation (option table)
//! → decide (paths beneath root; exact argv) → log → lock, confine, exec.
//! `--test` shares every step up to the decision and differs only in its sinks.
//!
//! One folder per room: `system` (the only `unsafe`: syscalls, accounts),
//! `policy` (schema, layering, trusted-file loading), `command` (the client's words:
//! split, secluded reader, wildcards), `rsync` (option table, installed binary, daemon
//! config), `decide` (paths beneath the pinned root, the plan), `exec` (pins, Landlock,
//! spawn or exec, outcome), `admin` (`--test`, `--policy`, `--check`).
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod command;
pub mod decide;
pub mod exec;
pub mod log;
pub mod pipeline;
pub mod policy;
pub mod rsync;
#[allow(unsafe_code)]
pub mod system;

use std::time::Duration;

pub use exec::predicted_landlock;
pub use pipeline::{
    decide_command, decide_secluded, evaluate, landlock_will_enforce, run, Evaluation, Input,
    SecludedWords,
};

/// Exit codes, outside rsync's own 1–35.
pub const EXIT_DENIED: i32 = 77;
pub const EXIT_USAGE: i32 = 64;
pub const EXIT_CONFIG: i32 = 78;
pub const EXIT_SYSTEM: i32 = 71;

/// How long a second writer waits for the root lock before a clear refusal.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Which invocation form is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Login,
    Nested,
    Standalone,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Login => "login-shell",
            Form::Nested => "nested-forced",
            Form::Standalone => "forced",
        }
    }
}

/// Why a request did not get as far as a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Refused: the reason names the offending word or rule.
    Denied(String),
    /// The configuration is unusable (all or nothing).
    Config(String),
    /// `true` in standalone forced mode: rrsync's connectivity probe, exit 0.
    Probe,
}
