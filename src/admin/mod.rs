//! The administrator's tools: `--test` and `--policy` (report), `--check` (lint, and the
//! sshd configuration it reads). None of them is reachable by a client.
#![forbid(unsafe_code)]

pub mod lint;
pub mod report;
pub mod sshd;
