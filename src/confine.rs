//! Landlock confinement (design §3a). Placeholder until the confinement work lands:
//! it describes the ruleset but enforces nothing, and says so.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::policy::{Access, ConfineMode};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ruleset {
    pub read_write: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
    pub read_exec: Vec<PathBuf>,
    pub devices: Vec<PathBuf>,
}

impl Ruleset {
    pub fn for_transfer(root: &Path, access: Access, rsync: &Path, extra_read: &[PathBuf]) -> Ruleset {
        let mut rs = Ruleset { read_write: vec![], read_only: extra_read.to_vec(), read_exec: vec![rsync.to_path_buf()], devices: vec!["/dev/null".into()] };
        match access {
            Access::ReadOnly => rs.read_only.push(root.to_path_buf()),
            _ => rs.read_write.push(root.to_path_buf()),
        }
        rs
    }
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (tag, list) in [("rw", &self.read_write), ("ro", &self.read_only), ("rx", &self.read_exec), ("dev", &self.devices)] {
            for p in list { out.push(format!("{tag} {}", p.display())); }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Status { Enforced { abi: u32 }, Partial { abi: u32 }, NotEnforced { reason: String }, Off }

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Enforced { abi } => write!(f, "landlock=enforced(abi {abi})"),
            Status::Partial { abi } => write!(f, "landlock=partial(abi {abi})"),
            Status::NotEnforced { reason } => write!(f, "landlock=unavailable({reason})"),
            Status::Off => write!(f, "landlock=off"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("landlock required but {0}")]
    Required(String),
}

pub fn apply(_ruleset: &Ruleset, mode: ConfineMode) -> Result<Status, ConfineError> {
    match mode {
        ConfineMode::Off => Ok(Status::Off),
        ConfineMode::Auto => Ok(Status::NotEnforced { reason: "not implemented yet".into() }),
        ConfineMode::Require => Err(ConfineError::Required("not implemented yet".into())),
    }
}

pub fn probe() -> Result<u32, String> {
    Err("not implemented yet".into())
}
