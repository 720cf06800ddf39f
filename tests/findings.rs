//! The security reviews' findings, one real-rsync test each (plus a twin that runs the same
//! attack against plain rsync, with no rshell in the way, to show that the attack is real
//! and that the test could fail).
//!
//! Every test runs the real rsync client with `-e <fake ssh>`; the fake ssh (`common::site`;
//! these tests use its knobs `FAKE_SSH`, `GATE`, `REWRITE_FROM`, `PRIVATE_DEV`) runs the
//! built rshell as the account's login shell (`rshell -c CMD`, or the nested form
//! `rshell -c 'rshell FLAGS DIR'` with SSH_ORIGINAL_COMMAND) in a private mount namespace
//! with the test config over /etc/rshell.toml (an overlay over /etc), and rshell execs the
//! real /usr/bin/rsync.
//! Each attack through rshell runs at the default settings (Landlock enforced,
//! `--confine-root`) and again with `confine = "off"`, `confine_root = false`, where only
//! rshell's own checks, pins and lock stand. The twins run `rsync --server` directly from
//! the fake ssh, in the root, given the client's textual paths.
//!
//! The check-then-use windows are made deterministic by a gate in the fake ssh: it holds
//! the client's bytes back until the test opens the gate. The test waits until the server
//! rsync (found in /proc by its working directory) blocks in poll(2) for those bytes: by
//! then rshell has checked the request and exec'd rsync, and rsync has done its start-up,
//! while rsync's server uses no transfer path before it has read the client's protocol
//! version, filter list and file list. (A configured `rsync = "slow-rsync"` shell
//! script cannot do this under Landlock: rshell's ruleset lets the confined process execute
//! only the configured program and the library directories, so `/bin/sh` and `sleep` are
//! refused with EACCES.)
//!
//! | finding | test |
//! |---|---|
//! | 1a. a second session swaps the checked destination during the window | [`f1a_a_second_session_waits_for_the_lock_instead_of_swapping_the_destination`] |
//! | 1b. the destination / pull source is swapped for a symlink after the check | [`f1b_a_destination_or_source_swapped_after_the_check_is_not_followed`] |
//! | 2. `delete`/`overwrite = false` bypassed by `--partial-dir`, `--delay-updates` | [`f2_partial_dir_and_delay_updates_are_refused_without_delete_or_overwrite`] |
//! | 3. write-only accounts read through block checksums and dry-run deletions | [`f3_a_write_only_account_reveals_no_content_and_no_names`] |
//! | 4. daemon over ssh ignores access/delete/overwrite | not here (handled separately) |
//! | 5. popt's `!#:+` in option values | [`f5_popt_next_word_syntax_is_refused_in_option_values`] |
//! | 6. `--backup-dir=a/..` through a symlink `a` the same push plants | [`f6_a_backup_dir_through_a_symlink_the_same_push_plants_stays_inside`] |
//! | 7. basis dir taken from a misjudged base (`. dir/SIBLING.txt`, `--copy-dest=../..`) | [`f7_a_basis_dir_from_a_misjudged_destination_base_is_refused`] |
//! | 8. `--files-from=-` on a pull through a planted directory symlink | [`f8_files_from_on_a_pull_does_not_read_through_a_planted_symlink`] |
//! | 9. nested key `%u` dir: planted symlink, swap during the window | [`f9_a_nested_key_directory_is_opened_beneath_the_configured_root`] |
//! | 10a. a stopped client holds the lock | [`f10a_a_stalled_client_loses_the_lock_after_the_idle_timeout`] |
//! | 10b. an orphaned receiver holds the lock | [`f10b_killing_the_server_rsync_frees_the_lock`] |
//! | 10c. nested-key and login-shell sessions of one account | [`f10c_nested_and_login_sessions_of_one_account_exclude_each_other`] |
//! | 11. no /dev/log: log records on the client's stderr | [`f11_without_dev_log_the_client_sees_only_rsyncs_own_output`] |
//!
//! Needs root, `unshare -m`, overlayfs, /usr/bin/rsync, flock(1), mkfifo(1) and a kernel
//! that enforces Landlock (see `common::needs`).
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::site::{self, kill, procs_under, Proc, Site};

/// The tests measure waits and scan /proc: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn usable() -> bool {
    site::usable()
        && common::needs("flock(1)", common::program("/usr/bin/flock"))
        && common::needs("mkfifo(1)", common::program("/usr/bin/mkfifo"))
        && common::needs("a kernel that enforces Landlock", common::landlock())
}

/// The two settings every attack through rshell runs under.
const SETTINGS: [(&str, &str); 2] = [
    ("default settings", ""),
    (
        "confine = off, confine_root = false",
        "confine = \"off\"\nconfine_root = false\n",
    ),
];

const RSYNC: &str = "/usr/bin/rsync";

/// Findings' additions to the shared site (`common::site`).
trait Findings {
    fn spawn(&self, env: &[(&str, &str)], args: &[&str]) -> Session;
    fn gate(&self) -> Gate;
    fn plain(&self) -> Vec<(&'static str, String)>;
    fn outside_names(&self) -> Vec<String>;
    fn mode(&self, path: &Path) -> u32;
    fn assert_outside_untouched(&self, what: &str);
}

/// A root, an outside directory (mode 0755, holding `secret.txt`), a client directory,
/// the fake ssh and a config `[users.root]` with `root = <root>` and `extra`.
fn new_site(extra: &str) -> Site {
    let site = Site::new("findings", extra);
    std::fs::write(site.outside.join("secret.txt"), "TOP-SECRET\n").unwrap();
    site
}

static GATES: AtomicUsize = AtomicUsize::new(0);

impl Findings for Site {
    /// Start the rsync client; the session is ended (SIGKILL) if the test drops it.
    fn spawn(&self, env: &[(&str, &str)], args: &[&str]) -> Session {
        Session(Some(self.command(env, args).spawn().unwrap()))
    }

    fn gate(&self) -> Gate {
        let n = GATES.fetch_add(1, Ordering::SeqCst);
        Gate(self.dir.path().join(format!("gate-{n}")))
    }

    /// The plain-rsync twin's environment: `rsync --server` run directly in the root.
    fn plain(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FAKE_SSH", "plain".into()),
            ("PLAIN_CWD", self.root.display().to_string()),
        ]
    }

    fn outside_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(&self, path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    /// The outside directory as every attack through rshell must leave it.
    fn assert_outside_untouched(&self, what: &str) {
        assert_eq!(
            self.outside_names(),
            ["secret.txt"],
            "{what}: outside changed"
        );
        assert_eq!(
            self.mode(&self.outside),
            0o755,
            "{what}: outside's mode changed"
        );
        assert_eq!(
            std::fs::read_to_string(self.outside.join("secret.txt")).unwrap(),
            "TOP-SECRET\n",
            "{what}"
        );
    }
}

/// A running rsync client.
struct Session(Option<Child>);

impl Session {
    fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }
    fn running(&mut self) -> bool {
        self.0.as_mut().unwrap().try_wait().unwrap().is_none()
    }
    fn output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
    fn signal(&self, signal: i32) {
        let rc = kill(self.pid(), signal);
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Holds a session's client bytes back until opened.
struct Gate(PathBuf);

impl Gate {
    fn env(&self) -> (&'static str, &str) {
        ("GATE", self.0.to_str().unwrap())
    }
    fn open(&self) {
        std::fs::write(&self.0, "").unwrap();
    }
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", show(o));
}

/// rshell refused before rsync started, with a reason containing `reason`. rshell exits 77
/// before the protocol starts; the client then reports the closed connection and exits 12,
/// or 77 when it has already reaped the remote shell.
fn assert_denied(o: &Output, reason: &str, what: &str) {
    let text = show(o);
    assert!(
        matches!(o.status.code(), Some(77) | Some(12)),
        "{what}: exit 77 or 12 expected: {text}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("rshell: denied: ") && l.contains(reason)),
        "{what}: `rshell: denied: ...{reason}...` expected: {text}"
    );
    assert!(!text.contains("TOP-SECRET"), "{what}: {text}");
}

/// The server-side rsync processes working beneath `dir`.
fn servers(dir: &Path) -> Vec<Proc> {
    procs_under(dir)
        .into_iter()
        .filter(|p| p.exe == Path::new(RSYNC))
        .collect()
}

/// One per session: the server rsyncs beneath `dir` whose parent is not an rsync (rsync's
/// server forks its receiver once the file list has arrived).
fn mains(dir: &Path) -> Vec<Proc> {
    let all = servers(dir);
    all.iter()
        .filter(|p| !all.iter().any(|q| q.pid == p.ppid))
        .cloned()
        .collect()
}

fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until a server rsync beneath `dir` waits for the client's bytes (blocked in
/// poll(2)/select(2) on the gated connection). rshell has checked the request by then,
/// and rsync has done its start-up: rsync's main() records its working directory by name
/// (`change_dir(NULL)`, getcwd(3)) before it reads from the client.
fn wait_for_server(dir: &Path) -> Vec<Proc> {
    wait_for(
        "the server rsync to wait for the client",
        Duration::from_secs(10),
        || {
            let all = servers(dir);
            all.iter()
                .any(|p| {
                    std::fs::read_to_string(format!("/proc/{}/wchan", p.pid))
                        .is_ok_and(|w| w.contains("poll") || w.contains("select"))
                })
                .then_some(all)
        },
    )
}

/// Replace `dir` by a symlink to `target`, keeping the directory as `<dir>.orig`.
fn swap_for_symlink(dir: &Path, target: &Path) -> PathBuf {
    let orig = dir.with_extension("orig");
    std::fs::rename(dir, &orig).unwrap();
    std::os::unix::fs::symlink(target, dir).unwrap();
    orig
}

fn undo_swap(dir: &Path) {
    std::fs::remove_file(dir).unwrap();
    std::fs::rename(dir.with_extension("orig"), dir).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Finding 1's tree: `root/b/dest2/` (mode 0755) holding `one.txt` ("old"), hard-linked as
/// `root/witness` so that what rsync writes into the real file in place stays visible
/// even after the directory is gone; the client's `src/` (mode 0777) with `one.txt`
/// ("one"), and `swap/dest2`, a symlink to the outside directory.
fn race_tree(site: &Site) -> PathBuf {
    let dest = site.root.join("b/dest2");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dest.join("one.txt"), "old\n").unwrap();
    std::fs::hard_link(dest.join("one.txt"), site.root.join("witness")).unwrap();
    let src = site.client.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("one.txt"), "one\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir_all(site.client.join("swap")).unwrap();
    std::os::unix::fs::symlink(&site.outside, site.client.join("swap/dest2")).unwrap();
    dest
}

/// Finding 1a. A writer's exclusive lock is taken before rshell resolves anything, so a
/// second session that would replace the checked `b/dest2` by a symlink to the outside
/// (`--force` lets rsync's receiver delete a non-empty directory that the sender has as a
/// symlink) has to wait until the first session's rsync is done with it.
#[test]
fn f1a_a_second_session_waits_for_the_lock_instead_of_swapping_the_destination() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let first_args = ["-a", "--inplace", "-I", "src/", "x:b/dest2/"];
    let second_args = ["-rl", "--force", "--delete", "swap/", "x:b/"];
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        let dest = race_tree(&site);
        let held = std::fs::File::open(&dest).unwrap();
        let gate = site.gate();
        let first = site.spawn(&[gate.env()], &first_args);
        wait_for_server(&site.root);
        let mut second = site.spawn(&[], &second_args);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            second.running(),
            "{name}: the second writer did not wait for the first"
        );
        assert_eq!(
            mains(&site.root).len(),
            1,
            "{name}: only the first session's rsync may run"
        );
        assert!(dest.is_dir() && !is_symlink(&dest), "{name}");
        gate.open();
        ok(&first.output(), name);
        ok(&second.output(), name);
        // The first session wrote into the real directory (its file in place, the mode of
        // its `.` entry on the directory), then the second replaced it by the symlink.
        assert_eq!(read(&site.root.join("witness")), "one\n", "{name}");
        assert_eq!(held.metadata().unwrap().mode() & 0o7777, 0o777, "{name}");
        assert!(is_symlink(&dest), "{name}: the second session ran after");
        site.assert_outside_untouched(name);
    }

    // Twin: plain rsync takes no lock; the second session swaps the name during the first
    // session's window, and the first then writes (and chmods) through the symlink.
    let site = new_site("");
    let dest = race_tree(&site);
    let plain = site.plain();
    let gate = site.gate();
    let mut env = env_refs(&plain);
    env.push(gate.env());
    let first = site.spawn(&env, &first_args);
    wait_for_server(&site.root);
    ok(&site.rsync(&env_refs(&plain), &second_args), "twin second");
    assert!(is_symlink(&dest));
    gate.open();
    ok(&first.output(), "twin first");
    assert_eq!(read(&site.outside.join("one.txt")), "one\n");
    assert_eq!(site.mode(&site.outside), 0o777, "twin: outside chmodded");
    assert_eq!(read(&site.root.join("witness")), "old\n");
}

/// Finding 1b. The test itself swaps the checked name for a symlink to the outside
/// between rshell's check and rsync's use. rsync was handed the pinned descriptor
/// (`/proc/self/fd/N`), and the kernel's magic link reaches the directory that was
/// checked, now named `b/dest2.orig`.
#[test]
fn f1b_a_destination_or_source_swapped_after_the_check_is_not_followed() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let pulls: [(&[&str], &str); 2] = [
        (&["-a", "x:b/dest2/", "got/"], "got/secret.txt"),
        (&["-a", "x:b/dest2/secret.txt", "got.txt"], "got.txt"),
    ];
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        let dest = race_tree(&site);
        // Push: `-a` gives the destination directory the source directory's mode 0777.
        let gate = site.gate();
        let push = site.spawn(&[gate.env()], &["-a", "-I", "src/", "x:b/dest2/"]);
        wait_for_server(&site.root);
        let orig = swap_for_symlink(&dest, &site.outside);
        gate.open();
        ok(&push.output(), name);
        assert_eq!(read(&orig.join("one.txt")), "one\n", "{name}");
        assert_eq!(site.mode(&orig), 0o777, "{name}");
        site.assert_outside_untouched(name);
        undo_swap(&dest);

        // Pulls: neither content nor metadata comes from the outside.
        std::fs::write(dest.join("secret.txt"), "inside\n").unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o750)).unwrap();
        for (args, got) in pulls {
            let gate = site.gate();
            let pull = site.spawn(&[gate.env()], args);
            wait_for_server(&site.root);
            swap_for_symlink(&dest, &site.outside);
            gate.open();
            let out = pull.output();
            ok(&out, name);
            assert_eq!(read(&site.client.join(got)), "inside\n", "{name} {args:?}");
            undo_swap(&dest);
        }
        assert_eq!(site.mode(&site.client.join("got")), 0o750, "{name}");
        site.assert_outside_untouched(name);
    }

    // Twin: plain rsync given the textual path follows the swapped name.
    let site = new_site("");
    let dest = race_tree(&site);
    let plain = site.plain();
    let gate = site.gate();
    let mut env = env_refs(&plain);
    env.push(gate.env());
    let push = site.spawn(&env, &["-a", "-I", "src/", "x:b/dest2/"]);
    wait_for_server(&site.root);
    swap_for_symlink(&dest, &site.outside);
    gate.open();
    ok(&push.output(), "twin push");
    assert_eq!(read(&site.outside.join("one.txt")), "one\n");
    assert_eq!(site.mode(&site.outside), 0o777, "twin: outside chmodded");
    undo_swap(&dest);
    std::fs::write(dest.join("secret.txt"), "inside\n").unwrap();
    for (args, got) in pulls {
        let gate = site.gate();
        let mut env = env_refs(&plain);
        env.push(gate.env());
        let pull = site.spawn(&env, args);
        wait_for_server(&site.root);
        swap_for_symlink(&dest, &site.outside);
        gate.open();
        ok(&pull.output(), "twin pull");
        assert_eq!(
            read(&site.client.join(got)),
            "TOP-SECRET\n",
            "twin {args:?}"
        );
        undo_swap(&dest);
    }
}

/// Finding 2. rsync's receiver uses a file it finds in the partial dir as the basis and
/// then unlinks it; with `--delay-updates` it writes into `.~tmp~/NAME` and renames that
/// into place, replacing whatever was there — whatever `--ignore-existing` says about the
/// destination itself. Under `delete = false` or `overwrite = false` both are refused.
#[test]
fn f2_partial_dir_and_delay_updates_are_refused_without_delete_or_overwrite() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let plant = |site: &Site| {
        std::fs::create_dir_all(site.root.join("dir/keep")).unwrap();
        std::fs::write(site.root.join("dir/keep/precious.txt"), "precious\n").unwrap();
        std::fs::write(site.root.join("precious.txt"), "precious\n").unwrap();
        std::fs::create_dir_all(site.root.join("d2/.~tmp~")).unwrap();
        std::fs::write(site.root.join("d2/.~tmp~/x"), "precious\n").unwrap();
        std::fs::write(site.client.join("precious.txt"), "new\n").unwrap();
        std::fs::write(site.client.join("x"), "new\n").unwrap();
    };
    let intact = |site: &Site, what: &str| {
        for f in ["dir/keep/precious.txt", "precious.txt", "d2/.~tmp~/x"] {
            assert_eq!(read(&site.root.join(f)), "precious\n", "{what}: {f}");
        }
        assert!(!site.root.join("dir/precious.txt").exists(), "{what}");
        assert!(!site.root.join("d2/x").exists(), "{what}");
    };
    for (promise, because) in [
        (
            "delete = false\n",
            "rsync removes existing files it finds there, and deletion is not allowed",
        ),
        (
            "overwrite = false\n",
            "rsync replaces existing files through it, and overwriting is not allowed",
        ),
    ] {
        for (name, extra) in SETTINGS {
            let what = format!("{promise} {name}");
            let site = new_site(&format!("{promise}{extra}"));
            plant(&site);
            let out = site.rsync(&[], &["--partial-dir", "keep", "precious.txt", "x:dir/"]);
            assert_denied(&out, &format!("--partial-dir is refused: {because}"), &what);
            let out = site.rsync(&[], &["--partial-dir", "/", "precious.txt", "x:dir/"]);
            assert_denied(&out, &format!("--partial-dir is refused: {because}"), &what);
            let out = site.rsync(&[], &["--delay-updates", "x", "x:d2/"]);
            assert_denied(
                &out,
                &format!("--delay-updates is refused: {because}"),
                &what,
            );
            intact(&site, &what);
        }
    }

    // Twin: plain rsync (with the --ignore-existing rshell would add for overwrite = false)
    // unlinks or replaces every planted file. `--partial-dir /` is root's own spelling here.
    let site = new_site("");
    plant(&site);
    let plain = site.plain();
    let env = env_refs(&plain);
    let root = site.root.display().to_string();
    for args in [
        vec!["--partial-dir", "keep", "precious.txt", "x:dir/"],
        vec!["--partial-dir", &root, "precious.txt", "x:dir/"],
        vec!["--delay-updates", "--ignore-existing", "x", "x:d2/"],
    ] {
        ok(&site.rsync(&env, &args), "twin");
    }
    assert!(!site.root.join("dir/keep/precious.txt").exists());
    assert!(!site.root.join("precious.txt").exists());
    assert!(!site.root.join("d2/.~tmp~/x").exists());
    assert_eq!(read(&site.root.join("d2/x")), "new\n");
}

/// The `Matched data: N bytes` figure of the client's `--stats`.
fn matched_data(o: &Output) -> u64 {
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Matched data: "))
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("no `Matched data` in {}", show(o)))
}

/// Finding 3. With `-I -B1` and delta transfer (`--no-W`, rsync's default for a remote
/// transfer) the receiver sends the client one checksum per byte of the existing file,
/// and the client's `Matched data` tells what it guessed right; a dry run of `--delete`
/// lists the names that exist. A write-only account refuses both or forces whole-file.
#[test]
fn f3_a_write_only_account_reveals_no_content_and_no_names() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let plant = |site: &Site| {
        std::fs::create_dir_all(site.root.join("dest")).unwrap();
        std::fs::write(
            site.root.join("dest/secret.txt"),
            "TOP-SECRET-CONTENT-0123456789\n",
        )
        .unwrap();
        // The attacker's guess: same length, the first 20 bytes right.
        std::fs::write(
            site.client.join("secret.txt"),
            "TOP-SECRET-CONTENT-XXXXXXXXXX\n",
        )
        .unwrap();
        std::fs::create_dir_all(site.client.join("empty")).unwrap();
    };
    let delta = ["-I", "-B1", "--no-W", "--stats", "secret.txt", "x:dest/"];
    let dry_delete = ["-n", "-r", "-v", "--delete", "empty/", "x:dest/"];
    // rsync's client sends no `--no-W` for a remote transfer; a modified client adds it.
    let add_no_w = [("REWRITE_FROM", " -B1 "), ("REWRITE_TO", " -B1 --no-W ")];
    for (name, extra) in SETTINGS {
        let site = new_site(&format!("access = \"write-only\"\n{extra}"));
        plant(&site);
        let out = site.rsync(&[], &delta);
        ok(&out, name);
        assert_eq!(matched_data(&out), 0, "{name}: whole-file forced");
        let out = site.rsync(&add_no_w, &delta);
        assert_denied(
            &out,
            "--no-W is refused: this account is write-only: it would reveal the content of existing files",
            name,
        );
        let out = site.rsync(&[], &dry_delete);
        assert_denied(
            &out,
            "--dry-run is refused: this account is write-only: a dry run would report what exists",
            name,
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "{name}"
        );
        let out = site.rsync(&[], &["-r", "-v", "--delete", "empty/", "x:dest/"]);
        assert_denied(&out, "--delete is refused", name);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "{name}"
        );
    }

    // Twin: plain rsync matches the guessed bytes and lists the existing name.
    let site = new_site("");
    plant(&site);
    let plain = site.plain();
    let out = site.rsync(&env_refs(&plain), &delta);
    ok(&out, "twin");
    assert!(matched_data(&out) >= 20, "twin: {}", show(&out));
    let out = site.rsync(&env_refs(&plain), &dry_delete);
    ok(&out, "twin");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleting secret.txt"),
        "twin: {}",
        show(&out)
    );
}

/// What the modified client of finding 5 sends instead of `--backup-dir bkMARK`, as a
/// sed replacement (sed makes each `\\` one backslash): `--backup-dir=bk\!\#:+ --`, with
/// `!` and `#` escaped as rsync's client escapes shell characters.
const REWRITTEN_BACKUP_DIR: &str = "--backup-dir=bk\\\\!\\\\#:+ --";

/// Finding 5. popt replaces `!#:+` in an option's value with the next word of the command
/// line and removes that word, so rsync would use another value (and other paths) than
/// the ones rshell checked. Every spelling of every valued option is refused.
#[test]
fn f5_popt_next_word_syntax_is_refused_in_option_values() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let options = [
        ("--backup-dir", "backup-dir", "bk"),
        ("--temp-dir", "temp-dir", "tmp"),
        ("--partial-dir", "partial-dir", "part"),
        ("--link-dest", "link-dest", "prev"),
        ("--copy-dest", "copy-dest", "prev"),
        ("--compare-dest", "compare-dest", "prev"),
        ("--suffix", "suffix", "~"),
        ("--timeout", "timeout", "7"),
        ("--max-size", "max-size", "1k"),
    ];
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        std::fs::create_dir_all(site.root.join("dest")).unwrap();
        for (opt, long, value) in options {
            // rsync's client backslash-escapes `!` and `#` in the words it sends (they are
            // shell characters); a client may as well quote them.
            for word in [
                format!("{opt}={value}\\!\\#:+"),
                format!("{opt} {value}\\!\\#:+"),
                format!("{opt}=\\!\\#:+"),
                format!("{opt} '!#:+'"),
                format!("'{opt}={value}!#:+x'"),
            ] {
                let command = format!("rsync --server -blogDtpre.iLsfxCIvu {word} . dest/");
                let out = site.server(&[], &command);
                assert_eq!(
                    out.status.code(),
                    Some(77),
                    "{name}: {command}: {}",
                    show(&out)
                );
                let line = format!(
                    "rshell: denied: the value of --{long} contains `!#:+`, which rsync's option parser replaces with the next word"
                );
                assert!(
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .any(|l| l == line),
                    "{name}: {command}: {}",
                    show(&out)
                );
            }
            // Unquoted, `!` is shell syntax and refused as such.
            let command = format!("rsync --server -blogDtpre.iLsfxCIvu {opt}={value}!#:+ . dest/");
            let out = site.server(&[], &command);
            assert_eq!(
                out.status.code(),
                Some(77),
                "{name}: {command}: {}",
                show(&out)
            );
        }
        // A short option's value too (`-B` is read by popt like any other).
        let out = site.server(&[], "rsync --server -re.iLsfxCIvu -B1\\!\\#:+ . dest/");
        assert_eq!(out.status.code(), Some(77), "{name}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("the value of --block-size contains `!#:+`"),
            "{name}: {}",
            show(&out)
        );
        // And end to end: a modified client sends it; nothing is written.
        std::fs::write(site.root.join("dest/f.txt"), "old\n").unwrap();
        std::fs::write(site.client.join("f.txt"), "new!\n").unwrap();
        let out = site.rsync(
            &[
                ("REWRITE_FROM", "--backup-dir bkMARK"),
                ("REWRITE_TO", REWRITTEN_BACKUP_DIR),
            ],
            &["-b", "--backup-dir", "bkMARK", "f.txt", "x:dest/"],
        );
        assert_denied(&out, "contains `!#:+`", name);
        assert_eq!(read(&site.root.join("dest/f.txt")), "old\n", "{name}");
    }

    // Twin: plain rsync's popt eats the next word: the backup lands in `bk.`, a directory
    // nobody named, instead of the `bk!#:+` on the command line.
    let site = new_site("");
    std::fs::create_dir_all(site.root.join("dest")).unwrap();
    std::fs::write(site.root.join("dest/f.txt"), "old\n").unwrap();
    std::fs::write(site.client.join("f.txt"), "new!\n").unwrap();
    let mut env = site.plain();
    env.push(("REWRITE_FROM", "--backup-dir bkMARK".into()));
    env.push(("REWRITE_TO", REWRITTEN_BACKUP_DIR.into()));
    let out = site.rsync(
        &env_refs(&env),
        &["-b", "--backup-dir", "bkMARK", "f.txt", "x:dest/"],
    );
    ok(&out, "twin");
    assert_eq!(read(&site.root.join("dest/bk./f.txt")), "old\n");
    assert!(!site.root.join("dest/bk!#:+").exists());
}

/// Finding 6. rsync resolves `--backup-dir` by name when it makes each backup, after the
/// generator has created the symlinks of the same transfer. `a/..` with `a` not yet there
/// is refused; with `a` a real directory at check time the resolved directory is pinned,
/// and replacing `a` by a symlink in the same push changes nothing.
#[test]
fn f6_a_backup_dir_through_a_symlink_the_same_push_plants_stays_inside() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let plant = |site: &Site| {
        std::fs::create_dir_all(site.outside.join("sub")).unwrap();
        std::fs::create_dir_all(site.root.join("dest")).unwrap();
        std::fs::write(site.root.join("dest/f.txt"), "old\n").unwrap();
        let tree = site.client.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f.txt"), "newer\n").unwrap();
        std::os::unix::fs::symlink(site.outside.join("sub"), tree.join("a")).unwrap();
    };
    let outside_now = |site: &Site| {
        let mut names = site.outside_names();
        names.retain(|n| n != "sub");
        names
    };
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        plant(&site);
        let out = site.rsync(&[], &["-rlb", "--backup-dir=a/..", "tree/", "x:dest/"]);
        assert_denied(
            &out,
            "--backup-dir: \"a/..\": `..` after a name that does not exist yet",
            name,
        );
        assert_eq!(read(&site.root.join("dest/f.txt")), "old\n", "{name}");
        // `a` exists as a directory when rshell checks; the push replaces it (--force).
        std::fs::create_dir(site.root.join("dest/a")).unwrap();
        let out = site.rsync(
            &[],
            &[
                "-rlb",
                "--force",
                "--backup-dir=a/../bk",
                "tree/",
                "x:dest/",
            ],
        );
        ok(&out, name);
        assert!(is_symlink(&site.root.join("dest/a")), "{name}");
        assert_eq!(read(&site.root.join("dest/bk/f.txt")), "old\n", "{name}");
        assert_eq!(outside_now(&site), ["secret.txt"], "{name}");
        assert!(std::fs::read_dir(site.outside.join("sub"))
            .unwrap()
            .next()
            .is_none());
    }

    // Twin: plain rsync puts the backups outside, through the symlink it just created.
    let site = new_site("");
    plant(&site);
    let plain = site.plain();
    ok(
        &site.rsync(
            &env_refs(&plain),
            &["-rlb", "--backup-dir=a/..", "tree/", "x:dest/"],
        ),
        "twin",
    );
    assert_eq!(read(&site.outside.join("f.txt")), "old\n");
    std::fs::remove_file(site.root.join("dest/a")).unwrap();
    std::fs::create_dir(site.root.join("dest/a")).unwrap();
    std::fs::write(site.root.join("dest/f.txt"), "old2\n").unwrap();
    ok(
        &site.rsync(
            &env_refs(&plain),
            &[
                "-rlb",
                "--force",
                "--backup-dir=a/../bk",
                "tree/",
                "x:dest/",
            ],
        ),
        "twin",
    );
    assert_eq!(read(&site.outside.join("bk/f.txt")), "old2\n");
}

/// Finding 7. rsync takes a basis dir relative to the destination directory, which for
/// a single non-directory file sent to a missing `dir/SIBLING.txt` is `dir` (the name is
/// the file's new name) even with `-r`. `--copy-dest=../..` from there reaches above root,
/// and rsync copies a file there whose size and mtime match the sender's.
#[test]
fn f7_a_basis_dir_from_a_misjudged_destination_base_is_refused() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let plant = |site: &Site| {
        std::fs::create_dir_all(site.root.join("dir")).unwrap();
        let above = site.dir.path().join("SIBLING.txt");
        std::fs::write(&above, "TOP-SECRET\n").unwrap();
        let mine = site.client.join("SIBLING.txt");
        std::fs::write(&mine, "XXXXXXXXXX\n").unwrap();
        let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
        for f in [above, mine] {
            std::fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    };
    let args = [
        "-rt",
        "--copy-dest=../..",
        "SIBLING.txt",
        "x:dir/SIBLING.txt",
    ];
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        plant(&site);
        let out = site.rsync(&[], &args);
        assert_denied(
            &out,
            "--copy-dest: \"../..\": `..` after a name that does not exist yet",
            name,
        );
        assert!(!site.root.join("dir/SIBLING.txt").exists(), "{name}");
        // Deeper still: the same.
        let out = site.rsync(
            &[],
            &[
                "-rt",
                "--copy-dest=../../..",
                "SIBLING.txt",
                "x:dir/SIBLING.txt",
            ],
        );
        assert_denied(&out, "`..` after a name that does not exist yet", name);
    }

    // Twin: plain rsync copies the file from above root.
    let site = new_site("");
    plant(&site);
    let plain = site.plain();
    ok(&site.rsync(&env_refs(&plain), &args), "twin");
    assert_eq!(read(&site.root.join("dir/SIBLING.txt")), "TOP-SECRET\n");
}

/// Finding 8. With `--files-from=-` the names come over the protocol, unseen by rshell;
/// rsync's sender follows a directory symlink in the middle of such a name. Without
/// Landlock and `--confine-root` the request is refused; with them nothing outside is read.
#[test]
fn f8_files_from_on_a_pull_does_not_read_through_a_planted_symlink() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let plant = |site: &Site| {
        std::os::unix::fs::symlink(&site.outside, site.root.join("outlink")).unwrap();
        std::fs::write(site.client.join("list"), "outlink/secret.txt\n").unwrap();
    };
    let args = ["-a", "--files-from=list", "x:./", "got/"];
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        plant(&site);
        let out = site.rsync(&[], &args);
        if extra.is_empty() {
            // Allowed; rsync cannot open the name (--confine-root, Landlock): exit 23.
            assert_eq!(out.status.code(), Some(23), "{name}: {}", show(&out));
            assert!(!show(&out).contains("TOP-SECRET"), "{name}");
        } else {
            assert_denied(
                &out,
                "--files-from on a download needs Landlock or --confine-root",
                name,
            );
        }
        assert!(
            !site.client.join("got/outlink/secret.txt").exists(),
            "{name}"
        );
    }

    // Twin: plain rsync reads the outside file.
    let site = new_site("");
    plant(&site);
    let plain = site.plain();
    ok(&site.rsync(&env_refs(&plain), &args), "twin");
    assert_eq!(
        read(&site.client.join("got/outlink/secret.txt")),
        "TOP-SECRET\n"
    );
}

/// Finding 9. A nested key (`rshell -c 'rshell -ro DIR'`, rshell being the login shell)
/// narrows the configured root; `DIR` is expanded (`%u`) and then opened beneath the
/// configured root's descriptor, so a symlink named after the user that points outside is
/// refused, and the narrowed root must be the directory that was opened even if its name
/// is swapped during the window. Being rsync's working directory (fchdir) is not enough
/// for that: rsync's main() records the working directory by name (`change_dir(NULL)`,
/// getcwd(3)) at start-up and later chdir(2)s to that recorded name plus the path, for a
/// `.` destination and for the sources of a `-R` pull.
#[test]
fn f9_a_nested_key_directory_is_opened_beneath_the_configured_root() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let mut problems = Vec::new();
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        std::fs::write(site.client.join("one.txt"), "one\n").unwrap();
        let user_dir = site.root.join("root");
        let key = |flags: &str| format!("rshell {flags} {}/%u", site.root.display());
        let nested = |flags: &str| {
            vec![
                ("FAKE_SSH", "nested".to_string()),
                ("NESTED_KEY", key(flags)),
            ]
        };
        // A symlink named after the user, planted in the configured root.
        std::os::unix::fs::symlink(&site.outside, &user_dir).unwrap();
        let reason = format!(
            "directory {} leads outside the configured root",
            user_dir.display()
        );
        let env = nested("-ro");
        let out = site.rsync(&env_refs(&env), &["-a", "x:secret.txt", "got.txt"]);
        assert_denied(&out, &reason, name);
        assert!(!site.client.join("got.txt").exists(), "{name}");
        let env = nested("-wo");
        let out = site.rsync(&env_refs(&env), &["-a", "one.txt", "x:./"]);
        assert_denied(&out, &reason, name);
        site.assert_outside_untouched(name);
        std::fs::remove_file(&user_dir).unwrap();

        // A real directory, swapped for the symlink while each session waits at the gate.
        // Every case runs; what went wrong is collected and reported together.
        std::fs::create_dir(&user_dir).unwrap();
        std::fs::write(user_dir.join("secret.txt"), "inside\n").unwrap();
        let orig = user_dir.with_extension("orig");
        let cases: [(&str, &[&str], &str, &str); 3] = [
            (
                "-ro",
                &["-a", "x:secret.txt", "got.txt"],
                "client",
                "got.txt",
            ),
            (
                "-ro",
                &["-aR", "x:secret.txt", "got-r/"],
                "client",
                "got-r/secret.txt",
            ),
            ("-wo", &["-a", "one.txt", "x:./"], "orig", "one.txt"),
        ];
        for (flags, args, side, file) in cases {
            let gate = site.gate();
            let mut env = nested(flags);
            env.push(("GATE", gate.0.display().to_string()));
            let session = site.spawn(&env_refs(&env), args);
            wait_for_server(&site.root);
            swap_for_symlink(&user_dir, &site.outside);
            gate.open();
            let out = session.output();
            let (landed, expected) = if side == "client" {
                (read(&site.client.join(file)), "inside\n")
            } else {
                (read(&orig.join(file)), "one\n")
            };
            let outside = site.outside_names();
            if !out.status.success() || landed != expected || outside != ["secret.txt"] {
                problems.push(format!(
                    "{name}: key `{}`, rsync {args:?}, narrowed root swapped during the window: \
                     {side}/{file} = {landed:?} (expected {expected:?}), outside now holds \
                     {outside:?}; {}",
                    key(flags),
                    show(&out)
                ));
            }
            let _ = std::fs::remove_file(site.outside.join("one.txt"));
            undo_swap(&user_dir);
        }
        site.assert_outside_untouched(name);
    }
    assert!(
        problems.is_empty(),
        "rsync did not stay in the narrowed root that was checked:\n{}",
        problems.join("\n")
    );

    // Twin: plain rsync given the narrowed root by name (from the configured root) follows
    // the swapped name both ways.
    let site = new_site("");
    std::fs::write(site.client.join("one.txt"), "one\n").unwrap();
    let user_dir = site.root.join("root");
    std::fs::create_dir(&user_dir).unwrap();
    std::fs::write(user_dir.join("secret.txt"), "inside\n").unwrap();
    for (args, check) in [
        (["-a", "x:root/secret.txt", "got.txt"], "pull"),
        (["-a", "one.txt", "x:root/"], "push"),
    ] {
        let gate = site.gate();
        let mut env = site.plain();
        env.push(("GATE", gate.0.display().to_string()));
        let session = site.spawn(&env_refs(&env), &args);
        wait_for_server(&site.root);
        swap_for_symlink(&user_dir, &site.outside);
        gate.open();
        ok(&session.output(), check);
        undo_swap(&user_dir);
    }
    assert_eq!(read(&site.client.join("got.txt")), "TOP-SECRET\n");
    assert_eq!(read(&site.outside.join("one.txt")), "one\n");
}

/// A sparse file of `mib` MiB in the client directory (read fast, sent slowly with
/// `--bwlimit`).
fn big_file(site: &Site, mib: u64) {
    let f = std::fs::File::create(site.client.join("big.bin")).unwrap();
    f.set_len(mib << 20).unwrap();
}

/// Start a slow push of `big.bin` into `dest/` and wait until rsync's receiver writes its
/// temporary file there: the transfer is under way and holds the lock.
fn slow_push(site: &Site, env: &[(&str, &str)]) -> Session {
    std::fs::create_dir_all(site.root.join("dest")).unwrap();
    let session = site.spawn(env, &["-a", "--bwlimit=1000", "big.bin", "x:dest/"]);
    wait_for(
        "the receiver's temporary file",
        Duration::from_secs(10),
        || {
            std::fs::read_dir(site.root.join("dest"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".big.bin."))
                .then_some(())
        },
    );
    session
}

/// Whether an exclusive flock(2) on `dir` can be had right now.
fn lock_free(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).unwrap();
    // SAFETY: flock(2) on a descriptor we own; closing `f` releases it again.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc == 0
}

/// A small push into `other/` that needs the root lock; returns how long it took.
fn second_writer(site: &Site) -> Duration {
    std::fs::write(site.client.join("small.txt"), "small\n").unwrap();
    let start = Instant::now();
    let out = site.rsync(&[], &["-a", "small.txt", "x:other/"]);
    ok(&out, "second writer");
    assert_eq!(read(&site.root.join("other/small.txt")), "small\n");
    start.elapsed()
}

/// Finding 10a. A client that stops sending (SIGSTOP) leaves rsync's server blocked in
/// read(2) with the root lock held; rsync's server has no timeout of its own. rshell's
/// idle timeout (`timeout = 3`) ends the whole process group, so the lock is free again.
#[test]
fn f10a_a_stalled_client_loses_the_lock_after_the_idle_timeout() {
    if !usable() {
        return;
    }
    let _serial = serial();
    for (name, extra) in SETTINGS {
        let (site, stalled) = stalled_push(&format!("timeout = 3\n{extra}"));
        let waited = second_writer(&site);
        assert!(
            waited >= Duration::from_secs(2),
            "{name}: the second writer did not wait for the stalled session ({waited:?})"
        );
        assert!(
            waited < Duration::from_secs(8),
            "{name}: the stalled session kept the lock for {waited:?}"
        );
        let left = servers(&site.root);
        assert!(left.is_empty(), "{name}: left running: {left:?}");
        drop(stalled);
    }

    // Twin: the same rsync server holding the same kind of lock (flock(1) on the root,
    // inherited by rsync) with no idle timeout keeps it while the client is stopped.
    let (site, stalled) = stalled_plain_push();
    std::thread::sleep(Duration::from_secs(5));
    assert!(!lock_free(&site.root), "twin: the lock was released");
    assert!(!servers(&site.root).is_empty(), "twin: the server ended");
    drop(stalled);
}

/// A slow push through rshell (policy `extra`) whose client is then stopped: the server
/// side holds the root lock with nothing moving.
fn stalled_push(extra: &str) -> (Site, Session) {
    let site = new_site(extra);
    big_file(&site, 64);
    let stalled = slow_push(&site, &[]);
    stalled.signal(libc::SIGSTOP);
    (site, stalled)
}

/// The twin of [`stalled_push`]: plain rsync under flock(1) on the root (the same kind of
/// lock, inherited by rsync), with no rshell around it.
fn stalled_plain_push() -> (Site, Session) {
    let site = new_site("");
    big_file(&site, 64);
    let mut env = site.plain();
    env.push(("PLAIN_LOCK", site.root.display().to_string()));
    let stalled = slow_push(&site, &env_refs(&env));
    stalled.signal(libc::SIGSTOP);
    (site, stalled)
}

/// The server rsync that rshell (or flock) started: the one whose parent is not rsync.
fn main_server(dir: &Path) -> Proc {
    let all = servers(dir);
    let mains = mains(dir);
    assert_eq!(mains.len(), 1, "one main server rsync expected: {all:?}");
    assert!(
        all.len() >= 2,
        "rsync's receiver (a child) expected: {all:?}"
    );
    mains[0].clone()
}

/// Finding 10b. rsync's server forks its receiver, which inherits the locked root
/// descriptor. When the main rsync is killed, rshell ends the rest of its process group,
/// so no orphaned receiver keeps the lock.
#[test]
fn f10b_killing_the_server_rsync_frees_the_lock() {
    if !usable() {
        return;
    }
    let _serial = serial();
    for (name, extra) in SETTINGS {
        let (site, stalled) = stalled_push(extra);
        let main = main_server(&site.root);
        assert_eq!(kill(main.pid, libc::SIGKILL), 0);
        let waited = second_writer(&site);
        assert!(
            waited < Duration::from_secs(4),
            "{name}: the lock stayed held for {waited:?}"
        );
        let left = servers(&site.root);
        assert!(left.is_empty(), "{name}: left running: {left:?}");
        drop(stalled);
    }

    // Twin: without the process-group cleanup the orphaned receiver keeps the lock.
    let (site, stalled) = stalled_plain_push();
    let main = main_server(&site.root);
    assert_eq!(kill(main.pid, libc::SIGKILL), 0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!lock_free(&site.root), "twin: the lock was released");
    let orphans = servers(&site.root);
    assert!(!orphans.is_empty(), "twin: no orphaned receiver");
    drop(stalled);
}

/// Finding 10c. A nested-key session narrows the root but locks the configured root, as
/// a login-shell session of the same account does, so their writers exclude each other.
#[test]
fn f10c_nested_and_login_sessions_of_one_account_exclude_each_other() {
    if !usable() {
        return;
    }
    let _serial = serial();
    let run = |site: &Site, nested_first: bool| -> (bool, Output, Output) {
        std::fs::write(site.client.join("one.txt"), "one\n").unwrap();
        let nested = vec![
            ("FAKE_SSH", "nested".to_string()),
            ("NESTED_KEY", format!("rshell {}/sub", site.root.display())),
        ];
        let (first_env, second_env, first_args, second_args) = if nested_first {
            (
                nested.clone(),
                vec![],
                ["-a", "one.txt", "x:./"],
                ["-a", "one.txt", "x:other/"],
            )
        } else {
            (
                vec![],
                nested.clone(),
                ["-a", "one.txt", "x:other/"],
                ["-a", "one.txt", "x:./"],
            )
        };
        let gate = site.gate();
        let mut env = first_env;
        env.push(("GATE", gate.0.display().to_string()));
        let first = site.spawn(&env_refs(&env), &first_args);
        wait_for_server(&site.root);
        let mut second = site.spawn(&env_refs(&second_env), &second_args);
        std::thread::sleep(Duration::from_millis(1500));
        let waited = second.running();
        gate.open();
        let first = first.output();
        let second = second.output();
        (waited, first, second)
    };
    for (name, extra) in SETTINGS {
        for nested_first in [true, false] {
            let site = new_site(extra);
            std::fs::create_dir(site.root.join("sub")).unwrap();
            let (waited, first, second) = run(&site, nested_first);
            ok(&first, name);
            ok(&second, name);
            assert!(
                waited,
                "{name}: nested first = {nested_first}: the second writer did not wait"
            );
            assert_eq!(read(&site.root.join("sub/one.txt")), "one\n", "{name}");
            assert_eq!(read(&site.root.join("other/one.txt")), "one\n", "{name}");
        }
    }

    // Twin: with the lock off (`lock = false` is honoured with `munge_links = true`) the
    // second writer does not wait.
    let site = new_site("lock = false\nmunge_links = true\n");
    std::fs::create_dir(site.root.join("sub")).unwrap();
    let (waited, first, second) = run(&site, true);
    ok(&first, "twin");
    ok(&second, "twin");
    assert!(!waited, "twin: the second writer waited without a lock");
}

/// Finding 11. rshell's log records go to syslog, never to the client: rshell's stderr is
/// the ssh session's stderr, which the rsync client prints. With /dev/log missing, an
/// allowed transfer must still show the client nothing but rsync's own output.
#[test]
fn f11_without_dev_log_the_client_sees_only_rsyncs_own_output() {
    if !usable() {
        return;
    }
    let _serial = serial();
    for (name, extra) in SETTINGS {
        let site = new_site(extra);
        std::fs::write(site.client.join("one.txt"), "one\n").unwrap();
        std::fs::create_dir(site.root.join("dest")).unwrap();
        // A private /dev: null, zero and urandom bound in; /dev/log a socket of ours, or
        // missing.
        let dev = site.dir.path().join("dev");
        std::fs::create_dir(&dev).unwrap();
        for d in ["null", "zero", "urandom"] {
            std::fs::write(dev.join(d), "").unwrap();
        }
        let log = std::os::unix::net::UnixDatagram::bind(dev.join("log")).unwrap();
        log.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let env = [("PRIVATE_DEV", dev.to_str().unwrap())];
        let out = site.rsync(&env, &["-a", "one.txt", "x:dest/"]);
        ok(&out, name);
        let mut buf = vec![0u8; 8192];
        let n = log.recv(&mut buf).expect("a log record through /dev/log");
        let record = String::from_utf8_lossy(&buf[..n]);
        assert!(record.contains("allow user=root"), "{name}: {record}");
        assert!(
            out.stderr.is_empty(),
            "{name}: with /dev/log the client sees: {}",
            show(&out)
        );
        drop(log);
        std::fs::remove_file(dev.join("log")).unwrap();
        let out = site.rsync(&env, &["-a", "one.txt", "x:dest/two.txt"]);
        ok(&out, name);
        assert_eq!(read(&site.root.join("dest/two.txt")), "one\n", "{name}");
        assert!(
            out.stderr.is_empty(),
            "{name}: without /dev/log the client sees: {}",
            show(&out)
        );
    }

    // require_log = true: with no sink at all (a private /dev without /dev/log, and the
    // journal's socket directory hidden), nothing runs unrecorded.
    {
        let site = new_site("require_log = true\n");
        std::fs::write(site.client.join("one.txt"), "one\n").unwrap();
        std::fs::create_dir(site.root.join("dest")).unwrap();
        let dev = site.dir.path().join("dev");
        std::fs::create_dir(&dev).unwrap();
        for d in ["null", "zero", "urandom"] {
            std::fs::write(dev.join(d), "").unwrap();
        }
        let env = [("PRIVATE_DEV", dev.to_str().unwrap()), ("NO_JOURNAL", "1")];
        let out = site.rsync(&env, &["-a", "one.txt", "x:dest/"]);
        assert!(
            !out.status.success(),
            "require_log ran unrecorded: {}",
            show(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("require_log"), "{err}");
        assert!(!site.root.join("dest/one.txt").exists());
    }

    // Twin: plain rsync's client shows nothing on stderr for the same transfer.
    let site = new_site("");
    std::fs::write(site.client.join("one.txt"), "one\n").unwrap();
    std::fs::create_dir(site.root.join("dest")).unwrap();
    let plain = site.plain();
    let out = site.rsync(&env_refs(&plain), &["-a", "one.txt", "x:dest/"]);
    ok(&out, "twin");
    assert!(out.stderr.is_empty(), "twin: {}", show(&out));
}
