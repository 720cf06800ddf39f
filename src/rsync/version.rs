//! What the configured rsync binary supports, learned from the binary file itself.
//!
//! rshell forces two receiver/server options that only rsync 3.5.0 and newer know:
//! `--confine-root=DIR` (operator paths and per-directory filter merge files named by the
//! client over the protocol must resolve inside DIR) and `--drop-D` (the receiver creates
//! no device or special files). rsync 3.2.7 (Debian 12, Ubuntu) and 3.2.3 (RHEL 9) reject
//! both as unknown options, so rshell must know before it builds the argv.
//!
//! How: the binary is read (bounded, regular file only) and its NUL-terminated strings are
//! scanned. rsync's option table is a popt table whose `longName` members are C string
//! literals, so an rsync that accepts `--confine-root` carries the bytes `confine-root\0`
//! (the linker may merge it into the tail of a longer literal such as `--confine-root\0`,
//! hence the suffix match), and one that accepts `--drop-D` carries `drop-D\0` (or its
//! merged form `no-drop-D\0`). That the file is rsync at all is recognised by the format
//! string of `rsync --version` (`%s  version %s  protocol version %d%s`, unchanged since
//! rsync 2.6).
//!
//! Where: C string literals live in the read-only data section, `.rodata` (62 KB of the
//! 587 KB rsync 3.5.0 binary of Debian 12, 56 KB of 3.2.7's). When the file is an ELF
//! executable whose section headers name a `.rodata` that holds the `--version` string,
//! only that section is read and searched; otherwise (no ELF, no section headers, no
//! `.rodata`, or the string is not in it) the whole file is, as before. Both are read in
//! chunks into a buffer on the stack. Reading one section costs about 30 µs where the whole
//! file cost about 490 µs (three memmem(3) passes over 587 KB), on every connection.
//!
//! Why not run `rsync --help`: that is one more exec per connection (rshell runs as the
//! account, once per connection) and its answer could only be cached in a file the account
//! cannot write, i.e. one root maintains. Reading one section from the page cache needs no
//! cache and no exec.
//!
//! Failing safe both ways:
//! - A file rshell cannot identify as rsync (a wrapper script, a compressed binary, an
//!   unreadable file) is *assumed current*: both options are forced. If that rsync is in
//!   fact older, it stops at option parsing ("unknown option") before it touches a file.
//! - Only a positively identified rsync that lacks the strings gets the reduced argv, and
//!   `decide` then refuses what neither the option nor Landlock can guard.
//! - Searching `.rodata` alone can only differ from searching the whole file for a binary
//!   whose `--version` string is in `.rodata` but whose option names are elsewhere (C
//!   compilers put string literals into `.rodata`): it would be taken for an older rsync,
//!   which gets the reduced argv and the refusals above; never the other way round.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Larger files are not scanned (assumed current). rsync is ~0.6 MB dynamically and
/// ~2 MB statically linked.
pub const MAX_BINARY: u64 = 32 << 20;

/// The `--version` format string (rsync's print_rsync_version()).
const IDENTITY: &[u8] = b"%s  version %s  protocol version ";

/// How the answer was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// The binary was read and recognised as rsync.
    Scanned,
    /// Not recognised (the reason says why): the options are forced as for a current rsync.
    Assumed(String),
}

/// The options of the configured rsync that rshell relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    pub confine_root: bool,
    pub drop_d: bool,
    pub basis: Basis,
}

impl Features {
    /// What a current rsync (3.5.0 or newer) has.
    pub fn current(why: impl Into<String>) -> Features {
        Features {
            confine_root: true,
            drop_d: true,
            basis: Basis::Assumed(why.into()),
        }
    }

    /// True for an rsync that was read and found to be older than 3.5.0.
    pub fn older(&self) -> bool {
        self.basis == Basis::Scanned && !(self.confine_root && self.drop_d)
    }
}

/// The searched strings as C literals: a C string literal ends at its NUL, so
/// `confine-root\0` is the option name (or the tail of a longer literal the linker merged it
/// into), never help text such as `--confine-root=DIR  refuse ...`.
const CONFINE_ROOT_LITERAL: &[u8] = b"confine-root\0";
const DROP_D_LITERAL: &[u8] = b"drop-D\0";

/// Which of the searched strings a text holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Found {
    identity: bool,
    confine_root: bool,
    drop_d: bool,
}

impl Found {
    fn add(&mut self, bytes: &[u8]) {
        let has = |needle: &[u8]| crate::system::contains_bytes(bytes, needle);
        self.identity = self.identity || has(IDENTITY);
        self.confine_root = self.confine_root || has(CONFINE_ROOT_LITERAL);
        self.drop_d = self.drop_d || has(DROP_D_LITERAL);
    }

    fn all(&self) -> bool {
        self.identity && self.confine_root && self.drop_d
    }

    /// `None` if not recognisably rsync, else whether it has `--confine-root`, `--drop-D`.
    fn answer(self) -> Option<(bool, bool)> {
        self.identity.then_some((self.confine_root, self.drop_d))
    }
}

/// Scan the bytes of a binary. `None` if it is not recognisably rsync.
pub fn scan(bytes: &[u8]) -> Option<(bool, bool)> {
    let mut found = Found::default();
    found.add(bytes);
    found.answer()
}

/// Bytes read at a time: a buffer on the stack, so a scan allocates nothing (a connection's
/// fresh heap pages each cost a page fault).
const CHUNK: usize = 16 * 1024;
/// Consecutive chunks overlap by this many bytes, at least the longest searched string less
/// one, so that a string straddling two chunks is found as in one slice.
const OVERLAP: usize = 64;
const _: () = assert!(OVERLAP > IDENTITY.len() && OVERLAP > CONFINE_ROOT_LITERAL.len());

/// [`Found`] for the `len` bytes at `offset` of `file` (which has `size` bytes), read in
/// chunks; stops early once everything is found.
fn scan_range(file: &File, size: u64, offset: u64, len: u64) -> Result<Found, String> {
    let end = offset
        .checked_add(len)
        .filter(|end| *end <= size)
        .ok_or("a section lies beyond the end of the file")?;
    let mut buf = [0u8; OVERLAP + CHUNK];
    let mut found = Found::default();
    let (mut at, mut kept) = (offset, 0);
    while at < end && !found.all() {
        let want = (end - at).min(CHUNK as u64) as usize;
        file.read_exact_at(&mut buf[kept..kept + want], at)
            .map_err(|e| format!("cannot read it: {e}"))?;
        let filled = kept + want;
        found.add(&buf[..filled]);
        at += want as u64;
        kept = filled.min(OVERLAP - 1);
        buf.copy_within(filled - kept..filled, 0);
    }
    Ok(found)
}

/// The identity of a file's content as far as a cache needs it.
type Key = (u64, u64, u64, i64, i64, i64, i64);

fn key(m: &std::fs::Metadata) -> Key {
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Open the binary at `path` (as execve(2) would find it: symlinks followed) if it is a
/// regular file of at most [`MAX_BINARY`] bytes.
fn open(path: &Path) -> Result<(File, std::fs::Metadata), String> {
    // stat first: opening a FIFO or a device named here could block or have side effects.
    let before = std::fs::metadata(path).map_err(|e| format!("cannot stat it: {e}"))?;
    if !before.is_file() {
        return Err("not a regular file".into());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() || meta.dev() != before.dev() || meta.ino() != before.ino() {
        return Err("changed while being opened".into());
    }
    if meta.size() > MAX_BINARY {
        return Err(format!("larger than {MAX_BINARY} bytes"));
    }
    Ok((file, meta))
}

/// `len` bytes at `offset`, if they lie within the first `size` bytes of the file.
fn read_at(file: &File, size: u64, offset: u64, len: u64) -> Option<Vec<u8>> {
    if offset.checked_add(len)? > size || len > MAX_BINARY {
        return None;
    }
    let mut buf = vec![0; usize::try_from(len).ok()?];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// At most this many section headers are read (rsync has about 30).
const MAX_SECTIONS: u64 = 4096;
/// SHT_PROGBITS: a section whose bytes are in the file.
const SHT_PROGBITS: u64 = 1;

/// Little- or big-endian fields of an ELF file of either class.
struct Fields {
    wide: bool,
    little: bool,
}

impl Fields {
    fn u16(&self, b: &[u8], at: usize) -> Option<u64> {
        let raw: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(u64::from(if self.little {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        }))
    }

    fn u32(&self, b: &[u8], at: usize) -> Option<u64> {
        let raw: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(if self.little {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        }))
    }

    /// An address or offset: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, b: &[u8], at: usize) -> Option<u64> {
        if !self.wide {
            return self.u32(b, at);
        }
        let raw: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.little {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        })
    }
}

/// Where the `.rodata` section of the ELF file lies (offset, length), as its section
/// headers say; `None` when the file is not ELF or its headers are missing, unusual (more
/// than [`MAX_SECTIONS`], extended numbering) or point outside the file's `size` bytes.
fn rodata_range(file: &File, size: u64) -> Option<(u64, u64)> {
    let header = read_at(file, size, 0, 64.min(size))?;
    if header.get(..4)? != b"\x7fELF" {
        return None;
    }
    let f = Fields {
        wide: match header.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        },
        little: match header.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        },
    };
    // e_shoff, e_shentsize, e_shnum, e_shstrndx; a section header's sh_name, sh_type,
    // sh_offset, sh_size (elf(5)).
    let (shoff, shentsize, shnum, shstrndx) = if f.wide {
        (
            f.word(&header, 0x28)?,
            f.u16(&header, 0x3a)?,
            f.u16(&header, 0x3c)?,
            f.u16(&header, 0x3e)?,
        )
    } else {
        (
            f.word(&header, 0x20)?,
            f.u16(&header, 0x2e)?,
            f.u16(&header, 0x30)?,
            f.u16(&header, 0x32)?,
        )
    };
    let (min_entry, at_offset, at_size) = if f.wide {
        (64, 0x18, 0x20)
    } else {
        (40, 0x10, 0x14)
    };
    // shnum 0 means none or extended numbering; shstrndx 0xffff (SHN_XINDEX) is >= shnum.
    if shentsize < min_entry || shnum == 0 || shnum > MAX_SECTIONS || shstrndx >= shnum {
        return None;
    }
    let table = read_at(file, size, shoff, shnum * shentsize)?;
    let entry = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let base = usize::try_from(i * shentsize).ok()?;
        Some((
            f.u32(&table, base)?,
            f.u32(&table, base + 4)?,
            f.word(&table, base + at_offset)?,
            f.word(&table, base + at_size)?,
        ))
    };
    let (_, _, names_at, names_len) = entry(shstrndx)?;
    let names = read_at(file, size, names_at, names_len.min(1 << 20))?;
    (0..shnum).find_map(|i| {
        let (name, kind, offset, len) = entry(i)?;
        let name = names.get(usize::try_from(name).ok()?..)?;
        let wanted = kind == SHT_PROGBITS
            && name.starts_with(b".rodata\0")
            && offset.checked_add(len)? <= size;
        wanted.then_some((offset, len))
    })
}

/// Scan the opened binary (`size` bytes): its `.rodata` when that identifies rsync, else
/// all of it.
fn scan_file(file: &File, size: u64) -> Result<Option<(bool, bool)>, String> {
    if let Some((offset, len)) = rodata_range(file, size) {
        let found = scan_range(file, size, offset, len)?;
        if found.identity {
            return Ok(found.answer());
        }
    }
    Ok(scan_range(file, size, 0, size)?.answer())
}

fn features_of(key: Key, found: Option<(bool, bool)>) -> (Option<Key>, Features) {
    match found {
        Some((confine_root, drop_d)) => (
            Some(key),
            Features {
                confine_root,
                drop_d,
                basis: Basis::Scanned,
            },
        ),
        None => (
            Some(key),
            Features::current("not recognisably an rsync binary"),
        ),
    }
}

/// Inspect the binary without the per-process cache.
pub fn inspect(path: &Path) -> (Option<Key>, Features) {
    let scanned = open(path).and_then(|(file, meta)| {
        let found = scan_file(&file, meta.size())?;
        Ok((key(&meta), found))
    });
    match scanned {
        Err(why) => (None, Features::current(why)),
        Ok((key, found)) => features_of(key, found),
    }
}

/// [`inspect`] as it was before the `.rodata` shortcut: every byte of the file searched.
/// The reference the shortcut is tested against.
pub fn inspect_whole_file(path: &Path) -> (Option<Key>, Features) {
    let scanned = open(path).and_then(|(file, meta)| {
        let mut bytes = Vec::new();
        (&file)
            .take(MAX_BINARY + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        Ok((key(&meta), scan(&bytes)))
    });
    match scanned {
        Err(why) => (None, Features::current(why)),
        Ok((key, found)) => features_of(key, found),
    }
}

static CACHE: Mutex<Option<HashMap<PathBuf, (Key, Features)>>> = Mutex::new(None);

/// The features of the rsync at `path`. Remembered per process, keyed by the file's
/// device, inode, size, mtime and ctime, so a long-running caller (`rshell --check`, the
/// tests) reads each binary once; rshell serving a connection reads it once anyway.
pub fn features(path: &Path) -> Features {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    // Only a path seen before is stat'ed for the cache (a connection asks once).
    if let Some((k, f)) = map.get(path) {
        if std::fs::metadata(path).ok().map(|m| key(&m)) == Some(*k) {
            return f.clone();
        }
    }
    let (key, f) = inspect(path);
    if let Some(key) = key {
        map.insert(path.to_path_buf(), (key, f.clone()));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(strings: &[&str]) -> Vec<u8> {
        let mut out = vec![0x7f, b'E', b'L', b'F', 0];
        for s in strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn recognises_rsync_and_its_options_by_their_c_strings() {
        let v = "%s  version %s  protocol version %d%s";
        assert_eq!(scan(&bin(&[v, "delete-during"])), Some((false, false)));
        assert_eq!(
            scan(&bin(&[v, "confine-root", "no-drop-D"])),
            Some((true, true))
        );
        // Merged into the tail of a longer literal by the linker.
        assert_eq!(
            scan(&bin(&[v, "--confine-root", "drop-D"])),
            Some((true, true))
        );
        // Help text mentions the option but is no option name.
        assert_eq!(
            scan(&bin(&[
                v,
                "--confine-root=DIR  refuse operator paths",
                "--drop-D  x"
            ])),
            Some((false, false))
        );
        // A wrapper script that only names the options is not rsync.
        assert_eq!(
            scan(b"#!/bin/sh\nexec rsync --confine-root=/ --drop-D \"$@\"\n"),
            None
        );
        assert_eq!(scan(&[]), None);
    }

    /// An ELF file of the given class and byte order: a header, `.text` holding `text`,
    /// `.rodata` holding `rodata`, the section names, then the section headers.
    fn elf(wide: bool, little: bool, text: &[u8], rodata: &[u8]) -> Vec<u8> {
        let put = |out: &mut Vec<u8>, at: usize, value: u64, width: usize| {
            let bytes = if little {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let field = if little {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            out[at..at + width].copy_from_slice(field);
        };
        let word = if wide { 8 } else { 4 };
        let (header, entry) = if wide { (64, 64) } else { (52, 40) };
        let mut out = vec![0u8; header];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = if wide { 2 } else { 1 };
        out[5] = if little { 1 } else { 2 };
        let text_at = out.len();
        out.extend_from_slice(text);
        let rodata_at = out.len();
        out.extend_from_slice(rodata);
        let names_at = out.len();
        let names = b"\0.text\0.rodata\0.shstrtab\0";
        out.extend_from_slice(names);
        let table_at = out.len();
        // (name, type, offset, size): null, .text, .rodata, .shstrtab (SHT_STRTAB = 3).
        let sections = [
            (0, 0, 0, 0),
            (1, 1, text_at, text.len()),
            (7, 1, rodata_at, rodata.len()),
            (15, 3, names_at, names.len()),
        ];
        for (name, kind, offset, size) in sections {
            let base = out.len();
            out.resize(base + entry, 0);
            put(&mut out, base, name, 4);
            put(&mut out, base + 4, kind, 4);
            let (at_offset, at_size) = if wide { (0x18, 0x20) } else { (0x10, 0x14) };
            put(&mut out, base + at_offset, offset as u64, word);
            put(&mut out, base + at_size, size as u64, word);
        }
        let (shoff, fields) = if wide { (0x28, 0x3a) } else { (0x20, 0x2e) };
        put(&mut out, shoff, table_at as u64, word);
        put(&mut out, fields, entry as u64, 2);
        put(&mut out, fields + 2, sections.len() as u64, 2);
        put(&mut out, fields + 4, 3, 2);
        out
    }

    fn strings(list: &[&str]) -> Vec<u8> {
        bin(list)[5..].to_vec()
    }

    fn file_with(tag: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("rshell-version-{tag}-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn the_rodata_section_is_found_in_every_elf_class_and_byte_order() {
        let v = "%s  version %s  protocol version %d%s";
        for (wide, little) in [(true, true), (true, false), (false, true), (false, false)] {
            let rodata = strings(&[v, "--confine-root", "no-drop-D"]);
            let bytes = elf(wide, little, b"code", &rodata);
            let path = file_with(&format!("class-{wide}-{little}"), &bytes);
            let file = File::open(&path).unwrap();
            let (offset, len) = rodata_range(&file, bytes.len() as u64).unwrap();
            assert_eq!(
                &bytes[offset as usize..(offset + len) as usize],
                &rodata[..],
                "wide {wide} little {little}"
            );
            assert_eq!(inspect(&path).1, inspect_whole_file(&path).1);
            assert!(!inspect(&path).1.older());
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn outside_rodata_the_whole_file_decides_as_before() {
        let v = "%s  version %s  protocol version %d%s";
        let cases: [(&str, Vec<u8>); 5] = [
            // Everything in .rodata: an rsync 3.5.
            (
                "current",
                elf(true, true, b"", &strings(&[v, "confine-root", "drop-D"])),
            ),
            // An rsync 3.2: the --version string, no option names.
            ("old", elf(true, true, b"", &strings(&[v, "delete-during"]))),
            // The --version string outside .rodata: the whole file is searched.
            (
                "elsewhere",
                elf(true, true, &strings(&[v, "confine-root"]), b"drop-D\0"),
            ),
            // Not rsync at all.
            ("other", elf(true, true, b"", &strings(&["hello"]))),
            // Cut short: the section headers lie beyond the end.
            (
                "cut",
                elf(true, true, b"", &strings(&[v, "confine-root", "drop-D"]))[..80].to_vec(),
            ),
        ];
        for (tag, bytes) in cases {
            let path = file_with(tag, &bytes);
            assert_eq!(inspect(&path).1, inspect_whole_file(&path).1, "{tag}");
            std::fs::remove_file(&path).unwrap();
        }
        let found = |tag: &str, bytes: &[u8]| {
            let path = file_with(tag, bytes);
            let f = inspect(&path).1;
            std::fs::remove_file(&path).unwrap();
            f
        };
        let old = found("old2", &elf(false, false, b"", &strings(&[v, "sender"])));
        assert!(old.older(), "{old:?}");
        let split = found(
            "split",
            &elf(true, true, &strings(&[v]), b"confine-root\0drop-D\0"),
        );
        assert!(!split.older() && split.basis == Basis::Scanned, "{split:?}");
    }

    #[test]
    fn a_string_across_two_chunks_is_found() {
        let v = "%s  version %s  protocol version %d%s";
        // Each string placed so that it straddles the first chunk boundary, and at the end.
        for (needle, shift) in [(v, 1), (v, 20), ("confine-root", 5), ("drop-D", 3)] {
            let mut bytes = vec![b'x'; CHUNK - shift];
            bytes.extend_from_slice(&strings(&[needle]));
            bytes.extend(std::iter::repeat_n(b'y', CHUNK * 2));
            let mut tail = strings(&[v, "confine-root", "drop-D"]);
            tail.insert(0, b'z');
            bytes.extend_from_slice(&tail);
            let path = file_with(&format!("chunks-{shift}"), &bytes);
            let file = File::open(&path).unwrap();
            let size = bytes.len() as u64;
            let whole = scan_range(&file, size, 0, size).unwrap();
            assert!(whole.all(), "{needle} {shift}");
            let first = scan_range(&file, size, 0, CHUNK as u64 + 40).unwrap();
            let mut expected = Found::default();
            expected.add(&bytes[..CHUNK + 40]);
            assert_eq!(first, expected, "{needle} {shift}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn the_shortcut_agrees_with_the_whole_file_on_the_binaries_of_this_machine() {
        let me = std::env::current_exe().unwrap();
        let mut paths = vec![me];
        paths.extend(
            ["/usr/bin/rsync", "/bin/true", "/bin/sh", "/usr/bin/env"]
                .iter()
                .map(PathBuf::from),
        );
        for path in paths.iter().filter(|p| p.exists()) {
            assert_eq!(
                inspect(path).1,
                inspect_whole_file(path).1,
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn unreadable_or_unrecognised_files_are_assumed_current() {
        for p in ["/nonexistent/rsync", "/dev/null", "/"] {
            let f = features(Path::new(p));
            assert!(f.confine_root && f.drop_d && !f.older(), "{p}: {f:?}");
            assert!(matches!(f.basis, Basis::Assumed(_)), "{p}: {f:?}");
        }
    }
}
