//! Real rsync on both sides (issue 4): the client runs `rsync -e WRAPPER`, where WRAPPER
//! plays ssh + sshd — it joins the words with spaces and runs the built rshell as a login
//! shell (`rshell -c STRING`) in a private mount namespace with the test config over
//! /etc/rshell.toml. The server side is the real /usr/bin/rsync, exec'd by rshell under
//! Landlock. Legit transfers must work; planted symlinks, basis/backup dirs and file lists
//! pointing outside must be refused or contained. Needs root; skips visibly otherwise.
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::TempDir;

static SERIAL: Mutex<()> = Mutex::new(());

struct Site {
    dir: TempDir,
    root: PathBuf,
    outside: PathBuf,
    client: PathBuf,
    wrapper: PathBuf,
    placeholder: bool,
}

fn usable() -> bool {
    if rshell::sys::current_uid() != 0 {
        println!("skipped: real-rsync tests need root (CI runs as root)");
        return false;
    }
    if !Path::new("/usr/bin/rsync").exists() {
        println!("skipped: /usr/bin/rsync is not installed");
        return false;
    }
    true
}

impl Site {
    fn new(extra: &str) -> Site {
        let dir = TempDir::new("real");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        let client = dir.path().join("client");
        for d in [&root, &outside, &client] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(outside.join("secret"), "TOP-SECRET").unwrap();
        let confine = if rshell::confine::probe().is_ok() {
            "require"
        } else {
            "off"
        };
        let config = dir.path().join("rshell.toml");
        std::fs::write(
            &config,
            format!(
                "version = 1\n[users.root]\nroot = \"{}\"\nconfine = \"{confine}\"\n{extra}",
                root.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wrapper = dir.path().join("fake-ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nshift\nexec /usr/bin/unshare -m --propagation private /bin/sh -c '/bin/mount --bind {} /etc/rshell.toml && exec env -i SSH_CONNECTION=\"127.0.0.1 1 127.0.0.1 22\" {bin} -c \"$1\"' sh \"$*\"\n",
                config.display(),
                bin = common::binary()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let placeholder = std::fs::symlink_metadata("/etc/rshell.toml").is_err();
        if placeholder {
            std::fs::write("/etc/rshell.toml", "").unwrap();
        }
        Site {
            dir,
            root,
            outside,
            client,
            wrapper,
            placeholder,
        }
    }

    /// Run the rsync client with our fake ssh; `args` are rsync's own arguments.
    fn rsync(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/rsync")
            .arg("-e")
            .arg(&self.wrapper)
            .args(args)
            .current_dir(&self.client)
            .output()
            .unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if self.placeholder {
            let _ = std::fs::remove_file("/etc/rshell.toml");
        }
        let _ = self.dir.path();
    }
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Site {
    fn ok(&self, args: &[&str]) {
        let o = self.rsync(args);
        assert!(o.status.success(), "rsync {args:?}: {}", show(&o));
    }

    fn refused(&self, args: &[&str]) {
        let o = self.rsync(args);
        let text = show(&o);
        assert!(!o.status.success(), "rsync {args:?} should fail: {text}");
        assert!(!text.contains("TOP-SECRET"), "{text}");
    }
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
    let site = Site::new("");
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

    // -A and -X where the file system has ACLs and user xattrs.
    let probe = site.client.join("src/a.txt");
    let xattr = Command::new("setfattr")
        .args(["-n", "user.rshell", "-v", "yes"])
        .arg(&probe)
        .status()
        .is_ok_and(|s| s.success());
    let acl = Command::new("setfacl")
        .args(["-m", "u:nobody:r"])
        .arg(&probe)
        .status()
        .is_ok_and(|s| s.success());
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
    } else {
        println!("skipped part: -A/-X (setfattr/setfacl unavailable or unsupported here)");
    }
}

#[test]
fn planted_symlinks_and_outside_paths_are_refused_or_contained() {
    if !usable() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::new("");
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
    site.refused(&["-a", "x:up/esc/secret", "got/"]);
    // -L style following: refused by the option model.
    site.refused(&["-aL", "x:up/", "got/"]);
    site.refused(&["-a", "--copy-unsafe-links", "x:up/", "got/"]);
    // Naming a planted file symlink that points outside is refused too (like rrsync's
    // realpath check); pulling its directory sends the link itself, never the target.
    site.refused(&["-a", "x:up/esc-file", "got-link"]);
    site.ok(&["-a", "x:up/", "got-dir/"]);
    assert!(
        std::fs::symlink_metadata(site.client.join("got-dir/esc-file"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A push into the symlinked directory: refused; outside unchanged.
    site.refused(&["-a", "src/a.txt", "x:up/esc/"]);
    assert!(!site.outside.join("a.txt").exists());
    // Basis and backup directories through the planted link: refused.
    site.refused(&["-a", "--link-dest=../up/esc", "src/", "x:snap/"]);
    site.refused(&["-a", "-b", "--backup-dir=../up/esc", "src/", "x:up2/"]);
    assert_eq!(std::fs::read_dir(&site.outside).unwrap().count(), 1);
    // A server-side file list outside root: refused.
    let list = site.outside.join("list");
    std::fs::write(&list, "secret\n").unwrap();
    let rel = format!("--files-from=:../../../../../../..{}", list.display());
    site.refused(&["-a", &rel, "x:up/", "got2/"]);
    // A per-directory merge file naming an outside path: rsync cannot read it (Landlock
    // and --confine-root), so the rules in it (exclude everything) never take effect.
    std::fs::write(site.outside.join("rules"), "- *\n").unwrap();
    let filter = format!("dir-merge {}", site.outside.join("rules").display());
    let out = site.rsync(&["-a", "--filter", &filter, "x:up/", "got3/"]);
    let got_files = site.client.join("got3/a.txt").exists();
    assert!(
        !out.status.success() || got_files,
        "the outside rule file was read: {}",
        show(&out)
    );
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
    let site = Site::new("");
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
                let target: &Path = if flips % 2 == 0 {
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
    let mut outcomes = (0, 0);
    for i in 0..20 {
        let dest = format!("got{i}");
        let out = site.rsync(&["-a", "x:d/secret", &dest]);
        let text = show(&out);
        assert!(!text.contains("TOP-SECRET"), "{text}");
        match std::fs::read_to_string(site.client.join(&dest)) {
            Ok(bytes) => {
                assert_eq!(bytes, "inside", "pull {i} leaked outside data");
                outcomes.0 += 1;
            }
            Err(_) => outcomes.1 += 1,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    println!(
        "race: {flips} flips, {} pulls got the inside file, {} were refused or failed",
        outcomes.0, outcomes.1
    );
}
