//! Every command string of the shared corpus (253 captured from rsync 3.5.0 clients)
//! with its expected verdict under the reference policy (`common::REFERENCE`:
//! read-write root, deletions allowed, no daemon). The table is `tests/corpus-verdicts.tsv`;
//! each line: `allow` or `deny: <reason fragment>`, TAB, the exact command string.
mod common;

use common::{World, REFERENCE};
use rshell::Failure;

#[test]
fn every_corpus_string_gets_its_labelled_verdict() {
    let world = World::new("corpus");
    // What the captured commands name and rsync needs to exist: temp dirs (rsync refuses a
    // missing one) and server-side file lists.
    for d in ["tmp/stage", "dest/stage", "remote", "srv/data"] {
        std::fs::create_dir_all(world.root.join(d)).unwrap();
    }
    for f in ["remote/list.txt", "srv/list.txt", "srv/list0.txt"] {
        std::fs::write(world.root.join(f), "a.txt\n").unwrap();
    }
    let policy = world.policy(REFERENCE);
    let table = include_str!("corpus-verdicts.tsv");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (label, rest) = line.split_once('\t').expect("label<TAB>command");
        let (command, stdin) = match rest.split_once('\t') {
            Some((c, s)) => (c, Some(s)),
            None => (rest, None),
        };
        let got = match stdin {
            Some(words) => world.decide_secluded(&policy, command, &common::secluded_words(words)),
            None => world.decide(&policy, command),
        };
        let ok = match (label, &got) {
            ("allow", Ok(_)) => true,
            (l, Err(Failure::Denied(reason))) if l.starts_with("deny: ") => {
                reason.contains(&l["deny: ".len()..])
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!("{label}\t{command}\n   got: {got:?}"));
        }
        checked += 1;
    }
    assert!(
        checked >= 253,
        "the table holds every corpus string ({checked})"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
