//! The documentation cannot drift from the program (issue 6): every flag `--help` prints
//! is in rshell(1); every key of the example config is documented as an entry of
//! rshell.toml(5) and mentioned in the README or rshell(1); both pages are `mandoc -Tlint`
//! clean.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Roff as a reader sees the words: `\-` is a hyphen, `\&` is nothing.
fn roff_text(source: &str) -> String {
    source.replace("\\-", "-").replace("\\&", "")
}

/// Whether `word` occurs in `text` with no word character (letter, digit, `-`, `_`)
/// directly before or after it: `-c` does not occur in `--check`.
fn has_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The flag tokens of a help text: words that start with `-` and name something
/// (`[-ro|-wo]` gives `-ro` and `-wo`; `--config=F` gives `--config`).
fn flag_tokens(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || "-_=.".contains(c)))
        .filter(|w| w.starts_with('-'))
        .map(|w| w.split('=').next().unwrap_or(w).trim_end_matches('.'))
        .filter(|w| {
            w.trim_start_matches('-')
                .starts_with(|c: char| c.is_ascii_alphanumeric())
        })
        .map(str::to_string)
        .collect()
}

/// Key names in a TOML file, set or commented out: lines matching `^#?\s*([a-z_]+)\s*=`.
fn config_keys(toml: &str) -> BTreeSet<String> {
    toml.lines()
        .filter_map(|line| {
            let line = line.strip_prefix('#').unwrap_or(line).trim_start();
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let rest = line[name.len()..].trim_start();
            (!name.is_empty() && rest.starts_with('=')).then_some(name)
        })
        .collect()
}

#[test]
fn every_flag_in_help_is_in_the_man_page() {
    let out = Command::new(env!("CARGO_BIN_EXE_rshell"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run rshell --help");
    // Help may go to stderr (stdout is rsync's protocol channel): read both.
    let help = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "rshell --help failed: {:?}\n{help}",
        out.status
    );
    let flags = flag_tokens(&help);
    for expected in ["-c", "--test", "--policy", "--check", "--help"] {
        assert!(
            flags.contains(expected),
            "--help does not list {expected}; got {flags:?} from:\n{help}"
        );
    }
    let man = roff_text(&read("man/rshell.1"));
    let missing: Vec<&String> = flags.iter().filter(|f| !has_word(&man, f)).collect();
    assert!(
        missing.is_empty(),
        "in --help but not in man/rshell.1: {missing:?}"
    );
}

#[test]
fn every_config_key_is_documented() {
    let keys = config_keys(&read("conf/rshell.toml"));
    // The code's own key list (plus `version`): documentation cannot drift from it.
    let known: BTreeSet<String> = rshell::policy::KEYS
        .iter()
        .chain(&["version"])
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        keys, known,
        "conf/rshell.toml must name exactly the keys the config loader knows"
    );

    // In rshell.toml(5) each key is an entry: a `.B key` or `.BR key ...` line.
    let page = read("man/rshell.toml.5");
    let entries: BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix(".BR ").or_else(|| l.strip_prefix(".B ")))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let readme = read("README.md");
    let man1 = roff_text(&read("man/rshell.1"));
    for key in &keys {
        assert!(
            entries.contains(key.as_str()),
            "{key} has no entry in man/rshell.toml.5"
        );
        assert!(
            has_word(&readme, key) || has_word(&man1, key),
            "{key} is in neither README.md nor man/rshell.1"
        );
    }
}

#[test]
fn man_pages_are_mandoc_lint_clean() {
    let pages = [repo("man/rshell.1"), repo("man/rshell.toml.5")];
    let out = match Command::new("mandoc")
        .args(["-Tlint", "-W", "warning"])
        .args(&pages)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            common::needs("mandoc", Err("not installed".into()));
            return;
        }
        Err(e) => panic!("cannot run mandoc: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.is_empty(),
        "mandoc -Tlint:\n{text}"
    );
}

#[test]
fn helpers_see_what_a_reader_sees() {
    assert!(has_word("use \\-c or", "\\-c"));
    assert!(has_word(&roff_text(".B \\-c\n"), "-c"));
    assert!(!has_word("--check", "-c"), "a prefix is not the flag");
    assert!(!has_word("-confine", "-c"));
    let flags = flag_tokens("rshell [-ro|-wo] --key 'FLAGS DIR' --config=F `rsync --server ...`");
    let want: BTreeSet<String> = ["-ro", "-wo", "--key", "--config", "--server"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(flags, want);
    let keys =
        config_keys("version = 1\n# root = \"x\"\n#   lock=true\n# see --check = no\n[users.a]\n");
    let want: BTreeSet<String> = ["version", "root", "lock"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(keys, want);
}

#[test]
fn the_example_config_parses_with_the_real_loader_and_keeps_safe_defaults() {
    let text = read("conf/rshell.toml");
    let cfg = rshell::policy::Config::parse(Path::new("conf/rshell.toml"), &text)
        .expect("conf/rshell.toml parses");
    let p = cfg.policy_for("someone", &[]).unwrap();
    assert_eq!(
        p.settings,
        rshell::policy::Settings::default(),
        "the example's [defaults] are the built-in defaults"
    );
    assert!(
        p.configured,
        "the example gives every user a policy through [defaults]"
    );
}
