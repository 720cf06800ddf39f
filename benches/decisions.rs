//! Decision throughput and config cost (issue 7), plain harness:
//! `cargo bench --bench decisions`.
//!
//! Runs the real decision code the corpus table runs (`Config::parse` of the reference
//! policy, then `rshell::decide_command` with a throw-away root) over every labelled
//! corpus string, and prints medians of several timed runs after a warm-up. Timings are
//! reported, never asserted: they depend on the machine.
//!
//! Environment: `BENCH_RUNS` (timed runs per row, default 9).
#![deny(unsafe_code)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use rshell::policy::{Config, Policy};
use rshell::system::Account;
use rshell::{decide_command, Failure, Form, Input};

use fixtures::{World, REFERENCE};

mod common;
/// The tests' fixtures: the same world and reference policy the corpus test decides with.
#[path = "../tests/common/mod.rs"]
#[allow(unsafe_code)]
mod fixtures;

/// The labelled corpus of tests/corpus.rs (label, command).
const TABLE: &str = include_str!("../tests/corpus-verdicts.tsv");

/// The command-line rows of the corpus table: rows with secluded words on standard input
/// (a third column) and hand-written raw-byte rows (`\xNN`) are tests/corpus.rs's alone.
fn corpus() -> Vec<(bool, String)> {
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty() && !l.contains("\\x"))
        .filter_map(|l| match l.split('\t').collect::<Vec<_>>()[..] {
            [label, command] => Some((label == "allow", command.to_string())),
            _ => None,
        })
        .collect()
}

/// Warm up once, then time `runs` calls of `f`; the median duration of one call.
fn median_of(runs: usize, f: impl FnMut()) -> Duration {
    common::time(runs, f).median
}

/// Decide every command of `set` `passes` times; returns the number of allowed plans.
fn decide_all(
    world: &World,
    policy: &Policy,
    account: &Account,
    set: &[&str],
    passes: usize,
) -> usize {
    let mut allowed = 0;
    for _ in 0..passes {
        for command in set {
            let input = Input {
                form: Form::Login,
                key: None,
                config_path: Path::new("/etc/rshell.toml"),
                account,
                client: None,
                command: command.as_bytes(),
            };
            match black_box(decide_command(&input, policy)) {
                Ok(_) => allowed += 1,
                Err(Failure::Denied(_)) => {}
                Err(other) => panic!(
                    "unexpected outcome for {command:?}: {other:?} (root {})",
                    world.root.display()
                ),
            }
        }
    }
    allowed
}

/// A typical policy: `[defaults]`, `users` user sections and `groups` group sections.
fn config_text(users: usize, groups: usize) -> String {
    let mut t = String::from(
        "version = 1\n\n[defaults]\nrsync = \"/usr/bin/rsync\"\nroot = \"/srv/backup/%u\"\naccess = \"write-only\"\ndelete = false\n",
    );
    for g in 0..groups {
        t += &format!(
            "\n[groups.team{g}]\nroot = \"/srv/backup/team{g}/%u\"\naccess = \"read-write\"\nfrom = [\"10.{}.0.0/16\", \"2001:db8:{g:x}::/48\"]\n",
            g % 250
        );
    }
    for u in 0..users {
        t += &format!(
            "\n[users.host{u}]\nroot = \"/srv/backup/hosts/host{u}\"\naccess = \"write-only\"\ndelete = {}\nmunge_links = true\numask = \"0027\"\n",
            u % 2 == 0
        );
    }
    t
}

fn per_sec(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either.
    let runs = common::runs(9);
    let world = World::with_corpus_fixtures("bench");
    let policy = world.policy(REFERENCE);
    let account = fixtures::account(&world.home);
    let corpus = corpus();
    let all: Vec<&str> = corpus.iter().map(|(_, c)| c.as_str()).collect();
    let allow: Vec<&str> = corpus
        .iter()
        .filter(|(a, _)| *a)
        .map(|(_, c)| c.as_str())
        .collect();
    let deny: Vec<&str> = corpus
        .iter()
        .filter(|(a, _)| !*a)
        .map(|(_, c)| c.as_str())
        .collect();

    // Sanity: the bench runs what the corpus test checks.
    let got_allowed = decide_all(&world, &policy, &account, &all, 1);
    assert_eq!(
        got_allowed,
        allow.len(),
        "the reference policy allows exactly the allow-labelled strings"
    );

    println!(
        "rshell decision benchmark: {} corpus strings ({} allow, {} deny), median of {runs} runs",
        all.len(),
        allow.len(),
        deny.len()
    );
    println!();
    println!("{:<44} {:>12} {:>14}", "what", "per item", "per second");
    let row = |what: &str, per_item: Duration, rate: f64| {
        println!(
            "{what:<44} {:>9.2} µs {rate:>14.0}",
            per_item.as_secs_f64() * 1e6
        );
    };

    const PASSES: usize = 20;
    for (name, set) in [
        ("decide_command, all corpus strings", &all),
        ("decide_command, allowed strings", &allow),
        ("decide_command, denied strings", &deny),
    ] {
        let d = median_of(runs, || {
            black_box(decide_all(&world, &policy, &account, set, PASSES));
        });
        let n = set.len() * PASSES;
        row(name, d / n as u32, per_sec(n, d));
    }

    // The splitter and the rsync option parser alone (no file-system access).
    let rsync = policy.settings.rsync.clone();
    let d = median_of(runs, || {
        for _ in 0..PASSES {
            for command in &all {
                if let Ok(words) = rshell::command::split(command.as_bytes()) {
                    let _ = black_box(rshell::rsync::parse(&words, &rsync));
                }
            }
        }
    });
    let n = all.len() * PASSES;
    row(
        "split + rsync::parse, all corpus strings",
        d / n as u32,
        per_sec(n, d),
    );

    // Config load (ownership checks, read, parse, validate) + policy resolution.
    let dir = world.dir.path().join("etc");
    std::fs::create_dir_all(&dir).expect("config dir");
    println!();
    println!(
        "{:<44} {:>12} {:>14}",
        "config load + policy_for", "time", "file size"
    );
    for (label, users, groups) in [
        ("typical: 80 users + 20 groups + defaults", 80, 20),
        ("large: 10,000 user sections + defaults", 10_000, 0),
    ] {
        let path = dir.join(format!("rshell-{users}.toml"));
        let text = config_text(users, groups);
        std::fs::write(&path, &text).expect("write config");
        let target_user = format!("host{}", users / 2);
        let load_runs = if users > 1000 { runs.min(5) } else { runs * 10 };
        let check = |cfg_path: &Path| -> Duration {
            median_of(load_runs, || {
                match Config::load(cfg_path) {
                    Ok(cfg) => {
                        let p = cfg
                            .policy_for(&target_user, &["team3".into(), "users".into()])
                            .expect("policy");
                        black_box(p);
                    }
                    // Not root-owned (bench run as non-root): time parse alone, say so below.
                    Err(_) => {
                        let cfg = Config::parse(cfg_path, &text).expect("generated config parses");
                        black_box(
                            cfg.policy_for(&target_user, &["team3".into(), "users".into()])
                                .expect("policy"),
                        );
                    }
                }
            })
        };
        let d = check(&path);
        let trusted = Config::load(&path).is_ok();
        println!(
            "{:<44} {:>9.3} ms {:>11} KiB{}",
            label,
            d.as_secs_f64() * 1e3,
            text.len() / 1024,
            if trusted {
                ""
            } else {
                "  (parse only: file not root-owned)"
            }
        );
    }
    println!();
    println!("(targets: typical config load + policy resolution <= 1 ms; nothing asserted)");
}
