//! The path differential (issue 10): for every allowed command of the corpus and of the
//! attack tables, the paths the real rsync touched, run on the argv rshell rebuilt, are
//! compared with what `rshell --test --json` reported.
//!
//! For each command a throw-away site (`common::site`) gets a tree owned by `nobody`
//! (uid/gid 65534): a root holding every name the commands use, with symlinks planted in it
//! that point out of it (`esc`, `dest/esc-dir`, `dest/esc-file`, `data/esc-dir`,
//! `data/esc-file`) and one that stays inside (`inside -> data`), and an outside directory
//! beside it holding a secret and bait (writable by `nobody` too, so an escape would
//! really land). Then:
//! 1. `rshell --test --json CMD --user nobody --config <the site's config>` gives the
//!    report: the argv, the working directory and the pins (`/proc/self/fd/N`, and the
//!    root-relative path each stands for).
//! 2. A real rsync client (a pull when the server words say `--sender`, else a push; its
//!    options derived from the server words, its sources on a pull the server's own paths)
//!    runs with the site's fake ssh, which runs the built rshell as `nobody` with exactly
//!    CMD (`SERVER_COMMAND`; a secluded command's words are swapped in on stdin,
//!    `SERVER_WORDS`) under `strace -f -y -xx -u nobody` (`SERVER_AS`, `SERVER_TRACE`):
//!    rshell, the rsync it execs, and rsync's children.
//! 3. The trace is replayed: a descriptor table per process (the kernel's own `-y` names of
//!    every returned and passed descriptor; CLOEXEC ones dropped at exec), the working
//!    directory, and a model of the symlinks in the tree (the planted ones, plus those the
//!    transfer creates, minus those it removes or renames away), so that every path a system
//!    call names — relative to a descriptor, to the working directory, or through
//!    `/proc/self/fd/N` — is walked as the kernel walks it. Failed calls count too: they
//!    show where rsync aimed.
//!
//! What must hold, each a failure naming the command:
//! - rsync ran (the real run allowed what `--test` allowed), with exactly the argv `--test`
//!   reported (the same descriptor numbers, or one consistent renumbering), in the working
//!   directory it reported (root);
//! - every pin `--test` reported is, at rsync's exec, a descriptor of the real run standing
//!   for that path (resolved) beneath root; a transfer that ran to the end used every pin;
//! - every path rsync (or a child of it) named or was handed is beneath root, or one of a
//!   short explicit list of system files it reads ([`SYSTEM_READS`]), or — lookups only —
//!   an ancestor of root (rsync's `--confine-root` walks down to root by name) or of those
//!   system files, or its own /proc entry; nothing is written outside root but /dev/null;
//! - rshell itself writes nothing outside root (it creates a missing `--backup-dir` before
//!   the exec).
//!
//! Reported, not failed: writes beneath root but outside every pin (none so far), pins a
//! failed transfer never reached, and every non-zero client exit with its reason.
//!
//! Coverage: every distinct allowed line of tests/corpus-verdicts.tsv (one run per distinct
//! command and secluded words; the file repeats some commands sent by different clients;
//! the hand-written raw-byte rows are run byte for byte by tests/bytes.rs instead)
//! and the allowed rows of tests/attacks.rs (copied below in [`ATTACK_ROWS`], each citing
//! the case it twins, with its policy where that is not the reference one: read-only,
//! write-only, `delete = false`, forced options): 216 commands. The daemon-mode and
//! home-root rows are left out (no transfer of a tree of their own). Each command runs at
//! the default settings (Landlock, `--confine-root`) and with `confine = "off"` +
//! `confine_root = false`, where rshell's own checks and pins stand alone: 432 traced
//! transfers, three at a time (`RSHELL_PATHS_JOBS`): about 55 s on two cores shared with
//! other builds. The few `--files-from` downloads that rshell refuses without confinement
//! must be refused by `--test` and by the real run alike. Some transfers end non-zero (the
//! harness swaps the client's command line for the corpus one, and a client cannot always
//! mirror a server-only option); their paths are checked all the same.
//!
//! The control, [`the_harness_flags_plain_rsync_escaping_the_root`], runs plain rsync (no
//! rshell) on attack commands (`--backup-dir=../../outside`, a push into `dest/esc-dir/`, a
//! pull of `esc/secret`, `--link-dest=../../outside`) with the same trace and replay: each
//! must be reported as touching the outside, and rshell must refuse the same commands.
//!
//! `RSHELL_PATHS_SERVER_RSYNC=PATH` runs the server side with that rsync (`rsync =`).
//! Developer knobs: `RSHELL_PATHS_ONLY=TEXT` runs only the commands containing TEXT;
//! `RSHELL_PATHS_KEEP=DIR` keeps every trace in DIR.
//!
//! Needs root, `unshare -m`, overlayfs, /usr/bin/rsync, /usr/bin/strace and a kernel that
//! enforces Landlock (see `common::needs`).
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use common::site::{self, Site};

const NOBODY: u32 = 65534;
const RSYNC: &str = "/usr/bin/rsync";

/// The server's rsync: /usr/bin/rsync, or `RSHELL_PATHS_SERVER_RSYNC` (tests/run-all.sh
/// runs the differential a second time with Debian 12's rsync 3.2.7, which has neither
/// `--confine-root` nor 3.5.0's own refusals, so rshell's checks carry more there).
fn server_rsync() -> String {
    std::env::var("RSHELL_PATHS_SERVER_RSYNC").unwrap_or_else(|_| RSYNC.to_string())
}

/// The policy lines naming the server's rsync when it is not the default.
fn rsync_key() -> String {
    match std::env::var("RSHELL_PATHS_SERVER_RSYNC") {
        Ok(p) => format!("rsync = \"{p}\"\n"),
        Err(_) => String::new(),
    }
}

/// The two settings every command runs under.
const SETTINGS: [(&str, &str); 2] = [
    ("default", ""),
    ("confine off", "confine = \"off\"\nconfine_root = false\n"),
];

fn usable() -> bool {
    site::usable()
        && common::needs("strace", common::program("/usr/bin/strace"))
        && common::needs("a kernel that enforces Landlock", common::landlock())
        && common::needs("the account nobody with uid 65534", nobody())
}

fn nobody() -> Result<(), String> {
    let out = Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .map_err(|e| format!("`id` cannot run: {e}"))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "65534" => Ok(()),
        other => Err(format!("`id -u nobody` says {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// The commands.

struct Case {
    /// Where the command comes from.
    label: String,
    /// The command string; `{root}` stands for the root's absolute path.
    command: String,
    /// Secluded-args words as the corpus spells them (`rsync\0...\0\0`).
    words: Option<String>,
    /// Policy keys beyond `root` (the reference policy when empty).
    keys: &'static str,
}

const RO: &str = "access = \"read-only\"\n";
const WO: &str = "access = \"write-only\"\n";
const NO_DEL: &str = "delete = false\n";
const FORCED: &str = "munge_links = true\nfake_super = true\noverwrite = false\n";

/// The allowed rows of tests/attacks.rs (its tests are functions, not tables another file
/// can reach): command, secluded words, policy keys, and the case each twins.
#[rustfmt::skip]
const ATTACK_ROWS: &[(&str, Option<&str>, &str, &str)] = &[
    ("rsync --server -logDtpre.iLsfxCIvu . dest/", None, "", "PUSH, the twin of the A1-A27 push attacks"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . data/", None, "", "PULL, the twin of the pull attacks"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . inside/a.txt", None, "", "a17_uploaded_symlink_out_of_root...: the inside symlink twin"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . /etc/passwd", None, "", "a17: absolute paths anchored at root"),
    ("rsync --server --sender -logDtprRe.iLsfxCIvu --numeric-ids . {root}/data/", None, "", "a17: root's own spelling kept"),
    ("rsync --server -blogDtpre.iLsfxCIvu --backup-dir /old . dest/", None, "", "allowed_commands_are_rebuilt...: --backup-dir /old"),
    ("rsync --server -logDtpre.iLsfxCIvu --link-dest ../prev . snap/new/", None, "", "allowed_commands_are_rebuilt...: --link-dest ../prev"),
    ("/usr/bin/rsync --server --numeric-ids --perms --owner --group -D --links --hard-links --times --block-size=2048 --recursive . dest/", None, "", "allowed_commands_are_rebuilt...: BackupPC long spellings"),
    ("rsync --server -logDtpre.iLsfx . dest/", None, "", "allowed_commands_are_rebuilt...: rssh's refused capability string"),
    ("rsync --server -e.LsfxCIvu . dest/", None, "", "allowed_commands_are_rebuilt...: bare capabilities"),
    ("rsync --server -vlogDtpre31.14iLsfxCIvu . dest/", None, "", "allowed_commands_are_rebuilt...: versioned capabilities"),
    ("rsync --server -logDtpr -B8192 -@-1 . dest/", None, "", "allowed_commands_are_rebuilt...: -B8192 -@-1"),
    ("rsync --server -logDtpre.iLsfxCIvu --munge-links . dest/", None, FORCED, "forced_options_cannot_be_undone_by_the_client"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . data/*.txt", None, "", "globs_expand_inside_root...: data/*.txt"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . data/\\*.txt", None, "", "globs_expand_inside_root...: escaped glob"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . nomatch*", None, "", "globs_expand_inside_root...: no match"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . data/", None, RO, "given_read_only_then_pull_works..."),
    ("rsync --server -logDtpre.iLsfxCIvu . dest/", None, WO, "given_write_only_then_push_works..."),
    ("rsync --server -logDtpRe.LsfxCIvu --files-from=- --from0 . dest/", None, WO, "given_write_only...: client file list"),
    ("rsync --server -logDtpre.iLsfxCIvu . dest/", None, NO_DEL, "given_no_delete_then_every_deleting_option_is_denied: PUSH"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete . data/", None, NO_DEL, "given_no_delete...: pull --delete"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete-before . data/", None, NO_DEL, "given_no_delete...: pull --delete-before"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete-during . data/", None, NO_DEL, "given_no_delete...: pull --delete-during"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete-delay . data/", None, NO_DEL, "given_no_delete...: pull --delete-delay"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete-after . data/", None, NO_DEL, "given_no_delete...: pull --delete-after"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete-excluded . data/", None, NO_DEL, "given_no_delete...: pull --delete-excluded"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --delete-missing-args . data/", None, NO_DEL, "given_no_delete...: pull --delete-missing-args"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --force . data/", None, NO_DEL, "given_no_delete...: pull --force"),
    ("rsync --server -logDtpre.iLsfxCIvu --force . dest/", None, "", "given_no_delete...: push --force, reference policy"),
    ("rsync --server -logDtpre.iLsfxCIvu --remove-source-files . dest/", None, NO_DEL, "given_no_delete_then_removing_the_servers_sources...: push"),
    ("rsync --server -logDtpre.iLsfxCIvu --remove-sent-files . dest/", None, NO_DEL, "given_no_delete_then_removing_the_servers_sources...: push"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --remove-source-files . data/", None, "", "given_no_delete_then_removing_the_servers_sources...: pull, reference"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu --remove-sent-files . data/", None, "", "given_no_delete_then_removing_the_servers_sources...: pull, reference"),
    ("/usr/bin/rsync --server --sender -slHogDtprcxe.iLsfxC", Some(r"rsync\0--timeout=72000\0--numeric-ids\0.\0/\0\0"), "", "given_backuppc_defaults...: full backup"),
    ("/usr/bin/rsync --server --sender -slHogDtprxe.iLsfxC", Some(r"rsync\0--timeout=72000\0--numeric-ids\0.\0/\0\0"), "", "given_backuppc_defaults...: incremental"),
    ("/usr/bin/rsync --server -slHogDtprRe.iLsfxC", Some(r"rsync\0--log-format=%i\0--delete\0--super\0--stats\0--partial\0--numeric-ids\0.\0dest/\0\0"), "", "given_backuppc_defaults...: restore"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . dest/notes#1.txt", None, "", "given_old_args_names...: #"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . dest/x{1}", None, "", "given_old_args_names...: braces"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . dest/excl!x", None, "", "given_old_args_names...: !"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . dest/{a,b}", None, "", "given_old_args_names...: {a,b}"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . dest/!x", None, "", "given_old_args_names...: leading !"),
];

/// Every distinct allowed corpus line, then the attack rows (minus exact repeats).
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let text = include_str!("corpus-verdicts.tsv");
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] != "allow" {
            continue;
        }
        // Hand-written rows with raw bytes (`\xNN`, Latin-1 names): this harness plants
        // and compares names as text; tests/bytes.rs and the e2e Latin-1 scenario run those
        // through real rsync byte for byte.
        if line.contains("\\x") {
            continue;
        }
        let words = cols.get(2).map(|w| w.to_string());
        if seen.insert((cols[1].to_string(), words.clone(), "")) {
            out.push(Case {
                label: format!("corpus-verdicts.tsv:{}", n + 1),
                command: cols[1].to_string(),
                words,
                keys: "",
            });
        }
    }
    for (command, words, keys, from) in ATTACK_ROWS {
        let words = words.map(str::to_string);
        if seen.insert((command.to_string(), words.clone(), keys)) {
            out.push(Case {
                label: format!("attacks.rs {from}"),
                command: command.to_string(),
                words,
                keys,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The tree.

/// 2001-09-09: the mtime of the server's files, so that the client's newer ones replace
/// them (and backups, basis dirs and deletions have work to do).
const OLD: u64 = 1_000_000_000;

fn file(p: &Path, content: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(OLD);
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

fn dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

/// Every name the commands use, beneath root; the bait outside; the client's files.
fn plant(site: &Site) {
    let r = |rel: &str| site.root.join(rel);
    for d in [
        "dest/sub",
        "dest/stage",
        "src",
        "data/sub",
        "backups/2024-01-01",
        "backups/d1",
        "backups/d2",
        "srv/backup/host1",
        "srv/backups/latest",
        "srv/base",
        "srv/data/sub",
        "srv/old",
        "etc/ssh",
        "home/u",
        "var/log/apt",
        "var/tmp/partial",
        "tmp/stage",
        "stage",
        "base",
        "prev",
        "snap/prev",
        "outgoing",
        "absolute",
        "~",
        "dir with space",
    ] {
        dir(&r(d));
    }
    for f in [
        "dest/a.txt",
        "dest/old.txt",
        "dest/sub/gone.txt",
        "dest/notes#1.txt",
        "dest/x{1}",
        "dest/excl!x",
        "dest/{a,b}",
        "dest/!x",
        "src/a.txt",
        "data/a",
        "data/b",
        "data/a.txt",
        "data/b.txt",
        "data/file with space",
        "data/{a,b}",
        "data/sub/x.txt",
        "backups/2024-01-01/a.txt",
        "backups/d1/a.txt",
        "srv/backups/latest/a.txt",
        "srv/base/a.txt",
        "srv/data/a.txt",
        "srv/data/sub/c.txt",
        "etc/passwd",
        "etc/ssh/sshd_config",
        "home/u/f",
        "var/log/apt/history.log",
        "base/a.txt",
        "prev/a.txt",
        "snap/prev/a.txt",
        "outgoing/a.txt",
        "outgoing/b.txt",
        "img",
        "a b",
        "a*b",
        "~/x",
        "~other",
        "x.txt",
        "y.txt",
        "dir with space/a.txt",
    ] {
        file(&r(f), "server bytes\n");
    }
    file(&r("srv/list.txt"), "a.txt\nsub/c.txt\n");
    file(&r("srv/list0.txt"), "a.txt\0sub/c.txt\0");
    file(&r("remote/list.txt"), "a.txt\nsub/c.txt\n");
    // Symlinks: out of root (absolute and relative), and one that stays inside.
    symlink(&site.outside, r("esc")).unwrap();
    symlink(&site.outside, r("dest/esc-dir")).unwrap();
    symlink(site.outside.join("secret"), r("dest/esc-file")).unwrap();
    symlink("../../outside", r("data/esc-dir")).unwrap();
    symlink("../../outside/secret", r("data/esc-file")).unwrap();
    symlink("data", r("inside")).unwrap();
    file(&site.outside.join("secret"), "TOP-SECRET\n");
    file(&site.outside.join("a.txt"), "OUTSIDE-BAIT\n");
    dir(&site.outside.join("sub"));
    for top in [&site.root, &site.outside] {
        chown_tree(top, NOBODY);
    }
    // The client: newer files (so they replace the server's), a directory where the server
    // has a symlink out, a symlink with an outside target, and file lists.
    let c = |rel: &str| site.client.join(rel);
    for (f, text) in [
        ("src/a.txt", "client a\n"),
        ("src/b.txt", "client b\n"),
        ("src/sub/c.txt", "client c\n"),
        ("src/esc-dir/f.txt", "client f\n"),
    ] {
        std::fs::create_dir_all(c(f).parent().unwrap()).unwrap();
        std::fs::write(c(f), text).unwrap();
    }
    symlink("/etc/passwd", c("src/link-out")).unwrap();
    std::fs::write(c("list"), "a.txt\nsub/c.txt\n").unwrap();
    std::fs::write(c("list0"), "a.txt\0sub/c.txt\0").unwrap();
}

fn chown_tree(top: &Path, id: u32) {
    std::os::unix::fs::lchown(top, Some(id), Some(id)).unwrap();
    let meta = std::fs::symlink_metadata(top).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(top).unwrap() {
            chown_tree(&e.unwrap().path(), id);
        }
    }
}

/// Every symlink beneath `top`: path → target.
fn symlinks_beneath(top: &Path, out: &mut BTreeMap<PathBuf, PathBuf>) {
    let Ok(meta) = std::fs::symlink_metadata(top) else {
        return;
    };
    if meta.file_type().is_symlink() {
        out.insert(top.to_path_buf(), std::fs::read_link(top).unwrap());
    } else if meta.is_dir() {
        for e in std::fs::read_dir(top).unwrap() {
            symlinks_beneath(&e.unwrap().path(), out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client: which direction, and which options, from the server words.

/// Long options whose value may come in the next word.
const TWO_WORD: &[&str] = &[
    "--backup-dir",
    "--temp-dir",
    "--partial-dir",
    "--link-dest",
    "--compare-dest",
    "--copy-dest",
    "--files-from",
];

/// Options naming directories on the receiving side: on a pull that is the client, so they
/// are left out of the client's options (the server still gets them, in CMD).
const RECEIVER_DIRS: &[&str] = &[
    "--backup-dir",
    "--temp-dir",
    "--partial-dir",
    "--link-dest",
    "--compare-dest",
    "--copy-dest",
];

/// Server options this rsync's client does not know (the server still gets them).
const SERVER_ONLY: &[&str] = &["--use-qsort"];

/// The server's words: the command's, then (secluded) the words from stdin.
fn server_words(case: &Case, root: &Path) -> Vec<String> {
    let command = case.command.replace("{root}", root.to_str().unwrap());
    let mut words = shlex::split(&command).expect("corpus commands split");
    if let Some(w) = &case.words {
        let mut extra: Vec<String> = w.split("\\0").map(str::to_string).collect();
        while extra.last().is_some_and(|w| w.is_empty()) {
            extra.pop();
        }
        assert_eq!(extra.first().map(String::as_str), Some("rsync"));
        words.extend(extra.into_iter().skip(1));
    }
    words
}

/// The rsync client's arguments for `case` (without `-e`).
fn client_args(case: &Case, site: &Site) -> Vec<String> {
    let words = server_words(case, &site.root);
    let pull = words.iter().any(|w| w == "--sender");
    let from0 = words.iter().any(|w| w == "--from0");
    let mut args = Vec::new();
    let mut recursive = false;
    let mut files_from = false;
    let mut list_only = false;
    let mut i = 1;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if w == "." {
            break;
        }
        if w == "--server" || w == "--sender" {
            continue;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None if TWO_WORD.contains(&w.as_str()) => {
                    i += 1;
                    (w.clone(), Some(words[i - 1].clone()))
                }
                None => (w.clone(), None),
            };
            recursive |= name == "--recursive" || name == "--dirs";
            list_only |= name == "--list-only";
            if name == "--files-from" {
                files_from = true;
                let v = value.unwrap();
                if v == "-" {
                    let list = site.client.join(if from0 { "list0" } else { "list" });
                    args.push(format!("--files-from={}", list.display()));
                } else {
                    args.push(format!("--files-from=:{v}"));
                }
                continue;
            }
            if (pull && RECEIVER_DIRS.contains(&name.as_str()))
                || SERVER_ONLY.contains(&name.as_str())
            {
                continue;
            }
            args.push(match value {
                Some(v) => format!("{name}={v}"),
                None => name,
            });
            continue;
        }
        if w.starts_with("-B") || w.starts_with("-@") {
            args.push(w.clone());
            continue;
        }
        // A bundle: the letters before the capability string (`e.iLsfxCIvu`).
        let letters: String = w[1..].chars().take_while(|c| *c != 'e').collect();
        recursive |= letters.contains('r') || letters.contains('d');
        if !letters.is_empty() {
            args.push(format!("-{letters}"));
        }
    }
    if pull {
        // The names the server will send must be the ones the client asked for (the client
        // rejects an unrequested file-list name), so it asks for the server's own paths.
        for p in &words[i..] {
            args.push(format!("x:{p}"));
        }
        if !list_only {
            args.push("got/".into());
        }
    } else {
        args.push(
            if recursive || files_from {
                "src/"
            } else {
                "src/a.txt"
            }
            .into(),
        );
        args.push("x:dest".into());
    }
    args
}

// ---------------------------------------------------------------------------------------
// What `--test` reports.

#[derive(Debug)]
struct Report {
    argv: Vec<String>,
    cwd: PathBuf,
    /// fd number → root-relative path.
    pins: BTreeMap<i32, String>,
}

/// The case's command as this run sends it: `{root}` filled in, and a client's program
/// word `/usr/bin/rsync` (BackupPC) spelled as the configured server rsync, which is the
/// one absolute program path rshell accepts.
fn command_for(case: &Case, site: &Site) -> String {
    let command = case.command.replace("{root}", site.root.to_str().unwrap());
    match command.strip_prefix("/usr/bin/rsync ") {
        Some(rest) => format!("{} {rest}", server_rsync()),
        None => command,
    }
}

/// `Ok(Err(reason))`: `--test` denies the command.
fn test_report(site: &Site, case: &Case) -> Result<Result<Report, String>, String> {
    let command = command_for(case, site);
    let mut cmd = Command::new(common::binary());
    cmd.arg("--test")
        .arg(&command)
        .args(["--user", "nobody", "--json", "--config"])
        .arg(&site.config);
    if let Some(w) = &case.words {
        cmd.arg("--secluded").arg(w);
    }
    let out = cmd.output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "--test --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if json["verdict"] != "allow" {
        return Ok(Err(json["reason"].as_str().unwrap_or("").to_string()));
    }
    let plan = &json["plan"];
    // `--test --json` spells every word with the log's escaping; the trace side is text.
    let text = |s: &str| -> String {
        let bytes = rshell::log::unescape(s).expect("--test --json escapes words unambiguously");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| text(s.as_str().unwrap()))
            .collect()
    };
    let mut pins = BTreeMap::new();
    for p in plan["pins"].as_array().unwrap() {
        let fd = p["fd"].as_str().unwrap();
        let n = fd
            .strip_prefix("/proc/self/fd/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("a pin that is not /proc/self/fd/N: {fd}"))?;
        pins.insert(n, text(p["path"].as_str().unwrap()));
    }
    Ok(Ok(Report {
        argv: strings(&plan["argv"]),
        cwd: PathBuf::from(plan["cwd"].as_str().unwrap()),
        pins,
    }))
}

// ---------------------------------------------------------------------------------------
// The trace: strace -f -y -xx lines, merged and split into calls.

#[derive(Debug, Clone)]
struct Call {
    pid: i32,
    name: String,
    args: Vec<String>,
    ret: String,
    line: String,
}

/// Merge `<unfinished ...>` / `<... resumed>` halves and split each call.
fn calls(text: &str) -> Vec<Call> {
    let mut pending: HashMap<i32, String> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let full = if let Some(r) = rest.strip_prefix("<... ") {
            let Some(at) = r.find(" resumed>") else {
                continue;
            };
            match pending.remove(&pid) {
                Some(head) => format!("{head}{}", &r[at + " resumed>".len()..]),
                None => continue,
            }
        } else if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, head.to_string());
            continue;
        } else {
            rest.to_string()
        };
        if let Some(call) = split_call(pid, &full) {
            out.push(call);
        }
    }
    out
}

fn split_call(pid: i32, text: &str) -> Option<Call> {
    let open = text.find('(')?;
    let name = text[..open].to_string();
    let bytes = text.as_bytes();
    let mut args = Vec::new();
    let mut depth = 0;
    let mut start = open + 1;
    let mut i = open + 1;
    let mut end = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // -xx: strings hold only \xNN escapes, no quote inside.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i..].find("*/").map_or(bytes.len(), |e| i + e + 1);
            }
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b')' | b']' | b'}' | b'>' if depth > 0 => depth -= 1,
            b')' => {
                end = Some(i);
                break;
            }
            b',' if depth == 0 => {
                args.push(text[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let end = end?;
    let last = text[start..end].trim();
    if !last.is_empty() {
        args.push(last.to_string());
    }
    let ret = text[end + 1..]
        .trim_start()
        .strip_prefix('=')
        .unwrap_or("")
        .trim()
        .to_string();
    Some(Call {
        pid,
        name,
        args,
        ret,
        line: text.to_string(),
    })
}

/// `\x2f\x74...` → bytes.
fn unhex(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A string argument (`"\x.."`), as a path.
fn string_arg(tok: &str) -> Option<PathBuf> {
    let inner = tok.strip_prefix('"')?;
    let inner = &inner[..inner.find('"')?];
    Some(PathBuf::from(OsString::from_vec(unhex(inner))))
}

/// The kernel's name in a decoded descriptor (`3<\x..>`, `AT_FDCWD<\x..>`, and
/// `5<\x..>(deleted)` for a removed directory or file).
fn decoded(tok: &str) -> Option<PathBuf> {
    let at = tok.find('<')?;
    let end = tok.rfind('>')?;
    let bytes = unhex(tok.get(at + 1..end)?);
    if !bytes.starts_with(b"/") {
        return None; // pipe:[..], socket:[..], anon_inode:...
    }
    Some(PathBuf::from(OsString::from_vec(bytes)))
}

/// The descriptor number of a token (`3<...>` or `3`).
fn fd_number(tok: &str) -> Option<i32> {
    tok.split('<').next()?.trim().parse().ok()
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Replaying the trace.

#[derive(Clone, Default)]
struct Proc {
    fds: HashMap<i32, (Option<PathBuf>, bool)>,
    cwd: Option<PathBuf>,
    rsync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Lookup,
    Write,
}

/// One path a call named, resolved.
#[derive(Debug)]
struct Touch {
    pid: i32,
    call: String,
    kind: Kind,
    path: PathBuf,
    /// Symlinks the walk went through.
    via: Vec<PathBuf>,
}

#[derive(Default)]
struct Analysis {
    /// Every problem, one line each.
    violations: Vec<String>,
    /// rsync's argv, and the descriptor table of the process that exec'd it.
    exec_argv: Option<Vec<String>>,
    exec_line: String,
    exec_fds: HashMap<i32, Option<PathBuf>>,
    exec_cwd: Option<PathBuf>,
    /// Descriptor numbers rsync used (by number, or as /proc/self/fd/N).
    used_fds: BTreeSet<i32>,
    touches: usize,
    inside: usize,
    /// What rsync wrote beneath root: path, and the call.
    writes: Vec<(PathBuf, String)>,
}

/// System files rsync, its libraries and libc read (read and lookup only): a path equal to
/// an entry, or beneath one ending in `/`.
const SYSTEM_READS: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/locale.alias",
    "/etc/popt",
    "/etc/popt.d",
    "/etc/ssl/openssl.cnf",
    "/usr/lib/",
    "/lib/",
    "/lib64/",
    "/usr/share/locale/",
    "/usr/share/zoneinfo/",
    "/usr/bin/rsync",
    "/dev/null",
    "/dev/urandom",
    "/proc",
    // rsync's --munge-links checks that no real /rsyncd-munged directory defeats munging.
    "/rsyncd-munged",
    // NSS (`passwd: files systemd`): --usermap/--groupmap names are looked up in systemd's
    // user databases, found by walking down from / without following symlinks.
    "/run/systemd/userdb/",
    "/run/userdb/",
    "/run/host/userdb/",
    "/etc/userdb/",
    "/usr/local/lib/userdb/",
    "/usr/lib/userdb/",
];

/// Directories above the system files: looked up (never listed, never read) on the way
/// down to them.
fn system_ancestor(p: &Path) -> bool {
    Path::new(&server_rsync()).starts_with(p)
        || SYSTEM_READS
            .iter()
            .any(|e| Path::new(e.trim_end_matches('/')).starts_with(p))
}

fn system_read(p: &Path) -> bool {
    p == Path::new(&server_rsync())
        || SYSTEM_READS.iter().any(|e| match e.strip_suffix('/') {
            Some(d) => p == Path::new(d) || p.starts_with(d),
            None => p == Path::new(e),
        })
}

struct Replay<'a> {
    root: &'a Path,
    links: BTreeMap<PathBuf, PathBuf>,
    procs: HashMap<i32, Proc>,
    parents: HashMap<i32, i32>,
    a: Analysis,
}

fn open_kind(flags: &str) -> Kind {
    if ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"]
        .iter()
        .any(|f| flags.contains(f))
    {
        Kind::Write
    } else if flags.contains("O_PATH") {
        Kind::Lookup
    } else {
        Kind::Read
    }
}

impl Replay<'_> {
    fn proc(&mut self, pid: i32) -> &mut Proc {
        if !self.procs.contains_key(&pid) {
            let init = self
                .parents
                .get(&pid)
                .and_then(|pp| self.procs.get(pp))
                .cloned()
                .unwrap_or_default();
            self.procs.insert(pid, init);
        }
        self.procs.get_mut(&pid).unwrap()
    }

    /// The base a relative path starts from: a decoded dirfd, or the working directory.
    fn base(&mut self, pid: i32, dirfd: Option<&str>) -> Result<PathBuf, String> {
        let p = self.proc(pid);
        match dirfd {
            Some(tok) if tok.starts_with("AT_FDCWD") => decoded(tok)
                .or_else(|| p.cwd.clone())
                .ok_or_else(|| "unknown working directory".to_string()),
            Some(tok) => decoded(tok)
                .or_else(|| fd_number(tok).and_then(|n| p.fds.get(&n)?.0.clone()))
                .ok_or_else(|| format!("unknown descriptor {tok}")),
            None => p
                .cwd
                .clone()
                .ok_or_else(|| "unknown working directory".to_string()),
        }
    }

    /// Walk `path` from `base` as the kernel would, through the modelled symlinks and the
    /// process's `/proc/self/fd/N` magic links.
    fn walk(
        &mut self,
        pid: i32,
        base: PathBuf,
        path: &Path,
        follow_last: bool,
    ) -> Result<(PathBuf, Vec<PathBuf>), String> {
        let mut queue: VecDeque<OsString> = path
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .map(|c| OsString::from_vec(c.to_vec()))
            .collect();
        let mut cur = if path.is_absolute() {
            PathBuf::from("/")
        } else {
            base
        };
        let mut via = Vec::new();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                cur.pop();
                continue;
            }
            cur.push(&c);
            let last = queue.iter().all(|c| c.is_empty() || c == ".");
            // /proc/self/fd/N, /proc/thread-self/fd/N, /proc/PID/fd/N: the descriptor. The
            // kernel does not follow a last one that is not followed (mkdir on it fails with
            // EEXIST), but what rsync meant, and got, is the pinned directory.
            if let Some(n) = magic_fd(&cur) {
                self.used(pid, n);
                let target = self.proc(pid).fds.get(&n).and_then(|f| f.0.clone());
                match target {
                    Some(t) => {
                        cur = t;
                        continue;
                    }
                    None => {
                        return Err(format!(
                            "{} names descriptor {n}, which the trace never showed",
                            path.display()
                        ))
                    }
                }
            }
            if last && !follow_last {
                continue;
            }
            if let Some(t) = self.links.get(&cur).cloned() {
                hops += 1;
                if hops > 40 {
                    return Err(format!("{}: too many symlinks", path.display()));
                }
                via.push(cur.clone());
                cur.pop();
                if t.is_absolute() {
                    cur = PathBuf::from("/");
                }
                let mut rest: VecDeque<OsString> = t
                    .as_os_str()
                    .as_bytes()
                    .split(|b| *b == b'/')
                    .map(|c| OsString::from_vec(c.to_vec()))
                    .collect();
                rest.extend(queue);
                queue = rest;
            }
        }
        Ok((cur, via))
    }

    fn used(&mut self, pid: i32, n: i32) {
        if self.proc(pid).rsync {
            self.a.used_fds.insert(n);
        }
    }

    /// A path argument of a call: resolve and record it.
    fn touch(
        &mut self,
        call: &Call,
        dirfd: Option<usize>,
        path: usize,
        kind: Kind,
        follow: bool,
        out: &mut Vec<Touch>,
    ) {
        let dirtok = dirfd.and_then(|i| call.args.get(i)).map(String::as_str);
        let Some(tok) = call.args.get(path) else {
            return;
        };
        let raw = match string_arg(tok) {
            Some(p) => p,
            // NULL path (utimensat on the descriptor itself).
            None if tok == "NULL" => PathBuf::new(),
            None => return,
        };
        let resolved = self.base(call.pid, dirtok).and_then(|base| {
            if raw.as_os_str().is_empty() {
                Ok((base, Vec::new()))
            } else {
                self.walk(call.pid, base, &raw, follow)
            }
        });
        match resolved {
            Ok((p, via)) => out.push(Touch {
                pid: call.pid,
                call: call.name.clone(),
                kind,
                path: p,
                via,
            }),
            Err(why) => {
                if self.proc(call.pid).rsync || kind == Kind::Write {
                    self.a.violations.push(format!(
                        "pid {} {}: cannot resolve {:?}: {why}",
                        call.pid, call.name, raw
                    ))
                }
            }
        }
    }

    fn step(&mut self, call: &Call) {
        let pid = call.pid;
        self.proc(pid);
        // The kernel's names of every descriptor argument refresh the table.
        for tok in &call.args {
            if tok.starts_with("AT_FDCWD<") {
                if let Some(p) = decoded(tok) {
                    self.proc(pid).cwd = Some(p);
                }
            } else if let (Some(n), true) = (fd_number(tok), tok.contains('<')) {
                let p = decoded(tok);
                let e = self.proc(pid).fds.entry(n).or_insert((None, false));
                e.0 = p;
                self.used(pid, n);
            }
        }
        let ok = !call.ret.starts_with('-') && !call.ret.starts_with('?');
        let flags = |i: usize| call.args.get(i).cloned().unwrap_or_default();
        let nofollow = |i: usize| flags(i).contains("AT_SYMLINK_NOFOLLOW");
        let mut t = Vec::new();
        use Kind::*;
        match call.name.as_str() {
            "open" => {
                let f = flags(1);
                let follow = !f.contains("O_NOFOLLOW") && !f.contains("O_EXCL");
                self.touch(call, None, 0, open_kind(&f), follow, &mut t);
            }
            "creat" => self.touch(call, None, 0, Write, true, &mut t),
            "openat" => {
                let f = flags(2);
                let follow = !f.contains("O_NOFOLLOW") && !f.contains("O_EXCL");
                self.touch(call, Some(0), 1, open_kind(&f), follow, &mut t);
            }
            "openat2" => {
                let f = flags(2);
                let follow = !f.contains("O_NOFOLLOW") && !f.contains("RESOLVE_NO_SYMLINKS");
                self.touch(call, Some(0), 1, open_kind(&f), follow, &mut t);
            }
            "stat" | "access" | "statfs" | "getxattr" | "listxattr" | "truncate" => {
                let k = if call.name == "truncate" {
                    Write
                } else {
                    Lookup
                };
                self.touch(call, None, 0, k, true, &mut t);
            }
            "lstat" | "readlink" | "lgetxattr" | "llistxattr" => {
                self.touch(call, None, 0, Lookup, false, &mut t)
            }
            "newfstatat" => self.touch(call, Some(0), 1, Lookup, !nofollow(3), &mut t),
            "statx" => self.touch(call, Some(0), 1, Lookup, !nofollow(2), &mut t),
            "faccessat" | "faccessat2" => {
                self.touch(call, Some(0), 1, Lookup, !nofollow(3), &mut t)
            }
            "readlinkat" => {
                // rsync's --confine-root reads /proc/PID/fd/N with readlinkat(fd, "N").
                if let (Some(dir), Some(name)) = (
                    call.args.first().and_then(|d| decoded(d)),
                    call.args.get(1).and_then(|n| string_arg(n)),
                ) {
                    if magic_fd(&dir.join(&name)).is_some() {
                        if let Some(n) = name.to_str().and_then(|n| n.parse().ok()) {
                            self.used(pid, n);
                        }
                    }
                }
                self.touch(call, Some(0), 1, Lookup, false, &mut t)
            }
            "mkdir" | "rmdir" | "unlink" | "mknod" | "lchown" | "lsetxattr" | "lremovexattr" => {
                self.touch(call, None, 0, Write, false, &mut t)
            }
            "chmod" | "chown" | "utime" | "utimes" | "setxattr" | "removexattr" => {
                self.touch(call, None, 0, Write, true, &mut t)
            }
            "mkdirat" | "unlinkat" | "mknodat" => {
                self.touch(call, Some(0), 1, Write, false, &mut t)
            }
            "fchmodat" | "futimesat" => self.touch(call, Some(0), 1, Write, true, &mut t),
            "fchownat" => self.touch(call, Some(0), 1, Write, !nofollow(4), &mut t),
            "utimensat" => self.touch(call, Some(0), 1, Write, !nofollow(3), &mut t),
            "rename" => {
                self.touch(call, None, 0, Write, false, &mut t);
                self.touch(call, None, 1, Write, false, &mut t);
            }
            "renameat" | "renameat2" => {
                self.touch(call, Some(0), 1, Write, false, &mut t);
                self.touch(call, Some(2), 3, Write, false, &mut t);
            }
            "link" => {
                self.touch(call, None, 0, Write, false, &mut t);
                self.touch(call, None, 1, Write, false, &mut t);
            }
            "linkat" => {
                let follow = flags(4).contains("AT_SYMLINK_FOLLOW");
                self.touch(call, Some(0), 1, Write, follow, &mut t);
                self.touch(call, Some(2), 3, Write, false, &mut t);
            }
            "symlink" => self.touch(call, None, 1, Write, false, &mut t),
            "symlinkat" => self.touch(call, Some(1), 2, Write, false, &mut t),
            "chdir" | "chroot" | "execve" => self.touch(call, None, 0, Read, true, &mut t),
            "execveat" | "name_to_handle_at" => self.touch(call, Some(0), 1, Read, true, &mut t),
            "inotify_add_watch" => self.touch(call, None, 1, Read, true, &mut t),
            "mount" | "umount2" | "pivot_root" | "fanotify_mark" => {
                self.touch(call, None, 0, Write, true, &mut t)
            }
            "fchmod" | "fchown" | "fsetxattr" | "fremovexattr" | "ftruncate" | "fallocate"
            | "fchdir" | "getdents64" | "fgetxattr" | "flistxattr" => {
                let kind = if ["fchdir", "getdents64", "fgetxattr", "flistxattr"]
                    .contains(&call.name.as_str())
                {
                    Read
                } else {
                    Write
                };
                if let Some(p) = call.args.first().and_then(|d| decoded(d)) {
                    t.push(Touch {
                        pid,
                        call: call.name.clone(),
                        kind,
                        path: p,
                        via: Vec::new(),
                    });
                }
            }
            _ => {}
        }
        // What an open returned: the kernel's own name for what it opened.
        if call.name.starts_with("open") || call.name == "creat" {
            if let Some(p) = decoded(&call.ret) {
                let f = flags(if call.name == "open" { 1 } else { 2 });
                t.push(Touch {
                    pid,
                    call: format!("{} (result)", call.name),
                    kind: open_kind(&f),
                    path: p,
                    via: Vec::new(),
                });
            }
        }
        // A failed call is judged too: it shows where rsync aimed.
        let touches = t;
        for touch in &touches {
            self.judge(touch, call);
        }
        if ok {
            self.effects(call, &touches);
        }
    }

    /// Is this touch allowed?
    fn judge(&mut self, t: &Touch, call: &Call) {
        let rsync = self.procs.get(&t.pid).is_some_and(|p| p.rsync);
        if !rsync && t.kind != Kind::Write {
            return; // rshell's own reads (its config, passwd, the Landlock rule paths)
        }
        self.a.touches += rsync as usize;
        let p = &t.path;
        let beneath_root = p.starts_with(self.root);
        if beneath_root && rsync {
            self.a.inside += 1;
            if t.kind == Kind::Write {
                self.a.writes.push((p.clone(), call.line.clone()));
            }
        }
        let ok = match t.kind {
            _ if beneath_root => true,
            Kind::Write => p == Path::new("/dev/null"),
            Kind::Lookup if self.root.starts_with(p) || system_ancestor(p) => true,
            _ if own_proc(p, t.pid, &self.procs) => true,
            _ => system_read(p),
        };
        if !ok {
            let via = if t.via.is_empty() {
                String::new()
            } else {
                format!(" (through {:?})", t.via)
            };
            self.a.violations.push(format!(
                "{} pid {} {} {:?} {}{via}: {}",
                if rsync { "rsync" } else { "rshell" },
                t.pid,
                t.call,
                t.kind,
                p.display(),
                shorten(&call.line)
            ));
        }
    }

    /// What a successful call changes in the model.
    fn effects(&mut self, call: &Call, touches: &[Touch]) {
        let pid = call.pid;
        let cloexec = |s: &str| s.contains("O_CLOEXEC") || s.contains("F_DUPFD_CLOEXEC");
        match call.name.as_str() {
            "clone" | "clone3" | "fork" | "vfork" => {
                if let Ok(child) = call.ret.parse::<i32>() {
                    let state = self.proc(pid).clone();
                    self.procs.entry(child).or_insert(state);
                }
            }
            "close" => {
                if let Some(n) = call.args.first().and_then(|t| fd_number(t)) {
                    self.proc(pid).fds.remove(&n);
                }
            }
            "fcntl" if flags_at(call, 1) == "F_SETFD" => {
                if let Some(n) = call.args.first().and_then(|t| fd_number(t)) {
                    let on = flags_at(call, 2).contains("FD_CLOEXEC");
                    if let Some(e) = self.proc(pid).fds.get_mut(&n) {
                        e.1 = on;
                    }
                }
            }
            "chdir" => {
                if let Some(t) = touches.first() {
                    self.proc(pid).cwd = Some(t.path.clone());
                }
            }
            "fchdir" => {
                if let Some(p) = call.args.first().and_then(|d| decoded(d)) {
                    self.proc(pid).cwd = Some(p);
                }
            }
            "execve" | "execveat" => {
                let program = call.args.first().and_then(|a| string_arg(a));
                let p = self.proc(pid);
                p.fds.retain(|_, (_, cloexec)| !*cloexec);
                if program.as_deref() == Some(Path::new(&server_rsync())) && !p.rsync {
                    p.rsync = true;
                    let fds = p.fds.iter().map(|(n, (p, _))| (*n, p.clone())).collect();
                    let cwd = p.cwd.clone();
                    self.a.exec_argv = Some(string_list(call.args.get(1).map_or("", |s| s)));
                    self.a.exec_line = call.line.clone();
                    self.a.exec_fds = fds;
                    self.a.exec_cwd = cwd;
                }
            }
            "symlink" | "symlinkat" => {
                if let (Some(target), Some(t)) = (
                    call.args.first().and_then(|a| string_arg(a)),
                    touches.first(),
                ) {
                    self.links.insert(t.path.clone(), target);
                }
            }
            "unlink" | "unlinkat" | "rmdir" => {
                if let Some(t) = touches.first() {
                    let gone = t.path.clone();
                    self.links.retain(|l, _| !l.starts_with(&gone));
                }
            }
            "rename" | "renameat" | "renameat2" => {
                if let [from, to, ..] = touches {
                    let moved: Vec<(PathBuf, PathBuf)> = self
                        .links
                        .iter()
                        .filter(|(l, _)| l.starts_with(&from.path))
                        .map(|(l, t)| (l.clone(), t.clone()))
                        .collect();
                    self.links.retain(|l, _| !l.starts_with(&to.path));
                    for (l, target) in moved {
                        self.links.remove(&l);
                        let rel = l.strip_prefix(&from.path).unwrap();
                        self.links.insert(to.path.join(rel), target);
                    }
                }
            }
            _ => {}
        }
        // A returned descriptor: the kernel's name for it.
        if let (Some(n), Some(_)) = (fd_number(&call.ret), call.ret.find('<')) {
            let p = decoded(&call.ret);
            let ce = match call.name.as_str() {
                "open" => cloexec(&flags_at(call, 1)),
                "openat" | "openat2" => cloexec(&flags_at(call, 2)),
                "dup3" => cloexec(&flags_at(call, 2)),
                "fcntl" => cloexec(&flags_at(call, 1)),
                _ => false,
            };
            self.proc(pid).fds.insert(n, (p, ce));
        }
    }
}

fn flags_at(call: &Call, i: usize) -> String {
    call.args.get(i).cloned().unwrap_or_default()
}

/// `["\x..", "\x.."]` → strings.
fn string_list(tok: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = tok;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(String::from_utf8_lossy(&unhex(&after[..end])).into_owned());
        rest = &after[end + 1..];
    }
    out
}

/// `/proc/self/fd/N`, `/proc/thread-self/fd/N` or `/proc/PID/fd/N` → N.
fn magic_fd(p: &Path) -> Option<i32> {
    let rest = p.strip_prefix("/proc").ok()?;
    let mut c = rest.components();
    let who = c.next()?.as_os_str().to_str()?;
    if who != "self" && who != "thread-self" && who.parse::<u32>().is_err() {
        return None;
    }
    if c.next()?.as_os_str() != "fd" {
        return None;
    }
    let n = c.next()?.as_os_str().to_str()?.parse().ok()?;
    c.next().is_none().then_some(n)
}

/// /proc/PID/... of an rsync process itself (its own status, fd directory).
fn own_proc(p: &Path, pid: i32, procs: &HashMap<i32, Proc>) -> bool {
    let Ok(rest) = p.strip_prefix("/proc") else {
        return false;
    };
    let Some(first) = rest.components().next() else {
        return false;
    };
    let first = first.as_os_str().to_str().unwrap_or("");
    first == "self"
        || first == "thread-self"
        || first
            .parse::<i32>()
            .is_ok_and(|n| n == pid || procs.get(&n).is_some_and(|p| p.rsync))
}

fn shorten(line: &str) -> String {
    // Decode the hex strings so the message is readable.
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("\\x") {
        out.push_str(&rest[..at]);
        let mut bytes = Vec::new();
        let mut r = &rest[at..];
        while r.starts_with("\\x") && r.len() >= 4 {
            match u8::from_str_radix(&r[2..4], 16) {
                Ok(v) => bytes.push(v),
                Err(_) => break,
            }
            r = &r[4..];
        }
        out.push_str(&String::from_utf8_lossy(&bytes));
        if bytes.is_empty() {
            out.push_str("\\x");
            r = &rest[at + 2..];
        }
        rest = r;
    }
    out.push_str(rest);
    out.chars().take(300).collect()
}

/// Replay a trace of a run whose root is `root`, with `links` the symlinks beneath the
/// site before the run.
fn analyse(trace: &str, root: &Path, links: BTreeMap<PathBuf, PathBuf>) -> Analysis {
    let calls = calls(trace);
    let mut parents = HashMap::new();
    for c in &calls {
        if ["clone", "clone3", "fork", "vfork"].contains(&c.name.as_str()) {
            if let Ok(child) = c.ret.parse::<i32>() {
                parents.insert(child, c.pid);
            }
        }
    }
    let mut replay = Replay {
        root,
        links,
        procs: HashMap::new(),
        parents,
        a: Analysis::default(),
    };
    for c in &calls {
        replay.step(c);
    }
    replay.a
}

// ---------------------------------------------------------------------------------------
// One run.

#[derive(Default)]
struct Outcome {
    failures: Vec<String>,
    exit: Option<i32>,
    touches: usize,
    pins: usize,
    pins_used: usize,
    /// `--test` and the real run both refused it (in the confine-off setting only).
    refused: bool,
    /// Pins rsync never used, and the client's last words when it exited non-zero.
    unused: Vec<String>,
    client: String,
    /// Writes beneath root but outside every reported pin.
    stray: Vec<String>,
    /// Outside-root accesses the kernel refused (an rsync before 3.5.0 under Landlock).
    denied_outside: Vec<String>,
    took: Duration,
}

/// What rshell may refuse once Landlock and `--confine-root` are off: a download whose names
/// come from a file list (rshell cannot vet them itself).
/// The refusals rshell makes only where neither Landlock nor `--confine-root` guards
/// rsync: a download's `--files-from`, and (rsync before 3.5.0) `--ignore-existing`.
const REFUSED_WITHOUT_CONFINEMENT: &[&str] = &[
    "needs Landlock or --confine-root",
    "no Landlock: rsync would write through a symlink",
];

/// Run the real transfer for `command` (secluded `words`) in `site`, traced; the trace's
/// analysis and the client's output. `plain`: run the command itself, with no rshell, in
/// the root (the control).
fn transfer(
    site: &Site,
    command: &str,
    words: Option<&str>,
    args: &[String],
    plain: bool,
) -> (Analysis, Output) {
    let trace = site.base().join("trace");
    let root = site.root.display().to_string();
    let words_file = site.base().join("words");
    let mut env: Vec<(&str, &str)> = vec![
        ("SERVER_COMMAND", command),
        ("SERVER_AS", "nobody"),
        ("SERVER_TRACE", trace.to_str().unwrap()),
        ("NO_SYSLOG", "1"),
    ];
    if let Some(w) = words {
        std::fs::write(&words_file, w.replace("\\0", "\0")).unwrap();
        env.push(("SERVER_WORDS", words_file.to_str().unwrap()));
    }
    if plain {
        env.extend([("FAKE_SSH", "plain"), ("PLAIN_CWD", root.as_str())]);
    }
    let mut links = BTreeMap::new();
    symlinks_beneath(&site.root, &mut links);
    symlinks_beneath(&site.outside, &mut links);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = site.rsync(&env, &args);
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    // RSHELL_PATHS_KEEP=DIR: keep each trace there (a developer's look at one run).
    if let Ok(dir) = std::env::var("RSHELL_PATHS_KEEP") {
        let name = site
            .base()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let _ = std::fs::write(Path::new(&dir).join(name), &text);
    }
    (analyse(&text, &site.root, links), out)
}

fn run_case(case: &Case, setting: &str) -> Outcome {
    let start = Instant::now();
    let mut o = check_case(case, setting);
    o.took = start.elapsed();
    o
}

fn check_case(case: &Case, setting: &str) -> Outcome {
    let site = Site::for_user(
        "paths",
        "nobody",
        &format!("{}{setting}{}", case.keys, rsync_key()),
    );
    plant(&site);
    let mut failures = Vec::new();
    let command = command_for(case, &site);
    let args = client_args(case, &site);
    let report = match test_report(&site, case) {
        Ok(Ok(r)) => r,
        Ok(Err(reason)) => {
            // Then the real run must refuse it too.
            let (a, out) = transfer(&site, &command, case.words.as_deref(), &args, false);
            if !setting.is_empty()
                && REFUSED_WITHOUT_CONFINEMENT
                    .iter()
                    .any(|r| reason.contains(r))
            {
                if a.exec_argv.is_some() {
                    failures.push(format!(
                        "--test refused it ({reason}), the real run ran rsync"
                    ));
                }
            } else {
                failures.push(format!("--test refused it: {reason}"));
            }
            failures.extend(a.violations);
            return Outcome {
                failures,
                exit: out.status.code(),
                refused: true,
                ..Outcome::default()
            };
        }
        Err(e) => {
            return Outcome {
                failures: vec![e],
                ..Outcome::default()
            }
        }
    };
    let (a, out) = transfer(&site, &command, case.words.as_deref(), &args, false);
    let client = || {
        format!(
            "client rsync {} -> exit {:?}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    // An rsync before 3.5.0 walks through a symlink the client planted in the destination
    // under --ignore-existing (rshell refuses that where no Landlock guards it). Under
    // Landlock the walk reaches a lookup and then a refused create: reported, and counted
    // as a documented limit (a lookup shows whether a name exists there), not a failure.
    // Anything that succeeded outside the root still fails.
    let old_rsync_under_landlock = server_rsync() != RSYNC && setting.is_empty();
    let (denied_outside, escaped): (Vec<String>, Vec<String>) = a
        .violations
        .iter()
        .cloned()
        .partition(|v| old_rsync_under_landlock && v.contains("= -1 E"));
    failures.extend(escaped);
    let Some(exec_argv) = &a.exec_argv else {
        failures.push(format!("rsync never ran ({})", client()));
        return Outcome {
            failures,
            exit: out.status.code(),
            touches: a.touches,
            pins: report.pins.len(),
            ..Outcome::default()
        };
    };
    // The argv: equal, up to one consistent renumbering of the pinned descriptors.
    let mut renumber: BTreeMap<i32, i32> = BTreeMap::new();
    let same = exec_argv.len() == report.argv.len()
        && exec_argv.iter().zip(&report.argv).all(|(real, told)| {
            if real == told {
                return true;
            }
            match (fd_word(real), fd_word(told)) {
                (Some((rn, rs)), Some((tn, ts))) if rs == ts => {
                    *renumber.entry(tn).or_insert(rn) == rn
                }
                _ => false,
            }
        });
    if !same {
        failures.push(format!(
            "rsync ran {exec_argv:?}, --test reported {:?} ({})",
            report.argv, a.exec_line
        ));
    }
    if a.exec_cwd.as_deref() != Some(report.cwd.as_path()) || report.cwd != site.root {
        failures.push(format!(
            "rsync started in {:?}, --test reported {:?} (root {:?})",
            a.exec_cwd, report.cwd, site.root
        ));
    }
    let mut used = 0;
    let mut unused = Vec::new();
    for (n, shown) in &report.pins {
        let real = renumber.get(n).copied().unwrap_or(*n);
        let expect = std::fs::canonicalize(site.root.join(shown))
            .unwrap_or_else(|_| normalize(&site.root.join(shown)));
        match a.exec_fds.get(&real) {
            Some(Some(p)) if p.starts_with(&site.root) => {
                if *p != expect && !p.exists() {
                    // A basis directory rshell made without a name is fine; any other
                    // mismatch is reported.
                } else if *p != expect {
                    failures.push(format!(
                        "pin {n} ({shown}) is {} at rsync's exec, not {}",
                        p.display(),
                        expect.display()
                    ));
                }
            }
            other => failures.push(format!(
                "pin {n} ({shown}) is {other:?} at rsync's exec: not beneath root"
            )),
        }
        if a.used_fds.contains(&real) {
            used += 1;
        } else {
            unused.push(format!("{n} ({shown})"));
        }
    }
    // Every write beneath root lands beneath a path --test reported (a pin).
    let pinned: Vec<PathBuf> = report
        .pins
        .keys()
        .filter_map(|n| {
            a.exec_fds
                .get(&renumber.get(n).copied().unwrap_or(*n))?
                .clone()
        })
        .collect();
    let stray: Vec<String> = a
        .writes
        .iter()
        .filter(|(p, _)| !pinned.iter().any(|pin| p.starts_with(pin)))
        .map(|(p, call)| format!("{} ({})", p.display(), shorten(call)))
        .collect();
    // A transfer that ran to the end used every descriptor --test reported.
    if out.status.success() && !unused.is_empty() {
        failures.push(format!(
            "rsync succeeded without using the pins {}",
            unused.join(", ")
        ));
    }
    if !failures.is_empty() {
        failures.push(client());
    }
    let last = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| !l.starts_with("rshell: note:"))
        .unwrap_or("")
        .to_string();
    Outcome {
        failures,
        exit: out.status.code(),
        touches: a.touches,
        pins: report.pins.len(),
        pins_used: used,
        unused,
        client: last,
        stray,
        denied_outside,
        ..Outcome::default()
    }
}

/// `/proc/self/fd/N<suffix>` (or `--opt=/proc/self/fd/N<suffix>`) → (N, the rest).
fn fd_word(w: &str) -> Option<(i32, String)> {
    let at = w.find("/proc/self/fd/")?;
    let after = &w[at + "/proc/self/fd/".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let n = digits.parse().ok()?;
    Some((n, format!("{}|{}", &w[..at], &after[digits.len()..])))
}

/// Parallel runs (each in its own site; much of a run is waiting for processes and
/// namespaces to come and go): `RSHELL_PATHS_JOBS`, else 3.
fn jobs() -> usize {
    std::env::var("RSHELL_PATHS_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(3)
}

#[test]
fn paths_rsync_touched_are_the_paths_rshell_reported() {
    if !usable() {
        return;
    }
    let start = Instant::now();
    // RSHELL_PATHS_ONLY=TEXT: only the commands containing TEXT (a developer's rerun).
    let only = std::env::var("RSHELL_PATHS_ONLY").unwrap_or_default();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.command.contains(&only))
        .collect();
    let work: Vec<(usize, usize)> = (0..SETTINGS.len())
        .flat_map(|s| (0..cases.len()).map(move |c| (s, c)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs() {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&(s, c)) = work.get(i) else { break };
                let o = run_case(&cases[c], SETTINGS[s].1);
                results.lock().unwrap().push((i, o));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut failed = Vec::new();
    let mut exits: BTreeMap<String, usize> = BTreeMap::new();
    let (mut touches, mut pins, mut pins_used, mut refused) = (0, 0, 0, 0);
    let mut slowest = (Duration::ZERO, String::new());
    let mut notes = Vec::new();
    for (i, o) in &results {
        let (s, c) = work[*i];
        let case = &cases[c];
        touches += o.touches;
        pins += o.pins;
        pins_used += o.pins_used;
        refused += o.refused as usize;
        *exits.entry(format!("{:?}", o.exit)).or_default() += 1;
        if !o.unused.is_empty() {
            notes.push(format!(
                "[{}] {}: pins rsync did not use: {}",
                SETTINGS[s].0,
                case.command,
                o.unused.join(", ")
            ));
        }
        if !o.denied_outside.is_empty() {
            notes.push(format!(
                "[{}] {}: documented limit (rsync before 3.5.0, Landlock refused it): {} outside accesses denied, e.g. {}",
                SETTINGS[s].0,
                case.command,
                o.denied_outside.len(),
                o.denied_outside[0]
            ));
        }
        if !o.stray.is_empty() {
            notes.push(format!(
                "[{}] {}: {} writes beneath root outside every reported pin, e.g. {}",
                SETTINGS[s].0,
                case.command,
                o.stray.len(),
                o.stray[0]
            ));
        }
        if o.exit != Some(0) && !o.refused {
            notes.push(format!(
                "[{}] {}: client exit {:?}: {}",
                SETTINGS[s].0, case.command, o.exit, o.client
            ));
        }
        if o.took > slowest.0 {
            slowest = (o.took, case.command.clone());
        }
        if !o.failures.is_empty() {
            failed.push(format!(
                "[{}] {} ({}{}):\n    {}",
                SETTINGS[s].0,
                case.command,
                case.label,
                case.words
                    .as_deref()
                    .map(|w| format!(", words {w}"))
                    .unwrap_or_default(),
                o.failures.join("\n    ")
            ));
        }
    }
    println!(
        "{} commands x {} settings = {} traced runs in {:.1?} ({} refused by --test and by the \
         real run, only where confinement is off); {touches} paths named by rsync; {pins} pins \
         reported, {pins_used} of them used by rsync; client exit codes {exits:?}; slowest \
         {:.1?}: {}",
        cases.len(),
        SETTINGS.len(),
        results.len(),
        start.elapsed(),
        refused,
        slowest.0,
        slowest.1
    );
    for n in &notes {
        println!("  {n}");
    }
    assert!(
        failed.is_empty(),
        "{} of {} runs broke the report:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

/// The control: plain rsync (no rshell), as `nobody` in the root, on attack commands that
/// escape it. Traced and replayed exactly like the runs above, each must be reported as
/// touching the outside — the harness can fail — and rshell must refuse the same command.
const CONTROLS: &[(&str, &str)] = &[
    (
        "rsync --server -blogDtpre.iLsfxCIvu --backup-dir=../../outside . dest/",
        "A18 (--backup-dir outside root): the replaced dest/a.txt is moved outside",
    ),
    (
        "rsync --server -logDtpre.iLsfxCIvu . dest/esc-dir/",
        "A17 (planted symlink): a push into dest/esc-dir -> outside",
    ),
    (
        "rsync --server --sender -logDtpre.iLsfxCIvu . esc/secret",
        "A17 (planted symlink): a pull of esc/secret",
    ),
    (
        "rsync --server -logDtpre.iLsfxCIvu --link-dest=../../outside . dest/",
        "A18 (basis dir outside root): rsync compares with the outside files",
    ),
];

/// Names and contents beneath `top`.
fn contents(top: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(top).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            for (k, v) in contents(&p) {
                out.insert(k, v);
            }
            out.insert(p, b"<dir>".to_vec());
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
        }
    }
    out
}

#[test]
fn the_harness_flags_plain_rsync_escaping_the_root() {
    if !usable() {
        return;
    }
    for (command, what) in CONTROLS {
        let case = Case {
            label: (*what).to_string(),
            command: (*command).to_string(),
            words: None,
            keys: "",
        };
        {
            // Plain rsync: the attack works, and the replay reports the outside paths.
            let site = Site::for_user("paths-control", "nobody", "");
            plant(&site);
            let before = contents(&site.outside);
            let args = client_args(&case, &site);
            let plain = command.replacen("rsync ", &format!("{} ", server_rsync()), 1);
            let (a, out) = transfer(&site, &plain, None, &args, true);
            assert!(
                a.exec_argv.is_some(),
                "{what}: plain rsync did not run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let outside = site.outside.display().to_string();
            let flagged: Vec<&String> = a
                .violations
                .iter()
                .filter(|v| v.contains(&outside))
                .collect();
            assert!(
                !flagged.is_empty(),
                "{what}: the replay of plain rsync reported nothing outside root; all it \
                 reported: {:?}",
                a.violations
            );
            let changed = contents(&site.outside) != before;
            println!(
                "control {what}: plain rsync exit {:?}, {} outside paths flagged{}, e.g. {}",
                out.status.code(),
                flagged.len(),
                if changed {
                    ", outside changed on disk"
                } else {
                    ""
                },
                flagged[0]
            );
        }
        for setting in SETTINGS {
            // rshell: refused by --test and by the real run, nothing touched.
            let site = Site::for_user(
                "paths-control",
                "nobody",
                &format!("{}{}", setting.1, rsync_key()),
            );
            plant(&site);
            let before = contents(&site.outside);
            let reason = match test_report(&site, &case) {
                Ok(Err(reason)) => reason,
                other => panic!(
                    "{what}: rshell --test did not refuse it: {:?}",
                    other.map(|r| r.map(|r| r.argv))
                ),
            };
            let args = client_args(&case, &site);
            let (a, out) = transfer(&site, command, None, &args, false);
            assert!(
                a.exec_argv.is_none() && a.violations.is_empty(),
                "{what}: through rshell: {:?} {:?}",
                a.exec_argv,
                a.violations
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("rshell: denied:"),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(contents(&site.outside), before, "{what}");
            println!("control {what}: rshell refused it ({reason})");
        }
    }
}
