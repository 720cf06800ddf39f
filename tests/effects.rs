//! The effects matrix: every promise of the policy, checked on the disk after a real
//! transfer. A restriction is an effect on the disk, not a list of options, so each case runs
//! the real rsync client against the real /usr/bin/rsync behind the built rshell, then
//! compares snapshots (path, type, size, content, mode, uid/gid, mtime in ns, inode) of the
//! root, of everything outside it and of the client, and reads what the client was told.
//! rshell may refuse (`rshell: denied: ...`) or force options; either way the promise holds
//! on disk or the case fails, naming itself.
//!
//! The fake ssh (`common::site`) plays ssh + sshd: it runs `rshell -c STRING` in a private
//! mount namespace where an overlay over /etc holds the case's rshell.toml (`[users.root]`,
//! `root = ...` and the case's keys), so the shared /etc is never touched. Needs root,
//! rsync, Landlock and overlayfs (see `common::needs`).
//!
//! Promises × options (D = default settings, with Landlock required; O = also with
//! `confine = "off"` + `confine_root = false`, so rshell's own checks hold alone):
//! - read-only (D, O): push -a; pull with --remove-source-files, --remove-sent-files,
//!   --delete, --delete-excluded, -n, -b --backup-dir. Root unchanged.
//! - write-only (D): pull; push -I -B1 --no-W --stats (Matched data: 0), --no-W -c, -y,
//!   --append, --append-verify, --delete, -n --delete, -n, --delete-after,
//!   --remove-source-files, -i, -v, -vv; glob destination (same refusal as a glob matching
//!   nothing); destination beneath an existing file (same answer as beneath a missing name).
//!   No server-only name or content reaches the client, nothing lands in the client dir.
//! - delete = false (D): --delete, --delete-before, --delete-during, --delete-delay,
//!   --delete-after, --delete-excluded, --delete-missing-args,
//!   --remove-source-files / --remove-sent-files on pull, --force, --partial-dir=keep,
//!   --partial-dir=/, --delay-updates with a `.~tmp~` leftover, -b, --backup-dir, --suffix;
//!   type changes without --force (file → dir, empty dir → file, file → symlink, non-empty
//!   dir → file); a plain -I push as control. Every pre-existing entry keeps type and content.
//! - overwrite = false (D): -a, -I, --inplace, --append, --append-verify, -c, -H,
//!   --partial-dir, --delay-updates, -b, --backup-dir, type changes, -rpt / -a on existing
//!   directories. Existing non-directories keep content, mode, owner, mtime, inode;
//!   directory metadata changes are recorded in the summary (rsync's --ignore-existing
//!   skips files, not directories).
//! - inside root (D, O): --backup-dir=../x, =/../x, --link-dest / --copy-dest /
//!   --compare-dest=../.., --link-dest=../outside, --temp-dir=/tmp (missing and present),
//!   --temp-dir=../../outside, --partial-dir=/../x, -R with `../`, dest `../` and
//!   `t/../../`, a planted `link -> outside` as dest, --backup-dir, --link-dest, --temp-dir;
//!   a backup dir the same push creates as a symlink first (--backup-dir=a, =a/..); a
//!   single file pushed with -r to `dir/SIBLING.txt` with --copy-dest=../.. or =.. (rsync
//!   takes basis dirs from `dir` when the list is one file, rshell from `dir/SIBLING.txt`
//!   because of -r: the pinned basis keeps rsync inside either way), also without -r and
//!   onto an existing `dir/SIBLING.txt`; pulls through the planted link, of
//!   `../outside/secret`, and of the whole root. Outside unchanged, no outside bytes or
//!   inodes in the root or the client, none in the output.
//!
//! Every case also checks that nothing outside the root changed. The test prints the matrix
//! (promise × case → refused / forced / held / BROKEN) and fails at the end listing every
//! case whose expectation or promise did not hold.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::FileTimes;
use std::io::Write as _;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::site::{self, Site};

/// Bytes every bait file outside the root carries; client files never contain it.
const MARK: &str = "OUTSIDE";

fn usable() -> bool {
    site::usable() && common::needs("a kernel that enforces Landlock", common::landlock())
}

// ---------------------------------------------------------------------------------------
// The site (`common::site`): root, outside, client, config and fake ssh under one temp dir.

fn new_site(keys: &str) -> Site {
    Site::new("effects", keys)
}

/// Paths in a site, and the client run of a case.
trait Places {
    fn r(&self, rel: &str) -> PathBuf;
    fn c(&self, rel: &str) -> PathBuf;
    fn o(&self, rel: &str) -> PathBuf;
    fn run(&self, args: &[&str]) -> Run;
}

impl Places for Site {
    fn r(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn c(&self, rel: &str) -> PathBuf {
        self.client.join(rel)
    }
    fn o(&self, rel: &str) -> PathBuf {
        self.base().join(rel)
    }
    /// Run the rsync client (in the client dir) with the fake ssh's defaults.
    fn run(&self, args: &[&str]) -> Run {
        let o = self.rsync(&[], args);
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Everything the client was told, including rshell's `note: syslog unavailable`
    /// lines (no syslog in the test namespace, so the log records go to stderr, as they
    /// would on a server whose syslog is down).
    fn seen(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    /// What the client was told without rshell's log-record notes (which vary by timing).
    fn told(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.starts_with("rshell: note:"))
            .collect()
    }
    fn denial(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("rshell: denied: "))
    }
    fn show(&self) -> String {
        let mut out = format!("exit {:?}\n", self.code);
        for l in self.told() {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Snapshots.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    size: u64,
    /// File bytes, or a symlink's target.
    content: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    ino: u64,
}

impl Entry {
    fn brief(&self) -> String {
        let text = String::from_utf8_lossy(&self.content);
        let text: String = text.chars().take(40).collect();
        format!(
            "{} {:o} {}:{} size {} mtime {}.{:09} ino {} {:?}",
            self.kind,
            self.mode & 0o7777,
            self.uid,
            self.gid,
            self.size,
            self.mtime_ns.div_euclid(1_000_000_000),
            self.mtime_ns.rem_euclid(1_000_000_000),
            self.ino,
            text
        )
    }
}

type Snap = BTreeMap<String, Entry>;

/// Every entry beneath `top` (and `top` itself as ""), symlinks not followed; names in
/// `skip` (first level) are left out.
fn snapshot(top: &Path, skip: &[&str]) -> Snap {
    fn walk(top: &Path, rel: &Path, skip: &[&str], out: &mut Snap) {
        let path = top.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        let ft = meta.file_type();
        let (kind, content) = if ft.is_symlink() {
            let t = std::fs::read_link(&path).unwrap();
            ('l', t.into_os_string().into_encoded_bytes())
        } else if ft.is_dir() {
            ('d', Vec::new())
        } else if ft.is_file() {
            ('f', std::fs::read(&path).unwrap_or_default())
        } else {
            ('o', Vec::new())
        };
        out.insert(
            rel.display().to_string(),
            Entry {
                kind,
                size: meta.len(),
                content,
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ino: meta.ino(),
            },
        );
        if kind == 'd' {
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                if rel.as_os_str().is_empty() && skip.iter().any(|s| n == **s) {
                    continue;
                }
                walk(top, &rel.join(n), skip, out);
            }
        }
    }
    let mut out = Snap::new();
    walk(top, Path::new(""), skip, &mut out);
    out
}

/// The three trees a case can touch.
struct State {
    root: Snap,
    /// Everything in the site dir except root, client and the fake ssh's scratch dirs:
    /// `outside/`, bait files beside the root, the config and the fake ssh.
    outside: Snap,
    client: Snap,
}

impl State {
    fn of(site: &Site) -> State {
        State {
            root: snapshot(&site.root, &[]),
            outside: snapshot(site.base(), &["root", "client", "ns"]),
            client: snapshot(&site.client, &[]),
        }
    }
}

/// One line per entry removed, changed or created.
fn diff(what: &str, before: &Snap, after: &Snap) -> Vec<String> {
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => out.push(format!("{what}/{p} removed (was {})", b.brief())),
            Some(a) if a != b => out.push(format!(
                "{what}/{p} changed: {} -> {}",
                b.brief(),
                a.brief()
            )),
            _ => {}
        }
    }
    for (p, a) in after {
        if !before.contains_key(p) {
            out.push(format!("{what}/{p} created ({})", a.brief()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Fixture helpers.

/// 2001-09-09: a fixed mtime, far from "now", for files whose time must not change.
const OLD: u64 = 1_000_000_000;
/// The mtime shared by client files and the bait outside (so a basis-dir quick check
/// matches the bait).
const BAIT_TIME: u64 = 1_500_000_000;

fn write(p: &Path, content: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn set_mtime(p: &Path, secs: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    std::fs::File::open(p)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

fn write_at(p: &Path, content: &str, secs: u64) {
    write(p, content);
    set_mtime(p, secs);
}

fn mkdir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn ln(target: impl AsRef<Path>, p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// 100 kB of fixed pseudo-random bytes (an LCG), so a delta transfer would match blocks.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The matrix.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Promise {
    ReadOnly,
    WriteOnly,
    NoDelete,
    NoOverwrite,
    Inside,
}

impl Promise {
    fn label(self) -> &'static str {
        match self {
            Promise::ReadOnly => "read-only",
            Promise::WriteOnly => "write-only",
            Promise::NoDelete => "delete=false",
            Promise::NoOverwrite => "overwrite=false",
            Promise::Inside => "inside root",
        }
    }
    fn keys(self) -> &'static str {
        match self {
            Promise::ReadOnly => "access = \"read-only\"\n",
            Promise::WriteOnly => "access = \"write-only\"\n",
            Promise::NoDelete => "delete = false\n",
            Promise::NoOverwrite => "overwrite = false\n",
            Promise::Inside => "",
        }
    }
    /// Promises that must also hold with Landlock and --confine-root off (rshell alone).
    fn both_confinements(self) -> bool {
        matches!(self, Promise::ReadOnly | Promise::Inside)
    }
    /// The standard scene of the promise, before the case's own setup.
    fn fixture(self, s: &Site) {
        match self {
            Promise::ReadOnly => {
                write_at(&s.r("d/f.txt"), "server file\n", OLD);
                write_at(&s.r("d/sub/g.txt"), "server sub\n", OLD);
                write(&s.c("new.txt"), "client file\n");
            }
            Promise::WriteOnly => {
                write(&s.r("secret-name.txt"), "SERVER-ONLY-CONTENT\n");
                write(&s.r("hidden-dir/hidden-file.bin"), "SERVER-ONLY-CONTENT\n");
                let old = noise(100_000);
                std::fs::create_dir_all(s.r("wdest")).unwrap();
                std::fs::write(s.r("wdest/big.bin"), &old).unwrap();
                set_mtime(&s.r("wdest/big.bin"), OLD);
                let mut new = old.clone();
                new.extend_from_slice(b"one changed tail\n");
                std::fs::write(s.c("big.bin"), &new).unwrap();
                write(&s.c("n.txt"), "client\n");
                write(&s.c("src/a.txt"), "client a\n");
                write(&s.c("src/deep/b.txt"), "client b\n");
                mkdir(&s.c("empty"));
            }
            Promise::NoDelete => {
                write_at(&s.r("top.txt"), "top\n", OLD);
                write_at(&s.r("dir/f.txt"), "same\n", OLD);
                write_at(&s.r("dir/f.txt~"), "older backup\n", OLD);
                write_at(&s.r("dir/f.txt.x"), "older suffixed backup\n", OLD);
                write_at(&s.r("dir/bk/f.txt"), "kept in backup dir\n", OLD);
                write_at(&s.r("dir/keep/precious.txt"), "precious\n", OLD);
                write_at(&s.r("dir/.~tmp~/leftover"), "leftover\n", OLD);
                write_at(&s.r("dir/nope"), "planted\n", OLD);
                write_at(&s.r("dir/full/inner.txt"), "inner\n", OLD);
                write_at(&s.r("dir/was-file"), "a file\n", OLD);
                write_at(&s.r("dir/plain"), "plain file\n", OLD);
                mkdir(&s.r("dir/emptydir"));
                // The client holds the same bytes and time for f.txt: nothing legit changes
                // any existing content, so every change is a removal or a replacement.
                write_at(&s.c("src/f.txt"), "same\n", OLD);
            }
            Promise::NoOverwrite => {
                write_at(&s.r("o/f.txt"), "old\n", OLD);
                chmod(&s.r("o/f.txt"), 0o600);
                std::os::unix::fs::chown(s.r("o/f.txt"), Some(1234), Some(1234)).unwrap();
                write_at(&s.r("o/hard.txt"), "old hard\n", OLD);
                ln("old-target", &s.r("o/ln"));
                write_at(&s.r("o/was-file"), "a file\n", OLD);
                chmod(&s.r("o/was-file"), 0o600);
                std::os::unix::fs::chown(s.r("o/was-file"), Some(1234), Some(1234)).unwrap();
                mkdir(&s.r("o/emptydir"));
                mkdir(&s.r("o/sub"));
                chmod(&s.r("o/sub"), 0o700);
                std::os::unix::fs::chown(s.r("o/sub"), Some(1234), Some(1234)).unwrap();
                set_mtime(&s.r("o/sub"), OLD);
                set_mtime(&s.r("o/emptydir"), OLD);
                set_mtime(&s.r("o"), OLD);
                // --append would add the tail to the existing "old\n".
                write(&s.c("src/f.txt"), "old\nnewer content\n");
                write(&s.c("src/hard.txt"), "new hard\n");
                std::fs::hard_link(s.c("src/hard.txt"), s.c("src/hard2.txt")).unwrap();
                ln("new-target", &s.c("src/ln"));
                write(&s.c("src/fresh.txt"), "fresh\n");
                mkdir(&s.c("src/sub"));
                chmod(&s.c("src/sub"), 0o755);
            }
            Promise::Inside => {
                write(&s.o("outside/secret"), "TOP-SECRET OUTSIDE\n");
                mkdir(&s.o("outside/x"));
                // Bait: same size and mtime as the client's files, other bytes. A basis
                // or partial dir that reached them would link, copy or skip from them.
                for bait in ["outside/f.txt", "f.txt", "SIBLING.txt", "x/f.txt"] {
                    write_at(&s.o(bait), "OUTSIDE-BYTES\n", BAIT_TIME);
                }
                write_at(&s.c("src/f.txt"), "client-bytes!\n", BAIT_TIME);
                write_at(&s.c("SIBLING.txt"), "client-bytes!\n", BAIT_TIME);
                write_at(&s.r("t/f.txt"), "server-old!!!\n", OLD);
                mkdir(&s.r("t2"));
                mkdir(&s.r("dir"));
                ln(s.o("outside"), &s.r("link"));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// rshell refuses: a `rshell: denied:` line containing this, rsync never started.
    Refused(&'static str),
    /// rshell lets rsync run; rsync exits with this code; how the promise holds.
    Ran(i32, &'static str),
    /// The rsync client refuses before connecting (it sanitizes its own arguments).
    Client(&'static str),
}

type Extra = fn(&Site, &Run) -> Result<(), String>;

/// Run the same request with `args` on the same site; the client must learn the same
/// (after replacing `from` by `to` in what the first run said).
#[derive(Clone, Copy)]
struct Twin {
    args: &'static [&'static str],
    from: &'static str,
    to: &'static str,
}

#[derive(Clone, Copy)]
struct Case {
    promise: Promise,
    name: &'static str,
    args: &'static [&'static str],
    expect: Expect,
    setup: fn(&Site),
    extra: Option<Extra>,
    twin: Option<Twin>,
    /// A documented limit of the promise (README, rshell.toml(5)): the disk is expected to
    /// show exactly this breach; if it ever stops happening, the docs must change.
    limit: Option<&'static str>,
}

fn case(
    promise: Promise,
    name: &'static str,
    args: &'static [&'static str],
    expect: Expect,
) -> Case {
    Case {
        promise,
        name,
        args,
        expect,
        setup: |_| {},
        extra: None,
        twin: None,
        limit: None,
    }
}

impl Case {
    fn setup(mut self, f: fn(&Site)) -> Case {
        self.setup = f;
        self
    }
    fn check(mut self, f: Extra) -> Case {
        self.extra = Some(f);
        self
    }
    fn documented_limit(mut self, why: &'static str) -> Case {
        self.limit = Some(why);
        self
    }
    fn twin(mut self, args: &'static [&'static str], from: &'static str, to: &'static str) -> Case {
        self.twin = Some(Twin { args, from, to });
        self
    }
}

use Expect::{Client, Ran, Refused};
use Promise::*;

const UPLOADS_REFUSED: &str = "this account is read-only: uploads are refused";
const WO_DEST: &str = "the destination is refused (details are not shown on a write-only account)";
const WO_REVEALS: &str =
    "this account is write-only: it would reveal the content of existing files";
const NO_DEL: &str = "deletion is not allowed for this account";
const UNLINKS_NO_DEL: &str =
    "rsync removes existing files it finds there, and deletion is not allowed for this account";
const UNLINKS_NO_OVER: &str =
    "rsync replaces existing files through it, and overwriting is not allowed for this account";
const BACKUP_REPLACES: &str = "a backup onto an existing name replaces that file, and this account may not remove or overwrite files";
const NOT_YET: &str = "`..` after a name that does not exist yet";

fn exists(s: &Site, rel: &str) -> Result<(), String> {
    std::fs::symlink_metadata(s.r(rel))
        .map(|_| ())
        .map_err(|_| format!("root/{rel} was not created: the push did not run as expected"))
}

/// A push that ran (rshell did not refuse it) delivered the client's bytes to `rel`: a
/// basis dir that reached the bait outside would have linked, copied or skipped it.
fn arrived(s: &Site, run: &Run, rel: &str) -> Result<(), String> {
    if run.denial().is_some() {
        return Ok(());
    }
    match std::fs::read_to_string(s.r(rel)) {
        Ok(got) if got == "client-bytes!\n" => Ok(()),
        got => Err(format!(
            "root/{rel} does not hold the pushed bytes ({got:?}): a basis outside was used"
        )),
    }
}

/// The single file pushed to `dir/SIBLING.txt` arrived as that file, with the client's
/// bytes (a basis dir that reached the bait would have given it the bait's).
fn pushed_sibling(s: &Site, _: &Run) -> Result<(), String> {
    let got = std::fs::read_to_string(s.r("dir/SIBLING.txt")).unwrap_or_default();
    if got == "client-bytes!\n" {
        Ok(())
    } else {
        Err(format!(
            "root/dir/SIBLING.txt holds {got:?}, not the pushed file"
        ))
    }
}

fn cases() -> Vec<Case> {
    vec![
        // --- read-only: nothing under root is created, changed or removed.
        case(
            ReadOnly,
            "push -a",
            &["-a", "new.txt", "x:d/"],
            Refused(UPLOADS_REFUSED),
        ),
        case(
            ReadOnly,
            "pull --remove-source-files",
            &["-a", "--remove-source-files", "x:d/", "got/"],
            Refused(concat!(
                "--remove-source-files is refused: ",
                "deletion is not allowed for this read-only account"
            )),
        ),
        case(
            ReadOnly,
            "pull --remove-sent-files",
            &["-a", "--remove-sent-files", "x:d/", "got/"],
            Refused(concat!(
                "--remove-sent-files is refused: ",
                "deletion is not allowed for this read-only account"
            )),
        ),
        // The client sends --delete only to a receiving server; the sender never deletes.
        case(
            ReadOnly,
            "pull --delete",
            &["-a", "--delete", "x:d/", "got/"],
            Ran(0, "held (not sent to a sender)"),
        )
        .setup(|s| write(&s.c("got/only-on-client"), "x\n"))
        .check(|s, _| {
            if s.c("got/sub/g.txt").exists() && !s.c("got/only-on-client").exists() {
                Ok(())
            } else {
                Err("the pull did not run as a --delete pull into got/".into())
            }
        }),
        case(
            ReadOnly,
            "pull --delete-excluded",
            &["-a", "--delete-excluded", "--exclude=sub", "x:d/", "got/"],
            Ran(0, "held (not sent to a sender)"),
        ),
        case(
            ReadOnly,
            "pull -n",
            &["-an", "x:d/", "got/"],
            Ran(0, "held (dry run of a sender)"),
        ),
        case(
            ReadOnly,
            "pull -b --backup-dir",
            &["-a", "-b", "--backup-dir=old", "x:d/", "got/"],
            Ran(0, "held (receiver dirs dropped for a sender)"),
        ),
        // --- write-only: nothing of existing files or names leaves the server.
        case(
            WriteOnly,
            "pull",
            &["-a", "x:wdest/", "got/"],
            Refused("this account is write-only: downloads are refused"),
        ),
        case(
            WriteOnly,
            "push -I -B1 --no-W --stats",
            &["-I", "-B1", "--no-W", "--stats", "big.bin", "x:wdest/"],
            Ran(0, "forced --whole-file"),
        )
        .check(|s, run| {
            // A delta transfer of a file that differs only in its tail would match nearly
            // all of it: block checksums of the existing file went to the client.
            if !run.stdout.contains("Matched data: 0 bytes") {
                return Err(format!("`Matched data: 0 bytes` missing:\n{}", run.show()));
            }
            if std::fs::read(s.r("wdest/big.bin")).unwrap()
                != std::fs::read(s.c("big.bin")).unwrap()
            {
                return Err("wdest/big.bin was not replaced by the pushed file".into());
            }
            Ok(())
        }),
        case(
            WriteOnly,
            "push -I --stats (rsync's default: delta)",
            &["-I", "--stats", "big.bin", "x:wdest/"],
            Ran(0, "forced --whole-file"),
        )
        .check(|_, run| {
            if run.stdout.contains("Matched data: 0 bytes") {
                Ok(())
            } else {
                Err(format!("`Matched data: 0 bytes` missing:\n{}", run.show()))
            }
        }),
        case(
            WriteOnly,
            "push --no-W -c",
            &["--no-W", "-c", "--stats", "big.bin", "x:wdest/"],
            Refused(concat!(
                "--checksum is refused: ",
                "this account is write-only: it would reveal the content of existing files"
            )),
        ),
        // A missing file with a similar name beside it: rsync's fuzzy basis is big.bin.
        case(
            WriteOnly,
            "push -y --no-W --stats (new name)",
            &["-y", "--no-W", "--stats", "big.bin", "x:wdest/big2.bin"],
            Refused(WO_REVEALS),
        ),
        case(
            WriteOnly,
            "push --append --stats",
            &["--append", "--stats", "big.bin", "x:wdest/"],
            Refused(WO_REVEALS),
        ),
        case(
            WriteOnly,
            "push --append-verify --stats",
            &["--append-verify", "--stats", "big.bin", "x:wdest/"],
            Refused(WO_REVEALS),
        ),
        case(
            WriteOnly,
            "push -v --delete (empty dir)",
            &["-rv", "--delete", "empty/", "x:"],
            Refused(concat!(
                "--delete is refused: ",
                "this account is write-only: deleting would report the names of existing files"
            )),
        ),
        case(
            WriteOnly,
            "push -n -v --delete (empty dir)",
            &["-rv", "-n", "--delete", "empty/", "x:"],
            Refused("this account is write-only: a dry run would report what exists"),
        ),
        case(
            WriteOnly,
            "push -n -i",
            &["-r", "-n", "-i", "src/", "x:"],
            Refused("this account is write-only: a dry run would report what exists"),
        ),
        case(
            WriteOnly,
            "push --delete-after -v",
            &["-rv", "--delete-after", "src/", "x:"],
            Refused("--delete-after is refused"),
        ),
        case(
            WriteOnly,
            "push --remove-source-files",
            &["-r", "--remove-source-files", "src/", "x:wdest/"],
            Ran(0, "held (the client removes its own files)"),
        ),
        case(
            WriteOnly,
            "push -i",
            &["-ri", "src/", "x:"],
            Ran(0, "held (only sent names)"),
        )
        .check(|s, _| exists(s, "deep/b.txt")),
        case(
            WriteOnly,
            "push -v",
            &["-rv", "src/", "x:"],
            Ran(0, "held (only sent names)"),
        ),
        case(
            WriteOnly,
            "push -vv -i into a dir with files",
            &["-rvvi", "-I", "src/", "x:hidden-dir/"],
            Ran(0, "held (only sent names)"),
        ),
        // A glob matching one name and a glob matching none: the same refusal.
        case(
            WriteOnly,
            "push to a glob destination",
            &["n.txt", "x:se*"],
            Refused("wildcards in the destination are not allowed on a write-only account"),
        )
        .twin(&["n.txt", "x:zz*"], "se*", "zz*"),
        // Beneath an existing file, and beneath a name that does not exist: the client must
        // not be able to tell them apart.
        case(
            WriteOnly,
            "push beneath an existing file",
            &["n.txt", "x:secret-name.txt/sub/"],
            Refused(WO_DEST),
        )
        .twin(
            &["n.txt", "x:no-such-name.txt/sub/"],
            "secret-name.txt",
            "no-such-name.txt",
        ),
        // --- delete = false: no existing entry is removed by any route.
        case(
            NoDelete,
            "control: push -a -I (same bytes)",
            &["-a", "-I", "src/", "x:dir/"],
            Ran(0, "held"),
        )
        .setup(|s| write(&s.c("src/new.txt"), "new\n"))
        .check(|s, _| exists(s, "dir/new.txt")),
        case(
            NoDelete,
            "push --delete",
            &["-a", "--delete", "src/", "x:dir/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --delete-after",
            &["-a", "--delete-after", "src/", "x:dir/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --delete-before",
            &["-a", "--delete-before", "src/", "x:dir/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --delete-during",
            &["-a", "--delete-during", "src/", "x:dir/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --delete-delay",
            &["-a", "--delete-delay", "src/", "x:dir/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --delete-excluded",
            &[
                "-a",
                "--delete-excluded",
                "--exclude=nope",
                "src/",
                "x:dir/",
            ],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --delete-missing-args",
            &["-a", "--delete-missing-args", "src/nope", "x:dir/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "pull --remove-source-files",
            &["-a", "--remove-source-files", "x:dir/", "got/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "pull --remove-sent-files",
            &["-a", "--remove-sent-files", "x:dir/", "got/"],
            Refused(NO_DEL),
        ),
        case(
            NoDelete,
            "push --force (file over non-empty dir)",
            &["-a", "--force", "src/", "x:dir/"],
            Refused(NO_DEL),
        )
        .setup(|s| write(&s.c("src/full"), "now a file\n")),
        // rsync takes dir/keep/precious.txt as the partial file of precious.txt, then
        // unlinks it.
        case(
            NoDelete,
            "push --partial-dir=keep (existing keep/precious.txt)",
            &["-a", "--partial-dir=keep", "src/", "x:dir/"],
            Refused(UNLINKS_NO_DEL),
        )
        .setup(|s| write(&s.c("src/precious.txt"), "client precious\n")),
        case(
            NoDelete,
            "push --partial-dir=/ (root as partial dir)",
            &["-a", "--partial-dir=/", "src/", "x:dir/"],
            Refused(UNLINKS_NO_DEL),
        )
        .setup(|s| write(&s.c("src/top.txt"), "client top\n")),
        case(
            NoDelete,
            "push --delay-updates (existing .~tmp~/leftover)",
            &["-a", "--delay-updates", "src/", "x:dir/"],
            Refused(UNLINKS_NO_DEL),
        )
        .setup(|s| write(&s.c("src/leftover"), "client leftover\n")),
        case(
            NoDelete,
            "push -b (onto existing f.txt~)",
            &["-a", "-I", "-b", "src/", "x:dir/"],
            Refused(BACKUP_REPLACES),
        ),
        case(
            NoDelete,
            "push --backup-dir=bk (onto existing bk/f.txt)",
            &["-a", "-I", "-b", "--backup-dir=bk", "src/", "x:dir/"],
            Refused(BACKUP_REPLACES),
        ),
        case(
            NoDelete,
            "push --suffix=.x (onto existing f.txt.x)",
            &["-a", "-I", "-b", "--suffix=.x", "src/", "x:dir/"],
            Refused(BACKUP_REPLACES),
        ),
        // Without --force rsync still replaces a file by a directory, an empty directory
        // by a file and a file by a symlink: its generator deletes what is in the way with
        // DEL_MAKE_ROOM, which even --max-delete=0 does not stop; only a non-empty directory
        // needs --force. A documented limit of delete = false (as of rrsync -no-del).
        case(
            NoDelete,
            "type change file -> dir",
            &["-a", "src/", "x:dir/"],
            Ran(0, "replaced"),
        )
        .setup(|s| write(&s.c("src/was-file/inner.txt"), "inner\n"))
        .documented_limit(
            "rsync replaces an entry whose type changes; only overwrite = false stops it",
        ),
        case(
            NoDelete,
            "type change empty dir -> file",
            &["-a", "src/", "x:dir/"],
            Ran(0, "replaced"),
        )
        .setup(|s| write(&s.c("src/emptydir"), "now a file\n"))
        .documented_limit(
            "rsync replaces an entry whose type changes; only overwrite = false stops it",
        ),
        case(
            NoDelete,
            "type change file -> symlink",
            &["-a", "src/", "x:dir/"],
            Ran(0, "replaced"),
        )
        .setup(|s| ln("elsewhere", &s.c("src/plain")))
        .documented_limit(
            "rsync replaces an entry whose type changes; only overwrite = false stops it",
        ),
        case(
            NoDelete,
            "type change non-empty dir -> file",
            &["-a", "src/", "x:dir/"],
            Ran(23, "held (rsync: cannot delete non-empty directory)"),
        )
        .setup(|s| write(&s.c("src/full"), "now a file\n")),
        // --- overwrite = false: existing files keep content and metadata.
        case(
            NoOverwrite,
            "push -a",
            &["-a", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        )
        .check(|s, _| exists(s, "o/fresh.txt")),
        case(
            NoOverwrite,
            "push -a -I",
            &["-a", "-I", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        ),
        case(
            NoOverwrite,
            "push -a -I --inplace",
            &["-a", "-I", "--inplace", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        ),
        case(
            NoOverwrite,
            "push --append",
            &["-a", "--append", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        ),
        case(
            NoOverwrite,
            "push --append-verify",
            &["-a", "--append-verify", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        ),
        case(
            NoOverwrite,
            "push -a -c",
            &["-a", "-c", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        ),
        case(
            NoOverwrite,
            "push -aH (hard links)",
            &["-aH", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        )
        .check(|s, _| exists(s, "o/hard2.txt")),
        case(
            NoOverwrite,
            "push --partial-dir=.p",
            &["-a", "-I", "--partial-dir=.p", "src/", "x:o/"],
            Refused(UNLINKS_NO_OVER),
        ),
        case(
            NoOverwrite,
            "push --delay-updates",
            &["-a", "-I", "--delay-updates", "src/", "x:o/"],
            Refused(UNLINKS_NO_OVER),
        ),
        case(
            NoOverwrite,
            "push -b",
            &["-a", "-I", "-b", "src/", "x:o/"],
            Refused(BACKUP_REPLACES),
        ),
        case(
            NoOverwrite,
            "push --backup-dir=bk",
            &["-a", "-I", "--backup-dir=bk", "src/", "x:o/"],
            Refused(BACKUP_REPLACES),
        ),
        case(
            NoOverwrite,
            "type change file -> dir",
            &["-a", "src/", "x:o/"],
            Ran(23, "forced --ignore-existing"),
        )
        .setup(|s| write(&s.c("src/was-file/inner.txt"), "inner\n")),
        case(
            NoOverwrite,
            "type change empty dir -> file",
            &["-a", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        )
        .setup(|s| write(&s.c("src/emptydir"), "now a file\n")),
        case(
            NoOverwrite,
            "push -rpt onto existing dirs",
            &["-rpt", "src/", "x:o/"],
            Ran(0, "forced --ignore-existing"),
        ),
        // --- inside root: nothing outside is created, changed, removed or read.
        case(
            Inside,
            "--backup-dir=../x (dest root)",
            &["-a", "-I", "-b", "--backup-dir=../x", "src/", "x:"],
            Refused(r#"--backup-dir: "../x" leads outside root"#),
        )
        .setup(|s| write_at(&s.r("f.txt"), "server-old!!!\n", OLD)),
        case(
            Inside,
            "--backup-dir=../x (dest t/, lands in root/x)",
            &["-a", "-I", "-b", "--backup-dir=../x", "src/", "x:t/"],
            Ran(0, "held (inside)"),
        )
        .check(|s, _| exists(s, "x/f.txt")),
        case(
            Inside,
            "--backup-dir=/../x",
            &["-a", "-I", "-b", "--backup-dir=/../x", "src/", "x:t/"],
            Refused(r#"--backup-dir: "../x" leads outside root"#),
        ),
        case(
            Inside,
            "--link-dest=../..",
            &["-a", "--link-dest=../..", "src/", "x:t2/"],
            Refused(r#"--link-dest: "../.." leads outside root"#),
        )
        .check(|s, run| arrived(s, run, "t2/f.txt")),
        case(
            Inside,
            "--copy-dest=../..",
            &["-a", "--copy-dest=../..", "src/", "x:t2/"],
            Refused(r#"--copy-dest: "../.." leads outside root"#),
        )
        .check(|s, run| arrived(s, run, "t2/f.txt")),
        case(
            Inside,
            "--compare-dest=../..",
            &["-a", "--compare-dest=../..", "src/", "x:t2/"],
            Refused(r#"--compare-dest: "../.." leads outside root"#),
        )
        .check(|s, run| arrived(s, run, "t2/f.txt")),
        case(
            Inside,
            "--link-dest=../outside (dest root)",
            &["-a", "--link-dest=../outside", "src/", "x:"],
            Refused(r#"--link-dest: "../outside" leads outside root"#),
        )
        .check(|s, run| arrived(s, run, "f.txt")),
        case(
            Inside,
            "--temp-dir=/tmp (no root/tmp)",
            &["-a", "-I", "--temp-dir=/tmp", "src/", "x:t/"],
            Refused(r#"--temp-dir: "tmp" does not exist"#),
        ),
        case(
            Inside,
            "--temp-dir=/tmp (root/tmp exists)",
            &["-a", "-I", "--temp-dir=/tmp", "src/", "x:t/"],
            Ran(0, "held (root/tmp)"),
        )
        .setup(|s| mkdir(&s.r("tmp"))),
        case(
            Inside,
            "--temp-dir=../../outside",
            &["-a", "-I", "--temp-dir=../../outside", "src/", "x:t/"],
            Refused(r#"--temp-dir: "../../outside" leads outside root"#),
        ),
        // The client cleans `/../x` to `/x` before sending it: root/x, created by rshell.
        case(
            Inside,
            "--partial-dir=/../x",
            &["-a", "-I", "--partial-dir=/../x", "src/", "x:t/"],
            Ran(0, "held (client sends /x)"),
        ),
        case(
            Inside,
            "-R with ../",
            &["-aR", "../client/src/f.txt", "x:t/"],
            Client(r#"found ".." dir in relative path"#),
        ),
        case(
            Inside,
            "dest ../",
            &["-a", "-I", "src/f.txt", "x:../"],
            Refused(r#""../" leads outside root"#),
        ),
        case(
            Inside,
            "dest t/../../",
            &["-a", "-I", "src/f.txt", "x:t/../../"],
            Refused(r#""t/../../" leads outside root"#),
        ),
        case(
            Inside,
            "dest link/ (planted)",
            &["-a", "-I", "src/", "x:link/"],
            Refused(r#""link/" leads outside root"#),
        ),
        case(
            Inside,
            "--backup-dir=link (planted)",
            &["-a", "-I", "-b", "--backup-dir=link", "src/", "x:"],
            Refused(r#"--backup-dir: "link" leads outside root"#),
        )
        .setup(|s| write_at(&s.r("f.txt"), "server-old!!!\n", OLD)),
        case(
            Inside,
            "--link-dest=link (planted)",
            &["-a", "--link-dest=link", "src/", "x:"],
            Refused(r#"--link-dest: "link" leads outside root"#),
        )
        .check(|s, run| arrived(s, run, "f.txt")),
        case(
            Inside,
            "--temp-dir=link (planted)",
            &["-a", "-I", "--temp-dir=link", "src/", "x:"],
            Refused(r#"--temp-dir: "link" leads outside root"#),
        ),
        // The push creates `a -> outside/x` before it backs up f.txt into `a`: rshell has
        // made `a` beneath the pinned dest and hands rsync that directory; rsync removes it
        // to plant the symlink, so the backup into the removed directory fails (ENOENT)
        // and f.txt is kept.
        case(
            Inside,
            "--backup-dir=a, push creates a -> outside",
            &["-a", "-I", "-b", "--backup-dir=a", "src/", "x:t/"],
            Ran(11, "held (pinned dir; rsync's backup fails)"),
        )
        .setup(|s| ln(s.o("outside/x"), &s.c("src/a"))),
        case(
            Inside,
            "--backup-dir=a/.., push creates a -> outside",
            &["-a", "-I", "-b", "--backup-dir=a/..", "src/", "x:t/"],
            Refused(NOT_YET),
        )
        .setup(|s| ln(s.o("outside/x"), &s.c("src/a"))),
        // One file pushed with -r: rsync takes the destination as the file's name and
        // basis dirs from `dir`, where ../.. is the site dir holding bait SIBLING.txt.
        case(
            Inside,
            "-r SIBLING.txt to dir/SIBLING.txt --copy-dest=../..",
            &[
                "-r",
                "-t",
                "--copy-dest=../..",
                "SIBLING.txt",
                "x:dir/SIBLING.txt",
            ],
            Refused(NOT_YET),
        ),
        case(
            Inside,
            "-r SIBLING.txt to dir/SIBLING.txt --copy-dest=..",
            &[
                "-r",
                "-t",
                "--copy-dest=..",
                "SIBLING.txt",
                "x:dir/SIBLING.txt",
            ],
            Ran(0, "held (pinned basis)"),
        )
        .check(pushed_sibling),
        case(
            Inside,
            "-r SIBLING.txt to existing dir/SIBLING.txt --copy-dest=../..",
            &[
                "-r",
                "-t",
                "-I",
                "--copy-dest=../..",
                "SIBLING.txt",
                "x:dir/SIBLING.txt",
            ],
            Refused(r#"--copy-dest: "../.." leads outside root"#),
        )
        .setup(|s| write_at(&s.r("dir/SIBLING.txt"), "server-old!!!\n", OLD)),
        case(
            Inside,
            "SIBLING.txt to dir/SIBLING.txt --copy-dest=.. (no -r)",
            &["-t", "--copy-dest=..", "SIBLING.txt", "x:dir/SIBLING.txt"],
            Ran(0, "held (pinned basis)"),
        )
        .check(pushed_sibling),
        case(
            Inside,
            "pull through link/",
            &["-a", "x:link/secret", "got/"],
            Refused(r#""link/secret" leads outside root"#),
        ),
        case(
            Inside,
            "pull ../outside/secret",
            &["-a", "x:../outside/secret", "got/"],
            Refused(r#""../outside/secret" leads outside root"#),
        ),
        case(
            Inside,
            "pull -a of the root (link kept as link)",
            &["-a", "x:", "got/"],
            Ran(0, "held (link sent as link)"),
        )
        .check(|s, _| {
            let m = std::fs::symlink_metadata(s.c("got/link")).map_err(|e| e.to_string())?;
            if m.file_type().is_symlink() {
                Ok(())
            } else {
                Err("got/link is not a symlink".into())
            }
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// Checks, one per promise, run after every case.

/// What a case changed that no promise covers, for the summary.
struct Verdict {
    problems: Vec<String>,
    notes: Vec<String>,
}

fn check_promise(case: &Case, before: &State, after: &State, run: &Run) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match case.promise {
        ReadOnly => problems.extend(diff("root", &before.root, &after.root)),
        WriteOnly => {
            let seen = run.seen();
            // Names under root the client did not send: neither in its tree nor its args.
            let sent: BTreeSet<&str> = before.client.keys().flat_map(|p| p.split('/')).collect();
            let server_only: BTreeSet<&str> = before
                .root
                .keys()
                .flat_map(|p| p.split('/'))
                .filter(|n| !n.is_empty() && !sent.contains(n))
                .filter(|n| !case.args.iter().any(|a| a.contains(n)))
                .collect();
            for n in server_only {
                if seen.contains(n) {
                    problems.push(format!("the client was told the server-only name {n:?}"));
                }
            }
            if seen.contains("SERVER-ONLY-CONTENT") {
                problems.push("the client was told server-only content".into());
            }
            if let Some(l) = seen
                .lines()
                .find(|l| l.starts_with("Matched data:") && *l != "Matched data: 0 bytes")
            {
                problems.push(format!("block matching against existing data: {l}"));
            }
            // Whatever was transferred went as literal data: a client that sends less (an
            // --append tail, a delta) learned the size or blocks of an existing file.
            let stat = |name: &str| {
                seen.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::to_string)
            };
            if let (Some(literal), Some(total)) = (
                stat("Literal data: "),
                stat("Total transferred file size: "),
            ) {
                if literal != total {
                    problems.push(format!(
                        "only {literal} of {total} sent as literal data: the client used what exists"
                    ));
                }
            }
            // Nothing may arrive at the client: no new entry, no changed content (the client
            // removing its own sources with --remove-source-files reveals nothing).
            for (p, a) in &after.client {
                match before.client.get(p) {
                    None => problems.push(format!("client/{p} arrived ({})", a.brief())),
                    Some(b) if a.kind != 'd' && (a.kind != b.kind || a.content != b.content) => {
                        problems.push(format!(
                            "client/{p} changed: {} -> {}",
                            b.brief(),
                            a.brief()
                        ))
                    }
                    _ => {}
                }
            }
        }
        NoDelete => {
            for (p, b) in &before.root {
                match after.root.get(p) {
                    None => problems.push(format!("root/{p} removed (was {})", b.brief())),
                    Some(a) if a.kind != b.kind || a.content != b.content => {
                        problems.push(format!("root/{p} replaced: {} -> {}", b.brief(), a.brief()))
                    }
                    _ => {}
                }
            }
        }
        NoOverwrite => {
            for (p, b) in &before.root {
                match after.root.get(p) {
                    None => problems.push(format!("root/{p} removed (was {})", b.brief())),
                    Some(a) if b.kind != 'd' && a != b => {
                        problems.push(format!("root/{p} changed: {} -> {}", b.brief(), a.brief()))
                    }
                    Some(a) if b.kind == 'd' && a.kind != 'd' => {
                        problems.push(format!("root/{p} is no longer a directory: {}", a.brief()))
                    }
                    Some(a) if b.kind == 'd' => {
                        let mut what = Vec::new();
                        if a.mode != b.mode {
                            what.push(format!("mode {:o}->{:o}", b.mode & 0o7777, a.mode & 0o7777));
                        }
                        if (a.uid, a.gid) != (b.uid, b.gid) {
                            what.push(format!("owner {}:{}->{}:{}", b.uid, b.gid, a.uid, a.gid));
                        }
                        if a.mtime_ns != b.mtime_ns {
                            what.push("mtime".to_string());
                        }
                        if !what.is_empty() {
                            notes.push(format!("dir root/{p}: {}", what.join(", ")));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        Inside => {
            let outside_inodes: BTreeSet<u64> = before
                .outside
                .values()
                .filter(|e| e.kind == 'f')
                .map(|e| e.ino)
                .collect();
            for (what, snap) in [("root", &after.root), ("client", &after.client)] {
                for (p, e) in snap {
                    if e.kind == 'f' && String::from_utf8_lossy(&e.content).contains(MARK) {
                        problems.push(format!("{what}/{p} holds bytes from outside"));
                    }
                    if e.kind == 'f' && outside_inodes.contains(&e.ino) {
                        problems.push(format!("{what}/{p} is a hard link to a file outside"));
                    }
                }
            }
            if run.seen().contains(MARK) || run.seen().contains("TOP-SECRET") {
                problems.push("the client was told bytes from outside".into());
            }
        }
    }
    // Whatever the promise, nothing outside the root changes.
    problems.extend(diff("outside", &before.outside, &after.outside));
    Verdict { problems, notes }
}

/// The run did what the case expects (refusal, rsync's exit code, client refusal).
fn check_expect(expect: Expect, run: &Run) -> Result<(), String> {
    let denial = run.denial();
    match expect {
        Refused(reason) => {
            let ok = matches!(run.code, Some(77) | Some(12))
                && denial.is_some_and(|d| d.contains(reason))
                && run
                    .stderr
                    .contains("connection unexpectedly closed (0 bytes received so far)");
            if !ok {
                return Err(format!("expected rshell to refuse with {reason:?}"));
            }
        }
        Ran(code, _) => {
            if let Some(d) = denial {
                return Err(format!(
                    "expected rsync to run (exit {code}), rshell refused: {d}"
                ));
            }
            if run.code != Some(code) {
                return Err(format!("expected rsync to exit {code}"));
            }
        }
        Client(fragment) => {
            if denial.is_some() || !run.stderr.contains(fragment) || run.code == Some(0) {
                return Err(format!(
                    "expected the rsync client to refuse with {fragment:?}"
                ));
            }
        }
    }
    Ok(())
}

/// What a refusal tells the client, comparable between twins: the lines rshell and rsync
/// print, without rsync's closing `rsync error: ... (code N)` (the code is 77 or 12 by
/// timing) and rshell's syslog notes.
fn comparable(run: &Run) -> Vec<String> {
    run.told()
        .into_iter()
        .filter(|l| !l.starts_with("rsync error:"))
        .map(str::to_string)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Confine {
    Default,
    Off,
}

impl Confine {
    fn keys(self) -> &'static str {
        match self {
            // Landlock required, so a kernel that cannot enforce it fails the case instead
            // of running it unconfined; --confine-root is on by default.
            Confine::Default => "confine = \"require\"\n",
            Confine::Off => "confine = \"off\"\nconfine_root = false\n",
        }
    }
}

struct Row {
    promise: Promise,
    name: &'static str,
    default: String,
    off: Option<String>,
}

fn run_case(case: &Case, confine: Confine) -> (String, Vec<String>, Vec<String>) {
    let site = new_site(&format!("{}{}", confine.keys(), case.promise.keys()));
    case.promise.fixture(&site);
    (case.setup)(&site);
    let before = State::of(&site);
    let run = site.run(case.args);
    let after = State::of(&site);
    let expect = case.expect;
    let mut failures = Vec::new();
    if let Err(e) = check_expect(expect, &run) {
        failures.push(e);
    }
    let verdict = check_promise(case, &before, &after, &run);
    let mut broken = !verdict.problems.is_empty();
    match (case.limit, broken) {
        (Some(_), true) => broken = false,
        (Some(why), false) => failures.push(format!(
            "the documented limit ({why}) did not happen: update README and rshell.toml(5)"
        )),
        (None, _) => failures.extend(
            verdict
                .problems
                .iter()
                .map(|p| format!("promise broken: {p}")),
        ),
    }
    if let Some(extra) = case.extra {
        if let Err(e) = extra(&site, &run) {
            failures.push(e);
        }
    }
    let mut leaks = false;
    if let Some(t) = case.twin {
        let twin = site.run(t.args);
        let a: Vec<String> = comparable(&run)
            .iter()
            .map(|l| l.replace(t.from, t.to))
            .collect();
        let b = comparable(&twin);
        if a != b {
            leaks = true;
            failures.push(format!(
                "the client can tell {:?} from {:?}: rsync {:?} says\n{}\nbut rsync {:?} says\n{}",
                t.from,
                t.to,
                case.args,
                run.show(),
                t.args,
                twin.show()
            ));
        }
    }
    let cell = if broken {
        "BROKEN".to_string()
    } else if let Some(why) = case.limit {
        format!("documented limit: {why}")
    } else {
        match expect {
            Refused(_) => "refused".to_string(),
            Ran(_, how) => how.to_string(),
            Client(_) => "client refuses".to_string(),
        }
    };
    let cell = if leaks {
        format!("{cell}, but LEAKS (twin differs)")
    } else if failures.is_empty() || broken {
        cell
    } else {
        format!("{cell} (FAILED)")
    };
    let failures = failures
        .into_iter()
        .map(|f| {
            format!(
                "[{} / {}{}] rsync {}\n  {}\n  --- client saw:\n{}",
                case.promise.label(),
                case.name,
                if confine == Confine::Off {
                    " / confine off"
                } else {
                    ""
                },
                case.args.join(" "),
                f,
                run.show()
            )
        })
        .collect();
    (cell, failures, verdict.notes)
}

#[test]
fn every_promise_holds_on_disk() {
    if !usable() {
        return;
    }
    let start = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut notes: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut runs = 0;
    for case in cases() {
        let (default, f, n) = run_case(&case, Confine::Default);
        runs += 1 + usize::from(case.twin.is_some());
        failures.extend(f);
        for n in n {
            notes.entry(n).or_default().push(case.name);
        }
        let off = case.promise.both_confinements().then(|| {
            let (cell, f, _) = run_case(&case, Confine::Off);
            runs += 1;
            failures.extend(f);
            cell
        });
        rows.push(Row {
            promise: case.promise,
            name: case.name,
            default,
            off,
        });
    }
    let mut summary = format!(
        "effects matrix: {} cases, {runs} rsync runs, {:.1} s (refused = rshell denies; \
         forced = allowed, a forced option makes it hold; held = allowed and held; BROKEN = \
         promise not held on disk)\n",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    summary.push_str(&format!(
        "{:<16} {:<58} {:<40} {}\n",
        "promise", "case", "default", "confine off"
    ));
    for r in &rows {
        summary.push_str(&format!(
            "{:<16} {:<58} {:<40} {}\n",
            r.promise.label(),
            r.name,
            r.default,
            r.off.as_deref().unwrap_or("-")
        ));
    }
    for (n, names) in &notes {
        summary.push_str(&format!(
            "recorded (overwrite=false, directories): {n}; in: {}\n",
            names.join("; ")
        ));
    }
    // Straight to the terminal: libtest captures eprintln! of a passing test.
    let _ = writeln!(std::io::stderr(), "{summary}");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
