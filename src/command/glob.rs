//! Bounded expansion of unquoted shell wildcards in a client path, beneath the
//! account's root directory.
//!
//! Rules (a POSIX shell in a UTF-8 locale):
//! - patterns and names are bytes; a byte that is not part of valid UTF-8 (a Latin-1
//!   name's `\xe9`) is a character of its own;
//! - `*` matches any run of characters, `?` exactly one character, `[...]` one
//!   character from a set with ranges, `[!...]` / `[^...]` one not in it; a `]` right
//!   after the opening `[` (or its `!`/`^`) belongs to the set; an unterminated `[` is
//!   an ordinary character; a range needs two UTF-8 characters as its ends;
//! - only wildcard characters the splitter marked active (unquoted) are special;
//! - a name beginning with `.` matches only a pattern that begins with a literal `.`;
//! - a word that matches nothing stays literal; results are sorted per directory and a
//!   trailing `/` is kept;
//! - directories are opened only beneath root (openat2 RESOLVE_BENEATH).
//!
//! The client chooses every byte, so all the work is bounded by one [`Budget`] shared
//! by every word of a request: directory entries listed, matcher steps and wall-clock
//! time, and — checked before any I/O — pattern length and the number of `[` classes.
//! Running out is a refusal that names the budget, never a name found on the server.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::system;

/// The work one request's wildcards may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Directory entries listed, summed over all words of the request.
    pub max_entries: u64,
    /// Matcher steps (one pattern element tried at one name position, one class item
    /// tested, one literal component appended), summed over all words of the request.
    pub max_steps: u64,
    /// Bytes in one wildcard word.
    pub max_pattern_len: usize,
    /// Active `[` in one word.
    pub max_classes: usize,
    /// Names one word may expand to (checked at every directory level).
    pub max_matches: usize,
    /// Wall-clock time for all wildcard work of the request, from [`Budget::new`].
    pub deadline: Duration,
}

impl Limits {
    /// Generous for real use, small enough that a hostile request ends in well under a
    /// second of CPU and a few MB:
    /// - 100 000 entries: a real wildcard lists one or a few directories; this still
    ///   allows one very large directory while refusing the same big directory listed
    ///   again and again (many words, or many symlinks that lead to it);
    /// - 20 million steps (about 0.1–0.2 s of CPU): a short pattern costs a few steps
    ///   per name, so even 100 000 names use a fraction; the worst 1 KB pattern costs
    ///   ~260 000 steps per name and is stopped after ~80 names;
    /// - 1024 bytes and 16 classes: far more than any real path pattern, and they cap
    ///   the per-name worst case above;
    /// - 1000 names per word: what the shell-like expansion allowed before;
    /// - 5 s: a backstop for what the counts do not see (slow disks, many opens).
    pub const DEFAULT: Limits = Limits {
        max_entries: 100_000,
        max_steps: 20_000_000,
        max_pattern_len: 1024,
        max_classes: 16,
        max_matches: 1000,
        deadline: Duration::from_secs(5),
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// How often (in steps or names) the clock is read: cheap, yet prompt.
const CLOCK_EVERY: u64 = 4096;

/// The work left for one request. Create one per request and pass it to every
/// [`expand`] call, so that many words cannot each spend a full budget.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    started: Instant,
    entries: u64,
    steps: u64,
    /// The step count at which `step` next looks at the limit and the clock.
    next_check: u64,
}

fn next_check(steps: u64, limits: &Limits) -> u64 {
    steps
        .saturating_add(CLOCK_EVERY)
        .min(limits.max_steps.saturating_add(1))
}

impl Budget {
    /// A fresh budget; the clock starts now.
    pub fn new(limits: &Limits) -> Budget {
        Budget {
            limits: *limits,
            started: Instant::now(),
            entries: 0,
            steps: 0,
            next_check: next_check(0, limits),
        }
    }

    /// The limits this budget enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn charge_entries(&mut self, n: usize) -> Result<(), GlobError> {
        self.entries = self.entries.saturating_add(n as u64);
        if self.entries > self.limits.max_entries {
            return Err(GlobError::Budget(
                "directory entries",
                format!(
                    "more than {} listed in this request",
                    self.limits.max_entries
                ),
            ));
        }
        self.check_clock()
    }

    /// Charge `n` matcher steps. The common case is one add and one compare; the limit
    /// and the clock are looked at only every few thousand steps (or at the limit).
    #[inline]
    fn step(&mut self, n: u64) -> Result<(), GlobError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps < self.next_check {
            return Ok(());
        }
        self.checkpoint()
    }

    #[cold]
    fn checkpoint(&mut self) -> Result<(), GlobError> {
        if self.steps > self.limits.max_steps {
            return Err(GlobError::Budget(
                "matching steps",
                format!("more than {} in this request", self.limits.max_steps),
            ));
        }
        self.next_check = next_check(self.steps, &self.limits);
        self.check_clock()
    }

    fn check_clock(&self) -> Result<(), GlobError> {
        if self.started.elapsed() >= self.limits.deadline {
            return Err(GlobError::Budget(
                "time",
                format!("more than {:?} in this request", self.limits.deadline),
            ));
        }
        Ok(())
    }
}

/// Why a word could not be expanded. The text never contains a name found on the
/// server or a count of matches, only the client's own limits. (A name that is not
/// UTF-8 is no error: names are bytes and are passed on as they are.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// A budget ran out: which one (e.g. "directory entries"), and its limit as text.
    #[error("wildcard work budget exceeded ({0}: {1})")]
    Budget(&'static str, String),
}

impl GlobError {
    /// Which budget ran out.
    pub fn budget(&self) -> Option<&'static str> {
        match self {
            GlobError::Budget(which, _) => Some(which),
        }
    }
}

/// True if the word has an unquoted wildcard; a word without one is never expanded
/// and costs nothing.
pub fn has_wildcards(active: &[usize]) -> bool {
    !active.is_empty()
}

/// Expand the unquoted wildcards of `rel` (relative to `root`, no leading `/`) as a
/// shell would. `active` holds the byte offsets in `rel` of the unquoted `*`, `?` and
/// `[`; other offsets are ignored. No match: the word stays literal.
pub fn expand(
    root: &OwnedFd,
    rel: &[u8],
    active: &[usize],
    budget: &mut Budget,
) -> Result<Vec<Vec<u8>>, GlobError> {
    if !has_wildcards(active) {
        return Ok(vec![rel.to_vec()]);
    }
    let limits = budget.limits;
    // The pattern limits come first: a refused word costs no I/O.
    if rel.len() > limits.max_pattern_len {
        return Err(GlobError::Budget(
            "pattern length",
            format!("more than {} bytes in one word", limits.max_pattern_len),
        ));
    }
    let mut is_active = vec![false; rel.len()];
    for &i in active {
        if matches!(rel.get(i), Some(b'*' | b'?' | b'[')) {
            is_active[i] = true;
        }
    }
    if !is_active.contains(&true) {
        return Ok(vec![rel.to_vec()]);
    }
    let classes = is_active
        .iter()
        .zip(rel)
        .filter(|&(&a, &b)| a && b == b'[')
        .count();
    if classes > limits.max_classes {
        return Err(GlobError::Budget(
            "bracket classes",
            format!("more than {} `[` in one word", limits.max_classes),
        ));
    }
    budget.check_clock()?;

    let trailing_slash = rel.ends_with(b"/");
    let mut results: Vec<PathBuf> = vec![PathBuf::new()];
    let mut start = 0;
    for comp in rel.split(|&b| b == b'/') {
        let range = start..start + comp.len();
        start = range.end + 1;
        if comp.is_empty() {
            continue;
        }
        let comp_active = &is_active[range];
        if !comp_active.contains(&true) {
            budget.step(results.len() as u64)?;
            results
                .iter_mut()
                .for_each(|r| r.push(OsStr::from_bytes(comp)));
            continue;
        }
        let pattern = compile(comp, comp_active);
        let mut next: Vec<PathBuf> = Vec::new();
        for prefix in &results {
            budget.check_clock()?;
            // Unreadable or missing directories simply match nothing, as in a shell.
            let Ok(dir) = system::open_beneath(root, prefix) else {
                continue;
            };
            let Ok(names) = system::list_dir(&dir) else {
                continue;
            };
            budget.charge_entries(names.len())?;
            let mut hits: Vec<OsString> = Vec::new();
            for (k, name) in names.into_iter().enumerate() {
                if k as u64 % CLOCK_EVERY == CLOCK_EVERY - 1 {
                    budget.check_clock()?;
                }
                if match_name(&pattern, name.as_bytes(), budget)? {
                    if next.len() + hits.len() >= limits.max_matches {
                        return Err(GlobError::Budget(
                            "names per word",
                            format!("a word may expand to at most {}", limits.max_matches),
                        ));
                    }
                    hits.push(name);
                }
            }
            hits.sort();
            next.extend(hits.into_iter().map(|h| prefix.join(h)));
        }
        results = next;
        if results.is_empty() {
            return Ok(vec![rel.to_vec()]);
        }
    }
    Ok(results
        .into_iter()
        .map(|p| {
            let mut name = p.into_os_string().into_vec();
            if trailing_slash {
                name.push(b'/');
            }
            name
        })
        .collect())
}

/// One element of a compiled path component.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A literal byte (inactive wildcards included).
    Byte(u8),
    /// `?`: one character.
    Any,
    /// `*` (consecutive stars are one).
    Star,
    /// `[...]`: one character in (or, negated, not in) the inclusive ranges of [`code`]s.
    Class {
        negate: bool,
        ranges: Vec<(u32, u32)>,
    },
}

/// Compile one path component; `active` flags its bytes.
fn compile(bytes: &[u8], active: &[bool]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if active[i] {
            match bytes[i] {
                b'*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                    i += 1;
                    continue;
                }
                b'?' => {
                    toks.push(Tok::Any);
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((class, len)) = parse_class(&bytes[i..]) {
                        toks.push(class);
                        i += len;
                        continue;
                    }
                }
                _ => {}
            }
        }
        toks.push(Tok::Byte(bytes[i]));
        i += 1;
    }
    toks
}

/// Parse `[...]` at the start of `s`: the class and its length in bytes, or None when
/// the `[` is unterminated (then it is an ordinary character).
fn parse_class(s: &[u8]) -> Option<(Tok, usize)> {
    // (offset, code) of every character; a stray byte is a character of its own.
    let mut chars: Vec<(usize, u32)> = Vec::new();
    let mut at = 0;
    while at < s.len() {
        let (c, len) = next_char(&s[at..]);
        chars.push((at, c));
        at += len;
    }
    let is = |i: usize, c: char| chars.get(i).is_some_and(|&(_, x)| x == c as u32);
    let mut i = 1;
    let negate = is(i, '!') || is(i, '^');
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() && (!is(i, ']') || first) {
        first = false;
        let (lo, hi) = (chars[i].1, chars.get(i + 2).map_or(0, |&(_, c)| c));
        if i + 2 < chars.len() && is(i + 1, '-') && !is(i + 2, ']') && is_char(lo) && is_char(hi) {
            ranges.push((lo, hi));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    let (end, _) = *chars.get(i)?;
    Some((Tok::Class { negate, ranges }, end + 1))
}

/// The code of a stray byte `b` (one that does not start a valid UTF-8 sequence):
/// above every Unicode scalar value, so it equals only the same stray byte.
const STRAY: u32 = 0x11_0000;

/// Whether a [`next_char`] code is a Unicode character (not a stray byte).
fn is_char(code: u32) -> bool {
    code < STRAY
}

/// Length of the UTF-8 sequence that starts with `lead` (1 for a stray byte).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xf7 => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// The character at the start of `name` as a code (its scalar value, or [`STRAY`] plus
/// the byte for a byte that does not start a valid sequence, which is a character of its
/// own), and its length in bytes.
fn next_char(name: &[u8]) -> (u32, usize) {
    // ASCII first: most names are, and this runs once per matcher step.
    if name[0].is_ascii() {
        return (u32::from(name[0]), 1);
    }
    let len = utf8_len(name[0]);
    match name
        .get(..len)
        .map(std::str::from_utf8)
        .and_then(Result::ok)
        .and_then(|s| s.chars().next())
    {
        Some(c) => (c as u32, len),
        None => (STRAY + u32::from(name[0]), 1),
    }
}

/// Shell pattern matching of one name, every step charged to the budget. The classic
/// star-backtracking matcher (only the last `*` is retried), so one name costs at most
/// about (pattern elements + class items) × name length steps.
fn match_name(pattern: &[Tok], name: &[u8], budget: &mut Budget) -> Result<bool, GlobError> {
    if name.first() == Some(&b'.') && pattern.first() != Some(&Tok::Byte(b'.')) {
        return Ok(false);
    }
    let (mut p, mut n) = (0, 0);
    // The last `*` seen and the name position it is retried from.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        budget.step(1)?;
        let consumed = match pattern.get(p) {
            Some(Tok::Star) => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(Tok::Any) => Some(next_char(&name[n..]).1),
            Some(Tok::Class { negate, ranges }) => {
                let (c, len) = next_char(&name[n..]);
                let mut hit = false;
                for (k, &(lo, hi)) in ranges.iter().enumerate() {
                    if lo <= c && c <= hi {
                        hit = true;
                        budget.step(k as u64)?;
                        break;
                    }
                }
                if !hit {
                    budget.step(ranges.len() as u64)?;
                }
                (hit != *negate).then_some(len)
            }
            Some(Tok::Byte(b)) => (*b == name[n]).then_some(1),
            None => None,
        };
        match (consumed, star) {
            (Some(len), _) => {
                p += 1;
                n += len;
            }
            (None, Some((sp, sn))) => {
                // Let the `*` take one more character and retry what follows it.
                let sn = sn + next_char(&name[sn..]).1;
                star = Some((sp, sn));
                p = sp + 1;
                n = sn;
            }
            (None, None) => return Ok(false),
        }
    }
    while pattern.get(p) == Some(&Tok::Star) {
        p += 1;
    }
    Ok(p == pattern.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch {
        path: PathBuf,
        fd: OwnedFd,
    }

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "rshell-glob-{}-{}-{tag}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            let fd = system::open_dir(&path).unwrap();
            Scratch { path, fd }
        }

        fn files(&self, names: &[&str]) {
            for n in names {
                let p = self.path.join(n);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).unwrap();
                }
                std::fs::write(p, b"").unwrap();
            }
        }

        fn many(&self, dir: &str, prefix: &str, count: usize) {
            let d = self.path.join(dir);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..count {
                std::fs::write(d.join(format!("{prefix}{i:05}")), b"").unwrap();
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    /// Active offsets: every `*`, `?`, `[` in the word.
    fn all_active(rel: &str) -> Vec<usize> {
        rel.bytes()
            .enumerate()
            .filter(|(_, b)| matches!(b, b'*' | b'?' | b'['))
            .map(|(i, _)| i)
            .collect()
    }

    /// [`super::expand`] on UTF-8 text, the names back as text (the tables below).
    fn expand(
        root: &OwnedFd,
        rel: &str,
        active: &[usize],
        budget: &mut Budget,
    ) -> Result<Vec<String>, GlobError> {
        super::expand(root, rel.as_bytes(), active, budget).map(|names| {
            names
                .into_iter()
                .map(|n| String::from_utf8(n).unwrap())
                .collect()
        })
    }

    fn glob(s: &Scratch, rel: &str) -> Result<Vec<String>, GlobError> {
        expand(
            &s.fd,
            rel,
            &all_active(rel),
            &mut Budget::new(&Limits::DEFAULT),
        )
    }

    fn glob_with(s: &Scratch, rel: &str, limits: Limits) -> Result<Vec<String>, GlobError> {
        expand(&s.fd, rel, &all_active(rel), &mut Budget::new(&limits))
    }

    /// Match one name, `active` flags per byte of the pattern.
    fn matches_with(pattern: &str, active: &[bool], name: &[u8]) -> bool {
        let mut budget = Budget::new(&Limits::DEFAULT);
        match_name(&compile(pattern.as_bytes(), active), name, &mut budget).unwrap()
    }

    fn m(pattern: &str, name: &str) -> bool {
        let active: Vec<bool> = pattern
            .bytes()
            .map(|b| matches!(b, b'*' | b'?' | b'['))
            .collect();
        matches_with(pattern, &active, name.as_bytes())
    }

    /// Assert a budget error that names `which` and mentions none of `secrets`.
    fn assert_budget(r: Result<Vec<String>, GlobError>, which: &str, secrets: &[&str]) {
        let err = r.expect_err("the budget should run out");
        assert_eq!(err.budget(), Some(which), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(which), "{msg:?} does not name {which:?}");
        assert!(!msg.contains('\n'), "{msg:?} is one line");
        for s in secrets {
            assert!(!msg.contains(s), "{msg:?} leaks {s:?}");
        }
    }

    #[test]
    fn glob_matching_is_shell_like() {
        assert!(m("*.txt", "a.txt"));
        assert!(!m("*.txt", ".hidden.txt"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("*", "x"));
        assert!(!m("a*b", "ac"));
        assert!(
            m("caf?", "caf\u{e9}"),
            "`?` matches one character, not one byte"
        );
        assert!(!m("caf??", "caf\u{e9}"));
        // Escaped wildcards are literal.
        assert!(matches_with("a*", &[false, false], b"a*"));
        assert!(!matches_with("a*", &[false, false], b"ab"));
    }

    #[test]
    fn glob_matching_table() {
        let table: &[(&str, &str, bool)] = &[
            // Stars.
            ("*", "anything", true),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("a**b", "ab", true),
            ("*x*", "abc", false),
            // Question marks.
            ("?", "", false),
            ("?", "ab", false),
            ("??", "ab", true),
            ("?", "\u{e9}", true),
            ("?", "\u{1f600}", true),
            ("??", "\u{1f600}", false),
            ("*?", "\u{e9}", true),
            ("x*??", "x\u{e9}", false),
            // Classes and ranges.
            ("[abc]", "b", true),
            ("[abc]", "d", false),
            ("[a-z]1", "q1", true),
            ("[a-z]1", "Q1", false),
            ("[A-Za-z0-9]", "Z", true),
            ("[z-a]", "m", false),
            ("[!abc]", "d", true),
            ("[!abc]", "a", false),
            ("[^abc]", "d", true),
            ("[^abc]", "c", false),
            ("[]a]", "]", true),
            ("[]a]", "a", true),
            ("[!]a]", "]", false),
            ("[!]a]", "b", true),
            ("[a-]", "-", true),
            ("[-a]", "-", true),
            ("[*?]", "*", true),
            ("[*?]", "x", false),
            ("[\u{e0}-\u{fc}]", "\u{e9}", true),
            ("caf[\u{e9}]", "caf\u{e9}", true),
            ("caf[!e]", "caf\u{e9}", true),
            ("*[0-9]", "v12", true),
            ("*[0-9]", "v1x", false),
            // Unterminated `[` is an ordinary character.
            ("a[", "a[", true),
            ("a[b", "a[b", true),
            ("a[b", "ab", false),
            ("[!", "[!", true),
            ("[]", "[]", true),
            ("x[*", "x[yz", true),
            // Hidden names need a literal leading dot.
            ("*", ".profile", false),
            ("?profile", ".profile", false),
            ("[.]profile", ".profile", false),
            (".*", ".profile", true),
            (".p*", ".profile", true),
            ("*e", ".profile", false),
            ("*.*", "a.b", true),
        ];
        for &(pattern, name, want) in table {
            assert_eq!(m(pattern, name), want, "{pattern:?} vs {name:?}");
        }
        // Inactive (quoted) wildcards are literal.
        assert!(matches_with("?", &[false], b"?"));
        assert!(!matches_with("?", &[false], b"x"));
        assert!(matches_with("[a]", &[false, false, false], b"[a]"));
        assert!(!matches_with("[a]", &[false, false, false], b"a"));
        assert!(matches_with("*[a]", &[true, false, false, false], b"x[a]"));
        // A stray byte is one character, in no class.
        assert!(matches_with("?", &[true], b"\xff"));
        assert!(matches_with("[!a]", &[true, false, false, false], b"\xff"));
        assert!(!matches_with(
            "[a-z]",
            &[true, false, false, false, false],
            b"\xff"
        ));
    }

    #[test]
    fn expands_sorted_per_directory_with_trailing_slash() {
        let s = Scratch::new("sorted");
        s.files(&[
            "b/2.txt",
            "b/1.txt",
            "a/3.txt",
            "a/x.log",
            "c",
            ".hid/4.txt",
        ]);
        assert_eq!(
            glob(&s, "*/*.txt").unwrap(),
            ["a/3.txt", "b/1.txt", "b/2.txt"]
        );
        assert_eq!(glob(&s, "*").unwrap(), ["a", "b", "c"]);
        assert_eq!(glob(&s, "[ab]/").unwrap(), ["a/", "b/"]);
        assert_eq!(glob(&s, "./?/[13]*").unwrap(), ["./a/3.txt", "./b/1.txt"]);
        assert_eq!(glob(&s, ".*/*").unwrap(), [".hid/4.txt"]);
        // A literal component after a wildcard is appended, existing or not (as sh).
        assert_eq!(glob(&s, "[ab]/new").unwrap(), ["a/new", "b/new"]);
        // Only active wildcards count: here `*` is quoted.
        let s2 = Scratch::new("quoted");
        s2.files(&["a*", "ab"]);
        let mut b = Budget::new(&Limits::DEFAULT);
        assert_eq!(expand(&s2.fd, "a*", &[], &mut b).unwrap(), ["a*"]);
        assert_eq!(expand(&s2.fd, "a*", &[1], &mut b).unwrap(), ["a*", "ab"]);
        assert_eq!(expand(&s2.fd, "?*", &[1], &mut b).unwrap(), ["?*"]);
        // An unterminated `[` is literal.
        s2.files(&["x[y"]);
        assert_eq!(expand(&s2.fd, "x[*", &[1, 2], &mut b).unwrap(), ["x[y"]);
    }

    #[test]
    fn no_match_stays_literal() {
        let s = Scratch::new("nomatch");
        s.files(&["a.txt", "d/x"]);
        assert_eq!(glob(&s, "*.pdf").unwrap(), ["*.pdf"]);
        assert_eq!(glob(&s, "missing/*").unwrap(), ["missing/*"]);
        assert_eq!(glob(&s, "a.txt/*").unwrap(), ["a.txt/*"]);
        assert_eq!(glob(&s, "*/y*/").unwrap(), ["*/y*/"]);
        // Resolution stays beneath root: `..` out of it lists nothing.
        assert_eq!(glob(&s, "../*").unwrap(), ["../*"]);
    }

    #[test]
    fn words_without_wildcards_cost_nothing() {
        let s = Scratch::new("literal");
        let spent = Limits {
            deadline: Duration::ZERO,
            max_pattern_len: 1,
            ..Limits::DEFAULT
        };
        let mut b = Budget::new(&spent);
        assert_eq!(
            expand(&s.fd, "some/long/path", &[], &mut b).unwrap(),
            ["some/long/path"]
        );
        assert!(!has_wildcards(&[]));
        assert!(has_wildcards(&[0]));
    }

    /// Latin-1 names (`caf\xe9`, `d\xff`) are matched and passed on as their bytes, by
    /// a pattern in bytes too.
    #[test]
    fn non_utf8_names_match_as_their_bytes() {
        let s = Scratch::new("latin1");
        for name in [&b"caf\xe9.txt"[..], b"d\xff", b"caf\xc3\xa9.txt", b"plain"] {
            std::fs::write(s.path.join(std::ffi::OsStr::from_bytes(name)), b"").unwrap();
        }
        let mut b = Budget::new(&Limits::DEFAULT);
        let bytes = |rel: &[u8], b: &mut Budget| {
            let active: Vec<usize> = (0..rel.len())
                .filter(|&i| matches!(rel[i], b'*' | b'?' | b'['))
                .collect();
            super::expand(&s.fd, rel, &active, b).unwrap()
        };
        assert_eq!(
            bytes(b"caf*", &mut b),
            [&b"caf\xc3\xa9.txt"[..], b"caf\xe9.txt"]
        );
        assert_eq!(bytes(b"caf?.txt", &mut b).len(), 2, "one character each");
        assert_eq!(bytes(b"caf\xe9*", &mut b), [b"caf\xe9.txt"]);
        assert_eq!(bytes(b"caf[\xe9]*", &mut b), [b"caf\xe9.txt"]);
        assert_eq!(bytes(b"*\xff", &mut b), [b"d\xff"]);
        assert_eq!(bytes(b"*\xff/", &mut b), [b"d\xff/"]);
        // No match: the word stays literal, its bytes unchanged.
        assert_eq!(bytes(b"x\xe9*", &mut b), [b"x\xe9*"]);
        // A stray byte is in no range, and a range needs characters at both ends.
        assert!(!matches_with(
            "[a-z]",
            &[true, false, false, false, false],
            b"\xe9"
        ));
        let pattern = b"[\xe0-\xff]";
        let mut budget = Budget::new(&Limits::DEFAULT);
        let toks = compile(pattern, &[true, false, false, false, false]);
        assert!(match_name(&toks, b"\xe0", &mut budget).unwrap());
        assert!(match_name(&toks, b"-", &mut budget).unwrap());
        assert!(!match_name(&toks, b"\xe9", &mut budget).unwrap());
    }

    #[test]
    fn budget_too_many_entries_listed() {
        let s = Scratch::new("entries");
        s.many("flat", "secret-", 2000);
        let limits = Limits {
            max_entries: 500,
            ..Limits::DEFAULT
        };
        assert_budget(
            glob_with(&s, "flat/n*", limits),
            "directory entries",
            &["secret", "2000"],
        );
        let msg = glob_with(&s, "flat/*", limits).unwrap_err().to_string();
        assert_eq!(
            msg,
            "wildcard work budget exceeded (directory entries: more than 500 listed in this request)"
        );
        // Within the budget, the same listing works.
        assert_eq!(glob(&s, "flat/secret-0000[0-3]").unwrap().len(), 4);
    }

    #[test]
    fn budget_pathological_pattern_runs_out_of_steps() {
        let s = Scratch::new("steps");
        let long = "a".repeat(250);
        for i in 0..200 {
            s.files(&[&format!("{long}{i:03}")]);
        }
        // A class of ~1000 items tried at every position of every 253-byte name: about
        // 250 000 steps a name, 50 million for the directory.
        let pattern = format!("*[{}]b", "c".repeat(1000));
        let started = Instant::now();
        assert_budget(glob(&s, &pattern), "matching steps", &[&long[..10]]);
        assert!(started.elapsed() < Duration::from_secs(5));
        // The same with literal bytes: star retries over a long literal run.
        let pattern = format!("*{}b", "a".repeat(125));
        let limits = Limits {
            max_steps: 100_000,
            ..Limits::DEFAULT
        };
        assert_budget(
            glob_with(&s, &pattern, limits),
            "matching steps",
            &["aaaaaaaaaa"],
        );
    }

    #[test]
    fn budget_pattern_too_long() {
        let s = Scratch::new("long");
        let pattern = format!("{}*", "x".repeat(1024));
        assert_budget(glob(&s, &pattern), "pattern length", &[]);
        // Refused before any I/O: even a root that does not exist any more.
        let gone = Scratch::new("gone");
        std::fs::remove_dir_all(&gone.path).unwrap();
        assert_budget(glob(&gone, &pattern), "pattern length", &[]);
        assert_eq!(glob(&s, &pattern[1..]).unwrap(), [&pattern[1..]]);
    }

    #[test]
    fn budget_too_many_classes() {
        let s = Scratch::new("classes");
        s.files(&["abc"]);
        let many = "[a-z]".repeat(17);
        assert_budget(glob(&s, &many), "bracket classes", &["abc"]);
        let err = glob(&s, &many).unwrap_err().to_string();
        assert_eq!(
            err,
            "wildcard work budget exceeded (bracket classes: more than 16 `[` in one word)"
        );
        assert_eq!(glob(&s, "[a-z][a-z][a-z]").unwrap(), ["abc"]);
        // Quoted `[` are not classes.
        let quoted = "[".repeat(40) + "*";
        let mut b = Budget::new(&Limits::DEFAULT);
        assert_eq!(
            expand(&s.fd, &quoted, &[40], &mut b).unwrap(),
            [quoted.as_str()]
        );
    }

    #[test]
    fn budget_too_many_matches() {
        let s = Scratch::new("matches");
        s.many("d", "secret-", 20);
        let limits = Limits {
            max_matches: 10,
            ..Limits::DEFAULT
        };
        assert_budget(
            glob_with(&s, "d/*", limits),
            "names per word",
            &["secret", "20"],
        );
        assert_eq!(glob_with(&s, "d/*0[0-9]", limits).unwrap().len(), 10);
        // Also at an intermediate level.
        assert_budget(
            glob_with(&s, "d/*/x", limits),
            "names per word",
            &["secret"],
        );
    }

    #[test]
    fn budget_deadline() {
        let s = Scratch::new("deadline");
        s.files(&["secret.txt"]);
        let limits = Limits {
            deadline: Duration::ZERO,
            ..Limits::DEFAULT
        };
        assert_budget(glob_with(&s, "*.txt", limits), "time", &["secret"]);
    }

    #[test]
    fn budget_is_shared_across_words() {
        let s = Scratch::new("shared");
        s.many("d", "f", 100);
        let limits = Limits {
            max_entries: 150,
            ..Limits::DEFAULT
        };
        let mut budget = Budget::new(&limits);
        assert_eq!(
            expand(&s.fd, "d/f0000*", &[7], &mut budget).unwrap().len(),
            10
        );
        let second = expand(&s.fd, "d/f0001*", &[7], &mut budget);
        assert_budget(second, "directory entries", &["f000"]);
        // A fresh budget would have allowed the second word.
        let mut fresh = Budget::new(&limits);
        assert_eq!(
            expand(&s.fd, "d/f0001*", &[7], &mut fresh).unwrap().len(),
            10
        );
    }
}
