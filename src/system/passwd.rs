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

/// The fields of a `:`-separated line if it has exactly `N` of them (no allocation).
fn fields<const N: usize>(line: &str) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut parts = line.split(':');
    for field in &mut out {
        *field = parts.next()?;
    }
    parts.next().is_none().then_some(out)
}

/// Lines that are entries: not comments, not NIS `+`/`-` compat entries.
fn entry_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
}

/// Parse passwd text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<Entry> {
    entry_lines(text)
        .filter_map(|l| {
            let [name, _, uid, gid, _, home, shell] = fields::<7>(l)?;
            if name.is_empty() {
                return None;
            }
            Some(Entry {
                name: name.to_string(),
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home: PathBuf::from(home),
                shell: shell.to_string(),
            })
        })
        .collect()
}

/// Parse group text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    entry_lines(text)
        .filter_map(|l| {
            let [name, _, gid, members] = fields::<4>(l)?;
            if name.is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: name.to_string(),
                gid: gid.parse().ok()?,
                members: members
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
    fn a_line_needs_exactly_its_number_of_fields() {
        assert_eq!(parse_passwd("a:x:1:2:g:/h\n").len(), 0);
        assert_eq!(parse_passwd("a:x:1:2:g:/h:/s:extra\n").len(), 0);
        assert_eq!(parse_passwd(":x:1:2:g:/h:/s\n").len(), 0);
        assert_eq!(parse_passwd("a:x:one:2:g:/h:/s\n").len(), 0);
        assert_eq!(
            parse_passwd("+a:x:1:2:g:/h:/s\n-b:x:1:2:g:/h:/s\n").len(),
            0
        );
        assert_eq!(parse_passwd("a:x:1:2::/h:\n")[0].shell, "");
        assert_eq!(parse_group("g:x:5\n").len(), 0);
        assert_eq!(parse_group("g:x:5:a:b\n").len(), 0);
        assert_eq!(parse_group("g:x:5:\n")[0].members, Vec::<String>::new());
        assert_eq!(parse_group("g:x:5:a,,b\n")[0].members, ["a", "b"]);
    }

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
