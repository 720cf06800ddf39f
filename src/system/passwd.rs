//! `/etc/passwd` and `/etc/group`, read as files.
//!
//! Why not getpwuid(3): a static glibc binary still dlopen()s the NSS modules named in
//! /etc/nsswitch.conf (Debian 12: `systemd`), which loads shared libraries into rshell —
//! it crashed for regular users, and the loader honours the `LD_LIBRARY_PATH` a user can
//! set through ~/.pam_environment before `main` can clear it. Reading the files keeps every
//! foreign byte of code out of rshell. Accounts and groups the files do not know (LDAP,
//! SSSD, winbind) are asked of a sealed `getent` child instead (identity.rs).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// Parse passwd text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 7 || f[0].is_empty() {
                return None;
            }
            Some(Entry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// Parse group text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 4 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(path)).unwrap_or_default()
}

/// All passwd entries of this machine.
pub fn entries() -> Vec<Entry> {
    parse_passwd(&read(PASSWD))
}

/// All group entries of this machine.
pub fn groups() -> Vec<GroupEntry> {
    parse_group(&read(GROUP))
}

/// The first entry with this uid (as getpwuid would return).
pub fn by_uid(uid: u32) -> Option<Entry> {
    entries().into_iter().find(|e| e.uid == uid)
}

/// The entry with this name.
pub fn by_name(name: &str) -> Option<Entry> {
    entries().into_iter().find(|e| e.name == name)
}

/// Group names of an account: the primary group first, then supplementary groups.
pub fn group_names(entry: &Entry, all: &[GroupEntry]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(g) = all.iter().find(|g| g.gid == entry.gid) {
        names.push(g.name.clone());
    }
    for g in all
        .iter()
        .filter(|g| g.members.iter().any(|m| m == &entry.name))
    {
        if !names.contains(&g.name) {
            names.push(g.name.clone());
        }
    }
    names
}

/// The gid of a group name.
pub fn gid_of(name: &str, all: &[GroupEntry]) -> Option<u32> {
    all.iter().find(|g| g.name == name).map(|g| g.gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        alice:x:1000:1000:Alice,,,:/home/alice:/usr/bin/rshell\n\
        broken:line\n\
        bob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP_TEXT: &str =
        "root:x:0:\nalice:x:1000:\nusers:x:100:\nbackup:x:34:alice,bob\nstaff:x:50:bob\n";

    #[test]
    fn entries_and_groups_parse_like_getpwnam() {
        let p = parse_passwd(PASSWD_TEXT);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].name, "alice");
        assert_eq!(p[1].home, PathBuf::from("/home/alice"));
        assert_eq!(p[1].shell, "/usr/bin/rshell");
        let g = parse_group(GROUP_TEXT);
        assert_eq!(group_names(&p[1], &g), ["alice", "backup"]);
        assert_eq!(group_names(&p[2], &g), ["users", "backup", "staff"]);
        assert_eq!(gid_of("staff", &g), Some(50));
    }
}
