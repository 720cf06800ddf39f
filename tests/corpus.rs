//! Every command string of the shared corpus (253 captured from rsync 3.5.0 clients)
//! with its expected verdict under the reference policy (`common::REFERENCE`:
//! read-write root, deletions allowed, no daemon). The table is `tests/corpus-verdicts.tsv`;
//! each line: `allow` or `deny: <reason fragment>`, TAB, the exact command string. A few
//! hand-written lines follow: a Latin-1 client's names, spelled `\xNN` for the raw byte.
mod common;

use common::{World, REFERENCE};
use rshell::Failure;

/// A column as bytes: `\xNN` is the byte 0xNN, everything else as written.
fn bytes(spelled: &str) -> Vec<u8> {
    let s = spelled.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            s[i],
            s.get(i + 1),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'\\', Some(b'x'), Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The secluded words of a stdin column (`rsync\0.\0dest/\0\0`) as bytes (`\xNN` decoded),
/// read by the same function as `rshell --test --secluded`.
fn secluded_words(spelled: &str) -> Vec<Vec<u8>> {
    rshell::admin::report::secluded_words(&bytes(spelled)).expect("words start with rsync")
}

#[test]
fn every_corpus_string_gets_its_labelled_verdict() {
    let world = World::with_corpus_fixtures("corpus");
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
        let words = stdin.map(secluded_words);
        let got = world.decide_bytes(&policy, &bytes(command), words.as_deref());
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
