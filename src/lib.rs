//! rshell: a restricted login shell for rsync servers.
pub mod policy;
pub mod sshd;
