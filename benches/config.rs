//! A connection's config work: `Config::load_for` (trust checks, read, parse, validate
//! every section of every file, keep the user's own sections) + `policy_for` (layering),
//! plain harness: `cargo bench --bench config`. For comparison, the full load that
//! `--check` and `--policy` make (`Config::load`: every section kept) + `policy_for`.
//!
//! Policies: a typical one (80 users, 20 groups, `[defaults]`); 10,000 user sections in
//! one file (1.2 MiB); the same 10,000 users spread over 100 drop-ins of 100 users each.
//! Each row is timed in this process (median and minimum of several runs after a
//! warm-up) and in fresh processes (one load each, as a connection does it: nothing is
//! warm, every page is touched for the first time). Timings are reported, never
//! asserted: they depend on the machine and on what else runs on it.
//!
//! The files must be trusted (owned by root, in a root-owned directory that nobody else
//! can write), so as root they go to `/rshell-bench-<pid>` (removed afterwards); not as
//! root, the rows fall back to `Config::parse_files_for` (and `parse_files`) of the same texts and say so.
//!
//! Environment: `BENCH_RUNS` (timed runs per row, default 15).
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rshell::policy::Config;

use common::time;

mod common;

/// Set in a child: load this main config once as a connection does and print the time
/// taken, in ns.
const COLD_VAR: &str = "RSHELL_BENCH_COLD";
/// The user whose policy the child resolves.
const USER_VAR: &str = "RSHELL_BENCH_USER";

/// The groups of the connecting user.
fn groups() -> Vec<String> {
    vec!["team3".into(), "users".into()]
}

fn defaults_text() -> String {
    "version = 1\n\n[defaults]\nrsync = \"/usr/bin/rsync\"\nroot = \"/srv/backup/%u\"\naccess = \"write-only\"\ndelete = false\n".into()
}

fn groups_text(groups: usize) -> String {
    let mut t = String::new();
    for g in 0..groups {
        t += &format!(
            "\n[groups.team{g}]\nroot = \"/srv/backup/team{g}/%u\"\naccess = \"read-write\"\nfrom = [\"10.{}.0.0/16\", \"2001:db8:{g:x}::/48\"]\n",
            g % 250
        );
    }
    t
}

/// User sections `host{from}` .. `host{to - 1}`, as in benches/decisions.rs.
fn users_text(from: usize, to: usize) -> String {
    let mut t = String::new();
    for u in from..to {
        t += &format!(
            "\n[users.host{u}]\nroot = \"/srv/backup/hosts/host{u}\"\naccess = \"write-only\"\ndelete = {}\nmunge_links = true\numask = \"0027\"\n",
            u % 2 == 0
        );
    }
    t
}

/// One policy as files: the main file first, then its drop-ins.
struct Case {
    label: &'static str,
    user: String,
    files: Vec<(String, String)>,
}

fn cases() -> Vec<Case> {
    let mut split = vec![("rshell.toml".to_string(), defaults_text())];
    for f in 0..100 {
        split.push((
            format!("rshell.d/{f:03}-hosts.toml"),
            format!("version = 1\n{}", users_text(f * 100, f * 100 + 100)),
        ));
    }
    vec![
        Case {
            label: "typical: 80 users + 20 groups, one file",
            user: "host40".into(),
            files: vec![(
                "rshell.toml".into(),
                defaults_text() + &groups_text(20) + &users_text(0, 80),
            )],
        },
        Case {
            label: "10,000 users in one file",
            user: "host5000".into(),
            files: vec![(
                "rshell.toml".into(),
                defaults_text() + &users_text(0, 10_000),
            )],
        },
        Case {
            label: "10,000 users in 100 drop-ins",
            user: "host5000".into(),
            files: split,
        },
    ]
}

/// What a connection does (pipeline's `load_policy`).
fn connection(main: &Path, user: &str) {
    let groups = groups();
    let cfg = Config::load_for(main, user, &groups).expect("the bench config loads");
    black_box(cfg.policy_for(user, &groups).expect("policy"));
}

/// What `--check` and `--policy` do: every section kept.
fn full_load(main: &Path, user: &str) {
    let cfg = Config::load(main).expect("the bench config loads");
    black_box(cfg.policy_for(user, &groups()).expect("policy"));
}

/// A root-owned 0755 directory (removed on drop): `/tmp` is world-writable, so trusted
/// files cannot live there.
struct Tree(PathBuf);

impl Tree {
    fn new() -> Option<Tree> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if std::fs::metadata("/").ok()?.uid() != 0
            || std::fs::metadata("/proc/self").ok()?.uid() != 0
        {
            return None;
        }
        let dir = PathBuf::from(format!("/rshell-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).ok()?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).ok()?;
        Some(Tree(dir))
    }

    /// Write a case's files under `<tree>/<n>/`; the main file's path.
    fn write(&self, n: usize, case: &Case) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let base = self.0.join(n.to_string());
        for (name, text) in &case.files {
            let path = base.join(name);
            let dir = path.parent().expect("a parent");
            std::fs::create_dir_all(dir).expect("create bench dir");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod bench dir");
            std::fs::write(&path, text).expect("write bench config");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .expect("chmod bench config");
        }
        base.join(&case.files[0].0)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Load `main` in `runs` fresh processes (this binary, re-run): (median, minimum).
fn cold(main: &Path, user: &str, runs: usize) -> (Duration, Duration) {
    let exe = std::env::current_exe().expect("own path");
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let out = Command::new(&exe)
                .env(COLD_VAR, main)
                .env(USER_VAR, user)
                .output()
                .expect("run a cold load");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ns: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("nanoseconds");
            Duration::from_nanos(ns)
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if let Some(main) = std::env::var_os(COLD_VAR) {
        let user = std::env::var(USER_VAR).unwrap_or_default();
        let start = Instant::now();
        connection(Path::new(&main), &user);
        println!("{}", start.elapsed().as_nanos());
        return;
    }
    let runs = common::runs(15);
    let tree = Tree::new();
    println!(
        "rshell config benchmark: a connection (Config::load_for + policy_for), {runs} runs per row"
    );
    println!(
        "{:<42} {:>9} {:>9} {:>12} {:>12} {:>9} {:>12}",
        "policy", "median", "min", "cold median", "cold min", "size", "full load"
    );
    for (n, case) in cases().iter().enumerate() {
        let size: usize = case.files.iter().map(|f| f.1.len()).sum();
        let (warm, full, cold_times, note) = match &tree {
            Some(tree) => {
                let main = tree.write(n, case);
                let warm = time(runs, || connection(&main, &case.user));
                let full = time(runs, || full_load(&main, &case.user));
                (warm, full, Some(cold(&main, &case.user, runs)), "")
            }
            None => {
                let files: Vec<(PathBuf, &str)> = case
                    .files
                    .iter()
                    .map(|(name, text)| (Path::new("/etc").join(name), text.as_str()))
                    .collect();
                let groups = groups();
                let warm = time(runs, || {
                    let cfg = Config::parse_files_for(&files, &case.user, &groups)
                        .expect("bench config parses");
                    black_box(cfg.policy_for(&case.user, &groups).expect("policy"));
                });
                let full = time(runs, || {
                    let cfg = Config::parse_files(&files).expect("bench config parses");
                    black_box(cfg.policy_for(&case.user, &groups).expect("policy"));
                });
                (
                    warm,
                    full,
                    None,
                    "  (parse only: not root, no trusted files)",
                )
            }
        };
        let (cm, cn) = cold_times.map_or((String::from("-"), String::from("-")), |(m, n)| {
            (format!("{:.2} ms", ms(m)), format!("{:.2} ms", ms(n)))
        });
        println!(
            "{:<42} {:>6.2} ms {:>6.2} ms {:>12} {:>12} {:>5} KiB {:>9.2} ms{note}",
            case.label,
            ms(warm.median),
            ms(warm.min),
            cm,
            cn,
            size / 1024,
            ms(full.median)
        );
    }
    // For scale: toml's own parser alone on the one-file text (what a file rshell's scanner
    // declines costs, before any checking).
    let big = defaults_text() + &users_text(0, 10_000);
    let toml = time(runs, || {
        black_box(toml::de::DeTable::parse(&big).expect("valid TOML"));
    });
    println!(
        "{:<42} {:>6.2} ms {:>6.2} ms",
        "  toml's DeTable::parse of the one file",
        ms(toml.median),
        ms(toml.min)
    );
    println!();
    println!("(full load: median of Config::load + policy_for, what --check and --policy do)");
    println!("(target: a connection's config work under 20 ms for 10,000 users; nothing asserted)");
}
