//! rshell: a restricted login shell for rsync servers.
pub mod confine;
pub mod policy;
