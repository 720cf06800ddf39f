//! Real rsync on both sides (issue 4): the client runs `rsync -e WRAPPER`, where WRAPPER
//! (the fake ssh of `common::site`) plays ssh + sshd — it joins the words with spaces and
//! runs the built rshell as a login shell (`rshell -c STRING`) in a private mount namespace
//! with the test config over /etc/rshell.toml. The server side is the real /usr/bin/rsync,
//! exec'd by rshell under Landlock. Legit transfers must work; planted symlinks,
//! basis/backup dirs and file lists pointing outside must be refused or contained. Needs
//! root, /usr/bin/rsync, overlayfs and a kernel that enforces Landlock (see
//! `common::needs`).
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::site::{self, Site};

static SERIAL: Mutex<()> = Mutex::new(());

fn usable() -> bool {
    site::usable() && common::needs("a kernel that enforces Landlock", common::landlock())
}

/// A site (see `common::site`) whose outside holds `secret`, with Landlock required.
fn new_site(extra: &str) -> Site {
    let site = Site::new("real", &format!("confine = \"require\"\n{extra}"));
    std::fs::write(site.outside.join("secret"), "TOP-SECRET").unwrap();
    site
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What the tests ask of a site.
trait Transfers {
    fn run(&self, args: &[&str]) -> Output;
    fn ok(&self, args: &[&str]);
    fn refused(&self, args: &[&str], reason: &str);
    fn client_has(&self, rel: &str) -> bool;
}

impl Transfers for Site {
    /// The rsync client with the fake ssh's defaults (login shell, rshell as root).
    fn run(&self, args: &[&str]) -> Output {
        self.rsync(&[], args)
    }

    fn ok(&self, args: &[&str]) {
        let o = self.run(args);
        assert!(o.status.success(), "rsync {args:?}: {}", show(&o));
    }

    /// rshell refuses the request before rsync starts, saying `reason`.
    fn refused(&self, args: &[&str], reason: &str) {
        let o = self.run(args);
        let text = show(&o);
        assert_denied(&o, reason);
        assert!(!text.contains("TOP-SECRET"), "{text}");
    }

    fn client_has(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.client.join(rel)).is_ok()
    }
}

/// The client saw rshell refuse with `reason`. rshell exits 77 before the protocol starts; the
/// client rsync then reports the closed connection and exits with 12 (protocol stream error),
/// or with the remote shell's 77 when it has already reaped it (rsync's exit_cleanup polls
/// its child with WNOHANG), so either code means this refusal.
fn assert_denied(o: &Output, reason: &str) {
    let text = show(o);
    assert!(
        matches!(o.status.code(), Some(77) | Some(12)),
        "exit 77 or 12 expected: {text}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("rshell: denied: {reason}")),
        "`rshell: denied: {reason}` expected: {text}"
    );
    assert!(
        stderr.contains("rsync: connection unexpectedly closed (0 bytes received so far)"),
        "{text}"
    );
}

fn tree_of_files(base: &Path) {
    std::fs::create_dir_all(base.join("src/sub")).unwrap();
    std::fs::write(base.join("src/a.txt"), "alpha").unwrap();
    std::fs::write(base.join("src/sub/b.txt"), "beta").unwrap();
    std::fs::hard_link(base.join("src/a.txt"), base.join("src/a-link.txt")).unwrap();
    std::os::unix::fs::symlink("a.txt", base.join("src/rel-link")).unwrap();
}

#[test]
fn legit_transfers_work_through_the_real_rsync() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let site = new_site("");
    tree_of_files(&site.client);

    // push -aH, then pull back: same bytes, hard links and symlinks kept.
    std::fs::create_dir(site.root.join("snap")).unwrap();
    site.ok(&["-aH", "src/", "x:snap/prev/"]);
    let prev = site.root.join("snap/prev");
    assert_eq!(
        std::fs::read_to_string(prev.join("sub/b.txt")).unwrap(),
        "beta"
    );
    assert_eq!(
        std::fs::metadata(prev.join("a.txt")).unwrap().ino(),
        std::fs::metadata(prev.join("a-link.txt")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(prev.join("rel-link")).unwrap(),
        PathBuf::from("a.txt")
    );
    site.ok(&["-aH", "x:snap/prev/", "back/"]);
    assert_eq!(
        std::fs::read_to_string(site.client.join("back/sub/b.txt")).unwrap(),
        "beta"
    );

    // --link-dest ../prev into a new snapshot: unchanged files are hard links.
    site.ok(&["-a", "--link-dest=../prev", "src/", "x:snap/new/"]);
    assert_eq!(
        std::fs::metadata(site.root.join("snap/new/a.txt"))
            .unwrap()
            .ino(),
        std::fs::metadata(prev.join("a.txt")).unwrap().ino()
    );

    // --backup-dir and --partial-dir relative values, --temp-dir anchored at root (rsync
    // itself refuses a temp-dir with `..`), --delete, --mkpath.
    std::fs::create_dir_all(site.root.join("work/tmp")).unwrap();
    site.ok(&["-a", "src/", "x:work/dest/"]);
    std::fs::write(site.client.join("src/a.txt"), "alpha2").unwrap();
    std::fs::remove_file(site.client.join("src/sub/b.txt")).unwrap();
    site.ok(&[
        "-a",
        "--delete",
        "--backup",
        "--backup-dir=../bak",
        "--partial-dir=.partial",
        "--temp-dir=/work/tmp",
        "src/",
        "x:work/dest/",
    ]);
    assert_eq!(
        std::fs::read_to_string(site.root.join("work/dest/a.txt")).unwrap(),
        "alpha2"
    );
    assert_eq!(
        std::fs::read_to_string(site.root.join("work/bak/a.txt")).unwrap(),
        "alpha"
    );
    assert!(!site.root.join("work/dest/sub/b.txt").exists());
    site.ok(&["-a", "--mkpath", "src/a.txt", "x:deep/er/path/"]);
    assert!(site.root.join("deep/er/path/a.txt").exists());

    // -A and -X: the temp file system must take an ACL and a user xattr.
    let probe = site.client.join("src/a.txt");
    let tool = |program: &str, args: &[&str]| -> Result<(), String> {
        match Command::new(program).args(args).arg(&probe).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`{program}` failed on {}: {}",
                probe.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("`{program}` cannot run: {e}")),
        }
    };
    let xattr = common::needs(
        "user xattrs (setfattr) on the temp file system, for -X",
        tool("setfattr", &["-n", "user.rshell", "-v", "yes"]),
    );
    let acl = common::needs(
        "POSIX ACLs (setfacl) on the temp file system, for -A",
        tool("setfacl", &["-m", "u:nobody:r"]),
    );
    if xattr && acl {
        site.ok(&["-aAX", "src/", "x:ax/"]);
        let out = Command::new("getfattr")
            .args(["-n", "user.rshell", "--only-values"])
            .arg(site.root.join("ax/a.txt"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "yes");
        let out = Command::new("getfacl")
            .arg("-c")
            .arg(site.root.join("ax/a.txt"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("user:nobody:r"));
    }
}

#[test]
fn planted_symlinks_and_outside_paths_are_refused_or_contained() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let site = new_site("");
    tree_of_files(&site.client);
    // An earlier push plants symlinks pointing outside (rsync -l keeps them as links).
    std::os::unix::fs::symlink(&site.outside, site.client.join("src/esc")).unwrap();
    std::os::unix::fs::symlink(
        site.outside.join("secret"),
        site.client.join("src/esc-file"),
    )
    .unwrap();
    site.ok(&["-a", "src/", "x:up/"]);
    assert!(std::fs::symlink_metadata(site.root.join("up/esc"))
        .unwrap()
        .file_type()
        .is_symlink());

    // A pull through the planted directory symlink: refused.
    site.refused(
        &["-a", "x:up/esc/secret", "got/"],
        r#""up/esc/secret" leads outside root"#,
    );
    // -L style following: refused by the option model.
    site.refused(
        &["-aL", "x:up/", "got/"],
        "option -L follows symlinks out of the confined directory",
    );
    site.refused(
        &["-a", "--copy-unsafe-links", "x:up/", "got/"],
        "option --copy-unsafe-links follows symlinks out of the confined directory",
    );
    // Naming a planted file symlink that points outside is refused too (like rrsync's
    // realpath check); pulling its directory sends the link itself, never the target.
    site.refused(
        &["-a", "x:up/esc-file", "got-link"],
        r#""up/esc-file" leads outside root"#,
    );
    assert!(!site.client_has("got") && !site.client_has("got-link"));
    site.ok(&["-a", "x:up/", "got-dir/"]);
    assert!(
        std::fs::symlink_metadata(site.client.join("got-dir/esc-file"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A push into the symlinked directory: refused; outside unchanged.
    site.refused(
        &["-a", "src/a.txt", "x:up/esc/"],
        r#""up/esc/" leads outside root"#,
    );
    assert!(!site.outside.join("a.txt").exists());
    // Basis and backup directories through the planted link: refused.
    site.refused(
        &["-a", "--link-dest=../up/esc", "src/", "x:snap/"],
        r#"--link-dest: "../up/esc" leads outside root"#,
    );
    site.refused(
        &["-a", "-b", "--backup-dir=../up/esc", "src/", "x:up2/"],
        r#"--backup-dir: "../up/esc" leads outside root"#,
    );
    assert!(!site.root.join("snap").exists() && !site.root.join("up2").exists());
    let outside: Vec<_> = std::fs::read_dir(&site.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["secret"]);
    // A server-side file list outside root: refused.
    let list = site.outside.join("list");
    std::fs::write(&list, "secret\n").unwrap();
    let rel_list = format!("../../../../../../..{}", list.display());
    site.refused(
        &["-a", &format!("--files-from=:{rel_list}"), "x:up/", "got2/"],
        &format!(r#"--files-from: "{rel_list}" leads outside root"#),
    );
    assert!(!site.client_has("got2"));
    // A per-directory merge file naming an outside path: rsync cannot open it (Landlock and
    // --confine-root), treats it as absent — as it does any missing per-directory merge
    // file — and the transfer succeeds with the rule in it (exclude everything) not applied.
    // With -R and root's own absolute spelling the source is named by that path (those are
    // the names sent), so rsync scans the merge file's directory as a parent of the
    // transfer, as it would without rshell (a pinned /proc/self/fd source has no parents).
    let up = format!("x:{}/./up/", site.root.display());
    std::fs::write(site.outside.join("rules"), "- *\n").unwrap();
    let filter = format!("dir-merge {}", site.outside.join("rules").display());
    site.ok(&["-aR", "--filter", &filter, &up, "got3/"]);
    assert_eq!(
        std::fs::read_to_string(site.client.join("got3/up/sub/b.txt")).unwrap(),
        "beta"
    );
    assert!(site.client_has("got3/up/a.txt"));
    // Twin: the same rule file inside root is read, and excludes everything.
    std::fs::write(site.root.join("rules"), "- *\n").unwrap();
    let filter = format!("dir-merge {}", site.root.join("rules").display());
    site.ok(&["-aR", "--filter", &filter, &up, "got4/"]);
    assert!(!site.client_has("got4/up/a.txt") && !site.client_has("got4/up/sub"));
}

/// The race of rrsync CVE-2026-53783 as a short bounded loop: a thread flips `d` between
/// a real directory and a symlink to the outside while real pulls of `d/secret` run.
/// Whatever the timing, the outside bytes never arrive.
#[test]
fn flipping_a_directory_and_a_symlink_during_transfers_never_leaks() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let site = new_site("");
    let d = site.root.join("d");
    let real = site.root.join("d.real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("secret"), "inside").unwrap();
    std::os::unix::fs::symlink("d.real", &d).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, d, outside) = (stop.clone(), d.clone(), site.outside.clone());
        std::thread::spawn(move || {
            let mut flips = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && flips < 200_000 {
                let tmp = d.with_extension("tmp");
                let target: &Path = if flips.is_multiple_of(2) {
                    &outside
                } else {
                    Path::new("d.real")
                };
                let _ = std::fs::remove_file(&tmp);
                let _ = std::os::unix::fs::symlink(target, &tmp);
                let _ = std::fs::rename(&tmp, &d);
                flips += 1;
            }
            flips
        })
    };
    // Each pull ends in one of three ways, depending on where the flip is when rshell checks
    // the path and when rsync opens it: the inside file arrives; rshell's check sees the
    // symlink and refuses; or rsync, past the check, is refused the outside file by the
    // kernel (Landlock's EACCES) and reports a partial transfer (23).
    let mut outcomes = [0; 3];
    for i in 0..20 {
        let dest = format!("got{i}");
        let out = site.run(&["-a", "x:d/secret", &dest]);
        let text = show(&out);
        assert!(!text.contains("TOP-SECRET"), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let bytes = std::fs::read_to_string(site.client.join(&dest)).unwrap();
            assert_eq!(bytes, "inside", "pull {i} leaked outside data");
            outcomes[0] += 1;
        } else if stderr.contains("rshell: denied:") {
            assert_denied(&out, r#""d/secret" leads outside root"#);
            outcomes[1] += 1;
        } else {
            assert_eq!(out.status.code(), Some(23), "pull {i}: {text}");
            let denied = format!(
                "send_files failed to open \"{}\": Permission denied (13)",
                site.root.join("d/secret").display()
            );
            assert!(stderr.contains(&denied), "pull {i}: {denied:?} in {text}");
            outcomes[2] += 1;
        }
        if !out.status.success() {
            assert!(!site.client_has(&dest), "pull {i} left {dest}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    println!(
        "race: {flips} flips; of 20 pulls {} got the inside file, {} were refused by rshell, \
         {} by the kernel",
        outcomes[0], outcomes[1], outcomes[2]
    );
}

/// A backup directory inside the destination, with `--delete` (found by tests/paths.rs):
/// rshell pins the backup directory before rsync starts (creating it when missing), so
/// rsync's deletion pass must not remove it as a name the sender lacks (the backups then
/// fail); rshell adds a protect rule for it. Run twice, as a nightly job would: the
/// second run finds the first run's backup directory in the destination and keeps it.
/// At the default settings and with rshell's own checks alone.
#[test]
fn a_backup_dir_inside_the_destination_survives_delete() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for extra in ["", "confine = \"off\"\nconfine_root = false\n"] {
        let site = Site::new("bkdel", extra);
        let dest = site.root.join("dest");
        std::fs::create_dir_all(site.client.join("src")).unwrap();
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("a.txt"), "v0").unwrap();
        std::fs::write(dest.join("gone.txt"), "g").unwrap();
        for (now, before) in [("v1", "v0"), ("v2", "v1")] {
            std::fs::write(site.client.join("src/a.txt"), now).unwrap();
            let o = site.rsync(
                &[],
                &["-rbI", "--backup-dir=old", "--delete", "src/", "x:dest/"],
            );
            assert!(o.status.success(), "{extra:?} {now}: {}", show(&o));
            assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), now);
            assert_eq!(
                std::fs::read_to_string(dest.join("old/a.txt")).unwrap(),
                before,
                "{extra:?} {now}"
            );
            // --delete still deletes (into the backup dir, as -b does).
            assert!(!dest.join("gone.txt").exists(), "{extra:?} {now}");
            assert_eq!(
                std::fs::read_to_string(dest.join("old/gone.txt")).unwrap(),
                "g"
            );
        }
    }
}
