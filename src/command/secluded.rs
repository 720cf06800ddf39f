//! rsync's secluded arguments (`-s`, `--secluded-args`, formerly `--protect-args`):
//! reading them from standard input and turning them into the words the parser checks.
//!
//! With `-s` the client's command line is only `rsync --server [--sender] -s<flags>e<caps>`
//! (plus `--iconv=CHARSET` when asked for). Right after the remote shell starts, the client
//! writes `rsync` NUL, every remaining word unescaped and NUL-terminated, then an empty word
//! (rsync's `send_protected_args()`); the protocol bytes follow at once. rsync's server
//! reads the list one byte at a time (`read_args()`/`read_line()` with `RL_EOL_NULLS`),
//! parses it as a second command line, and glob-expands every word after the first `.`.
//!
//! Rules:
//! - read one byte at a time and never past the terminating empty word: what follows
//!   belongs to the rsync we exec;
//! - the whole list must arrive within a deadline, and every bound (word length, word
//!   count, total bytes) refuses rather than truncates (rsync silently cuts words at
//!   MAXPATHLEN-1 bytes, which would make us check a different name than the client meant);
//! - the first word must be exactly `rsync`; the returned list excludes it and the terminator;
//! - secluded words are final names, not shell words: no quote removal, no tilde, and
//!   wildcards are active exactly where rsync's server expands them (after the first `.`);
//!   they are bytes, like the names they are (a Latin-1 client's `\xe9` is kept);
//!   control characters are refused as on a command line;
//! - `--iconv` is refused: the words would then be in the client's charset, converted by
//!   rsync after our check;
//! - words are numbered from 1 after the leading `rsync` in every message.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::command::Word;

/// `Word::position` of a secluded word: `POSITION_BASE` + its 0-based index in the list
/// [`read_words`] returns. Above any byte position in a command string
/// (`command::MAX_COMMAND_LEN`), so a position says which source a word came from.
pub const POSITION_BASE: usize = 1_000_000;

/// The word every secluded list starts with (rsync's new `argv[0]`).
const LEADING: &[u8] = b"rsync";

/// Bounds on one secluded argument list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest word in bytes. rsync keeps at most MAXPATHLEN-1 (4095 on Linux).
    pub max_word: usize,
    /// Most words after the leading `rsync`; rsync's server has no cap (its argv grows in
    /// steps of MAX_ARGS = 1000), real clients send a handful.
    pub max_words: usize,
    /// Most bytes read in all, NULs and the leading `rsync` included.
    pub max_total: usize,
    /// Elapsed (monotonic) time for the whole list, from the call to [`read_words`].
    pub deadline: Duration,
}

impl Limits {
    /// A real client writes the list in one go right after the shell starts; 30 s leaves
    /// room for a slow link while bounding how long a silent client holds the account.
    pub const DEFAULT: Limits = Limits {
        max_word: 4095,
        max_words: 1000,
        max_total: 256 * 1024,
        deadline: Duration::from_secs(30),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why the secluded arguments are refused. Each message is one line naming the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecludedError {
    #[error("secluded arguments: the first word is not `rsync`")]
    NotRsync,
    #[error("secluded arguments: word {word} is longer than {max} bytes")]
    WordTooLong { word: usize, max: usize },
    #[error("secluded arguments: more than {max} words")]
    TooManyWords { max: usize },
    #[error("secluded arguments: more than {max} bytes in total")]
    TooLarge { max: usize },
    #[error("secluded arguments: the input ended before the terminating empty word (after {words} words)")]
    Eof { words: usize },
    #[error("secluded arguments: not complete within {}", Secs(*.0))]
    Timeout(Duration),
    #[error("secluded arguments: reading standard input failed: {0}")]
    Io(Errno),
    #[error("secluded arguments: word {0} contains control character U+{1:04X}")]
    Control(usize, u32),
    #[error("secluded arguments: word {0} is {1}, which belongs on the command line")]
    Misplaced(usize, String),
    #[error("secluded arguments with --iconv are refused: the words would arrive in the client's character set")]
    Iconv,
    #[error("secluded arguments: the command line must be `rsync --server [--sender] -s<flags>e<caps>`, {0}")]
    CommandLine(String),
}

/// A duration for a message: whole seconds as `30 s`, anything else in milliseconds.
struct Secs(Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{} s", self.0.as_secs())
        } else {
            write!(f, "{} ms", self.0.as_millis())
        }
    }
}

/// Read the secluded argument list from `fd`, one byte at a time, stopping right after the
/// terminating empty word. Returns the words after the leading `rsync`.
pub fn read_words(fd: BorrowedFd<'_>, limits: &Limits) -> Result<Vec<Vec<u8>>, SecludedError> {
    // An unrepresentable deadline (absurdly far) means effectively none.
    let deadline = Instant::now().checked_add(limits.deadline);
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut leading = 0usize; // bytes of `rsync` matched so far; LEADING.len() + 1 when done
    loop {
        if total >= limits.max_total {
            return Err(SecludedError::TooLarge {
                max: limits.max_total,
            });
        }
        let Some(byte) = read_byte(fd, deadline, limits.deadline)? else {
            return Err(SecludedError::Eof { words: words.len() });
        };
        total += 1;
        if leading <= LEADING.len() {
            // Refuse at the first byte that cannot be `rsync\0`: no need to read further.
            let expected = LEADING.get(leading).copied().unwrap_or(0);
            if byte != expected {
                return Err(SecludedError::NotRsync);
            }
            leading += 1;
            continue;
        }
        if byte == 0 {
            if current.is_empty() {
                return Ok(words);
            }
            words.push(std::mem::take(&mut current));
            continue;
        }
        if current.is_empty() && words.len() >= limits.max_words {
            return Err(SecludedError::TooManyWords {
                max: limits.max_words,
            });
        }
        if current.len() >= limits.max_word {
            return Err(SecludedError::WordTooLong {
                word: words.len() + 1,
                max: limits.max_word,
            });
        }
        current.push(byte);
    }
}

/// One byte, or `None` at end of input; waits no later than `deadline`.
fn read_byte(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    allowed: Duration,
) -> Result<Option<u8>, SecludedError> {
    let mut buf = [0u8; 1];
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(SecludedError::Timeout(allowed));
                }
                // Round up: a sub-millisecond remainder must not become a busy 0 ms poll.
                let ms = left.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) | Ok(0) => continue, // the loop re-checks the deadline
            Err(e) => return Err(SecludedError::Io(e)),
            Ok(_) => {}
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLNVAL))
        {
            return Err(SecludedError::Io(Errno::EBADF));
        }
        // POLLIN, POLLHUP or POLLERR: read says which (data, 0 for EOF, or the error).
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(buf[0])),
            // EAGAIN: a non-blocking descriptor raced with another reader; poll again.
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return Err(SecludedError::Io(e)),
        }
    }
}

/// True if a command-line bundle word carries the `s` (secluded args) flag letter: a
/// word `-<letters>` with `s` before the `e` that starts the capabilities (letters after
/// `e` are capabilities, where `s` means something else) and before any letter that takes
/// a value (`-B1024`'s rest is the value).
pub fn is_secluded_bundle(word: &str) -> bool {
    let Some(letters) = word.strip_prefix('-') else {
        return false;
    };
    if letters.starts_with('-') {
        return false;
    }
    for c in letters.chars() {
        if c == 's' {
            return true;
        }
        if c == 'e' || takes_value(c) {
            return false;
        }
    }
    false
}

/// A short letter whose option takes a value: the rest of its word is that value.
fn takes_value(letter: char) -> bool {
    crate::rsync::OPTIONS
        .iter()
        .any(|o| o.short == Some(letter) && o.value != crate::rsync::Value::Flag)
}

/// The bundle without its `s` flag letters; the capabilities after `e` are kept as sent.
fn without_secluded_flag(bundle: &str) -> String {
    let letters = &bundle[1..];
    let flags_end = letters
        .char_indices()
        .find(|&(_, c)| c == 'e' || takes_value(c))
        .map_or(letters.len(), |(i, _)| i);
    let (flags, tail) = letters.split_at(flags_end);
    let mut out = String::from("-");
    out.extend(flags.chars().filter(|&c| c != 's'));
    out.push_str(tail);
    out
}

/// The words rsync's server effectively parses: the command line with the `s` flag
/// removed from its bundle, then the secluded words as final names.
///
/// The command line must be what rsync's client sends with `-s`: the program, `--server`,
/// an optional `--sender`, and the bundle carrying `s`; nothing else (a client puts only
/// `--iconv=` after it, which is refused). A secluded word gets active wildcards only
/// after the first word that is exactly `.`, because that is where rsync's `read_args()`
/// starts calling `glob_expand()`; before it, `*?[` are literal.
pub fn to_words(command_line: &[Word], secluded: &[Vec<u8>]) -> Result<Vec<Word>, SecludedError> {
    let texts: Vec<&[u8]> = command_line.iter().map(|w| w.text.as_slice()).collect();
    if texts.get(1) != Some(&&b"--server"[..]) {
        return Err(SecludedError::CommandLine(
            "without `--server` as the second word".into(),
        ));
    }
    let at = if texts.get(2) == Some(&&b"--sender"[..]) {
        3
    } else {
        2
    };
    let bundle = command_line
        .get(at)
        .and_then(|w| w.utf8().filter(|t| is_secluded_bundle(t)).map(|t| (w, t)));
    let Some((bundle, bundle_text)) = bundle else {
        return Err(SecludedError::CommandLine(match texts.get(at) {
            Some(t) => format!("got {} where the bundle with `s` belongs", quoted(t)),
            None => "but it has no bundle with `s`".into(),
        }));
    };
    if let Some(extra) = texts.get(at + 1) {
        if extra.starts_with(b"--iconv") {
            return Err(SecludedError::Iconv);
        }
        return Err(SecludedError::CommandLine(format!(
            "got {} after the bundle",
            quoted(extra)
        )));
    }

    let mut words: Vec<Word> = command_line[..at].to_vec();
    let rebuilt = without_secluded_flag(bundle_text);
    if rebuilt != "-" {
        words.push(Word {
            text: rebuilt.into_bytes(),
            ..bundle.clone()
        });
    }
    let mut after_dot = false;
    for (i, raw) in secluded.iter().enumerate() {
        let number = i + 1;
        // The splitter refuses these in command lines; later steps rely on that. Bytes
        // that are not UTF-8 are name bytes (a Latin-1 client's names), as there.
        if let Some(c) = raw
            .utf8_chunks()
            .flat_map(|chunk| chunk.valid().chars())
            .find(|&c| c.is_control() && c != '\t')
        {
            return Err(SecludedError::Control(number, c as u32));
        }
        if !after_dot {
            if raw.starts_with(b"--iconv") {
                return Err(SecludedError::Iconv);
            }
            // rsync's client puts these before the NUL that ends the visible command line.
            if let Ok(word @ ("--server" | "--sender" | "--daemon")) = std::str::from_utf8(raw) {
                return Err(SecludedError::Misplaced(number, word.to_string()));
            }
        }
        let active_glob = if after_dot {
            (0..raw.len())
                .filter(|&j| matches!(raw[j], b'*' | b'?' | b'['))
                .collect()
        } else {
            Vec::new()
        };
        words.push(Word {
            text: raw.clone(),
            position: POSITION_BASE + i,
            active_glob,
            tilde: false,
        });
        after_dot |= raw == b".";
    }
    Ok(words)
}

fn quoted(text: &[u8]) -> String {
    crate::log::escape(&crate::command::quote(text), 256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::split;
    use crate::rsync::{parse, Invocation};
    use nix::unistd::{pipe, write};
    use std::os::fd::{AsFd, OwnedFd};

    /// A pipe holding `bytes` (written up front; small enough for the pipe buffer).
    fn filled(bytes: &[u8]) -> (OwnedFd, OwnedFd) {
        let (r, w) = pipe().unwrap();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = write(&w, rest).unwrap();
            rest = &rest[n..];
        }
        (r, w)
    }

    /// Read the words with a writer that has already closed its end.
    fn read_closed(bytes: &[u8], limits: &Limits) -> Result<Vec<Vec<u8>>, SecludedError> {
        let (r, w) = filled(bytes);
        drop(w);
        read_words(r.as_fd(), limits)
    }

    /// Read the words while a thread writes `bytes` (for inputs larger than a pipe holds).
    fn read_streamed(bytes: Vec<u8>, limits: &Limits) -> Result<Vec<Vec<u8>>, SecludedError> {
        let (r, w) = pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let mut file = std::fs::File::from(w);
            // The reader stops early on a refusal: EPIPE here is expected.
            let _ = std::io::Write::write_all(&mut file, &bytes);
        });
        let result = read_words(r.as_fd(), limits);
        drop(r);
        writer.join().unwrap();
        result
    }

    fn rest_of(r: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(r, &mut buf).unwrap() {
                0 => return out,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn strings(words: &[Vec<u8>]) -> Vec<&str> {
        words
            .iter()
            .map(|w| std::str::from_utf8(w).unwrap())
            .collect()
    }

    fn texts(words: &[Word]) -> Vec<&str> {
        words.iter().map(|w| w.utf8().unwrap()).collect()
    }

    fn bytes_of(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    const BACKUPPC_LINE: &str = "/usr/bin/rsync --server --sender -slHogDtprcxe.iLsfxC";
    const BACKUPPC_STDIN: &[u8] = b"rsync\0--timeout=72000\0--numeric-ids\0.\0/\0\0";
    const PROTOCOL: &[u8] = &[0x20, 0, 0, 0];

    #[test]
    fn backuppc_words_are_read_and_the_protocol_bytes_stay_unread() {
        let (r, w) = filled(&[BACKUPPC_STDIN, PROTOCOL].concat());
        drop(w);
        let words = read_words(r.as_fd(), &Limits::DEFAULT).unwrap();
        assert_eq!(
            strings(&words),
            ["--timeout=72000", "--numeric-ids", ".", "/"]
        );
        assert_eq!(
            rest_of(&r),
            PROTOCOL,
            "read past the terminating empty word"
        );
    }

    #[test]
    fn a_plain_clients_words_keep_their_spaces() {
        let stdin = b"rsync\0--backup-dir\0old\0--delete\0.\0dir with space/\0\0";
        let words = read_closed(&[&stdin[..], PROTOCOL].concat(), &Limits::DEFAULT).unwrap();
        assert_eq!(
            strings(&words),
            ["--backup-dir", "old", "--delete", ".", "dir with space/"]
        );
    }

    #[test]
    fn a_word_longer_than_4095_bytes_is_refused_not_truncated() {
        let mut ok = b"rsync\0.\0".to_vec();
        ok.extend(vec![b'a'; 4095]);
        ok.extend(b"\0\0");
        assert_eq!(read_closed(&ok, &Limits::DEFAULT).unwrap()[1].len(), 4095);

        let mut long = b"rsync\0.\0".to_vec();
        long.extend(vec![b'a'; 4096]);
        long.extend(b"\0\0");
        let e = read_closed(&long, &Limits::DEFAULT).unwrap_err();
        assert_eq!(e, SecludedError::WordTooLong { word: 2, max: 4095 });
        assert_eq!(
            e.to_string(),
            "secluded arguments: word 2 is longer than 4095 bytes"
        );
    }

    #[test]
    fn more_than_1000_words_are_refused() {
        let list = |n: usize| [b"rsync\0".to_vec(), b"x\0".repeat(n), b"\0".to_vec()].concat();
        assert_eq!(
            read_closed(&list(1000), &Limits::DEFAULT).unwrap().len(),
            1000
        );
        let e = read_closed(&list(1001), &Limits::DEFAULT).unwrap_err();
        assert_eq!(e.to_string(), "secluded arguments: more than 1000 words");
    }

    #[test]
    fn more_than_the_total_is_refused() {
        // 70 words of 4000 bytes: each within bounds, together over 256 KiB.
        let word = [vec![b'a'; 4000], vec![0]].concat();
        let input = [b"rsync\0".to_vec(), word.repeat(70), b"\0".to_vec()].concat();
        let e = read_streamed(input, &Limits::DEFAULT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secluded arguments: more than 262144 bytes in total"
        );
        // The bound counts every byte read, the leading `rsync\0` and the terminator too.
        let small = Limits {
            max_total: 11,
            ..Limits::DEFAULT
        };
        assert!(read_closed(b"rsync\0.\0x\0\0", &small).is_ok());
        assert_eq!(
            read_closed(b"rsync\0.\0xy\0\0", &small),
            Err(SecludedError::TooLarge { max: 11 })
        );
    }

    #[test]
    fn the_first_word_must_be_rsync() {
        for input in [
            &b"sh\0.\0/\0\0"[..],
            b"rsyncd\0.\0\0",
            b"rsyn\0.\0\0",
            b"\0",
        ] {
            assert_eq!(
                read_closed(input, &Limits::DEFAULT),
                Err(SecludedError::NotRsync),
                "{input:?}"
            );
        }
    }

    #[test]
    fn end_of_input_before_the_terminator_is_refused() {
        for input in [
            &b""[..],
            b"rsync",
            b"rsync\0",
            b"rsync\0.\0/\0",
            b"rsync\0.\0/",
        ] {
            let e = read_closed(input, &Limits::DEFAULT).unwrap_err();
            assert!(matches!(e, SecludedError::Eof { .. }), "{input:?}: {e}");
        }
        assert_eq!(
            read_closed(b"rsync\0.\0", &Limits::DEFAULT)
                .unwrap_err()
                .to_string(),
            "secluded arguments: the input ended before the terminating empty word (after 1 words)"
        );
    }

    #[test]
    fn a_stalled_writer_hits_the_deadline() {
        let (r, w) = filled(b"rsync\0--timeout=1\0");
        let limits = Limits {
            deadline: Duration::from_millis(200),
            ..Limits::DEFAULT
        };
        let started = Instant::now();
        let e = read_words(r.as_fd(), &limits).unwrap_err();
        let took = started.elapsed();
        drop(w); // held open until here: the writer stalls, it does not hang up
        assert_eq!(e, SecludedError::Timeout(Duration::from_millis(200)));
        assert_eq!(
            e.to_string(),
            "secluded arguments: not complete within 200 ms"
        );
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(5));
        assert_eq!(
            SecludedError::Timeout(Limits::DEFAULT.deadline).to_string(),
            "secluded arguments: not complete within 30 s"
        );
    }

    #[test]
    fn backuppc_line_becomes_the_words_rsync_parses() {
        let line = split(BACKUPPC_LINE.as_bytes()).unwrap();
        let secluded = read_closed(BACKUPPC_STDIN, &Limits::DEFAULT).unwrap();
        let words = to_words(&line, &secluded).unwrap();
        assert_eq!(
            texts(&words),
            [
                "/usr/bin/rsync",
                "--server",
                "--sender",
                "-lHogDtprcxe.iLsfxC",
                "--timeout=72000",
                "--numeric-ids",
                ".",
                "/"
            ]
        );
        assert_eq!(words[4].position, POSITION_BASE);
        assert_eq!(words[7].position, POSITION_BASE + 3);
        assert!(words[4..].iter().all(|w| !w.tilde));
        let Ok(Invocation::Transfer(t)) = parse(&words, "/usr/bin/rsync") else {
            panic!("{:?}", parse(&words, "/usr/bin/rsync"));
        };
        assert!(t.sender);
        assert_eq!(t.flags.iter().collect::<String>(), "lHogDtprcx");
        assert_eq!(t.caps.as_deref(), Some(".iLsfxC"));
        assert!(t.has("timeout") && t.has("numeric-ids"));
        assert_eq!(texts(&t.paths), ["/"]);
        // The unmodified command line is still refused by the table.
        assert!(parse(&line, "/usr/bin/rsync").is_err());
    }

    #[test]
    fn wildcards_are_active_only_after_the_dot() {
        let line = split(b"rsync --server --sender -se.iLsfxC").unwrap();
        let secluded = bytes_of(&["--backup-dir", "old*", ".", "dir/*.t?t", "[ab]", "~x"]);
        let words = to_words(&line, &secluded).unwrap();
        assert_eq!(
            texts(&words[4..]),
            ["--backup-dir", "old*", ".", "dir/*.t?t", "[ab]", "~x"]
        );
        assert!(words[4].active_glob.is_empty() && words[5].active_glob.is_empty());
        assert!(words[6].active_glob.is_empty());
        assert_eq!(words[7].active_glob, [4, 7]);
        assert_eq!(words[8].active_glob, [0]);
        assert!(!words[9].tilde, "no shell expands a secluded `~`");
        // rsync's read_args() starts globbing after the FIRST `.`, even an option's value.
        let secluded = bytes_of(&["--temp-dir", ".", "--suffix=~*", ".", "d"]);
        let words = to_words(&line, &secluded).unwrap();
        assert_eq!(words[6].active_glob, [10]);
        assert!(parse(&words, "rsync").is_err(), "a glob in an option word");
    }

    #[test]
    fn iconv_is_refused_on_the_command_line_and_in_the_words() {
        let line = split(b"rsync --server -slogDtpre.iLsfxCIvu --iconv=latin1").unwrap();
        let e = to_words(&line, &bytes_of(&[".", "dst/"])).unwrap_err();
        assert_eq!(e, SecludedError::Iconv);
        assert!(e.to_string().contains("client's character set"), "{e}");
        let line = split(b"rsync --server -slogDtpre.iLsfxCIvu").unwrap();
        for word in ["--iconv=utf8", "--iconv"] {
            let e = to_words(&line, &bytes_of(&[word, ".", "dst/"])).unwrap_err();
            assert_eq!(e, SecludedError::Iconv);
        }
    }

    #[test]
    fn latin1_words_are_names_and_control_characters_are_refused_by_word_number() {
        let line = split(b"rsync --server -se.").unwrap();
        let words = to_words(&line, &[b".".to_vec(), b"caf\xe9*".to_vec()]).unwrap();
        assert_eq!(words[4].text, b"caf\xe9*");
        assert_eq!(words[4].active_glob, [4]);
        let words = to_words(&line, &[b"--backup-dir=d\xff".to_vec(), b".".to_vec()]);
        assert_eq!(words.unwrap()[3].text, b"--backup-dir=d\xff");
        let e = to_words(&line, &bytes_of(&[".", "a\nb"])).unwrap_err();
        assert_eq!(e, SecludedError::Control(2, 0x0A));
        let e = to_words(&line, &[b".".to_vec(), b"\xe9\x1b[0m".to_vec()]).unwrap_err();
        assert_eq!(e, SecludedError::Control(2, 0x1B));
        // A C1 control spelled in UTF-8 is refused as before; as a lone byte it is Latin-1.
        let e = to_words(&line, &[b".".to_vec(), b"a\xc2\x9bb".to_vec()]).unwrap_err();
        assert_eq!(e, SecludedError::Control(2, 0x9B));
        assert!(to_words(&line, &[b".".to_vec(), b"a\x9bb".to_vec()]).is_ok());
        assert!(to_words(&line, &bytes_of(&[".", "a\tb"])).is_ok());
    }

    #[test]
    fn an_s_after_e_is_a_capability_not_the_flag() {
        assert!(is_secluded_bundle("-slHogDtprcxe.iLsfxC"));
        assert!(is_secluded_bundle("-vse."));
        assert!(!is_secluded_bundle("-lHogDtprcxe.iLsfxC"));
        assert!(!is_secluded_bundle("-e.iLsfxC"));
        assert!(!is_secluded_bundle("-B1024s"));
        assert!(!is_secluded_bundle("--secluded-args"));
        assert!(!is_secluded_bundle("s"));
        let line = split(b"rsync --server -lHogDtprcxe.iLsfxC").unwrap();
        assert!(matches!(
            to_words(&line, &bytes_of(&[".", "d/"])),
            Err(SecludedError::CommandLine(_))
        ));
        let line = split(b"rsync --server -lse.iLsfxC").unwrap();
        let words = to_words(&line, &bytes_of(&[".", "d/"])).unwrap();
        assert_eq!(words[2].text, b"-le.iLsfxC");
        let line = split(b"rsync --server -s").unwrap();
        let words = to_words(&line, &bytes_of(&[".", "d/"])).unwrap();
        assert_eq!(texts(&words), ["rsync", "--server", ".", "d/"]);
    }

    #[test]
    fn the_command_line_carries_nothing_but_the_bundle() {
        let words = bytes_of(&[".", "d/"]);
        for line in [
            "rsync --server -se.iLs --delete",
            "rsync --server -se.iLs . d/",
            "rsync --server --daemon -se.",
            "rsync -se.",
            "rsync --server",
        ] {
            let e = to_words(&split(line.as_bytes()).unwrap(), &words).unwrap_err();
            assert!(matches!(e, SecludedError::CommandLine(_)), "{line}: {e}");
        }
        // What a client never sends in the list: the visible command line's words.
        let line = split(b"rsync --server -se.iLs").unwrap();
        for word in ["--sender", "--server", "--daemon"] {
            let e = to_words(&line, &bytes_of(&[word, ".", "d/"])).unwrap_err();
            assert_eq!(e, SecludedError::Misplaced(1, word.into()), "{e}");
        }
    }

    /// One block of tests/data/secluded-captures.txt.
    struct Capture<'a> {
        name: &'a str,
        command: &'a str,
        stdin: Vec<u8>,
        after: Vec<u8>,
    }

    /// `\0` NUL, `\\` backslash, `\xNN` a byte; the rest as UTF-8.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            match chars.next() {
                Some('0') => out.push(0),
                Some('\\') => out.push(b'\\'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap());
                }
                other => panic!("bad escape \\{other:?}"),
            }
        }
        out
    }

    fn captures() -> Vec<Capture<'static>> {
        include_str!("../../tests/data/secluded-captures.txt")
            .split("\n\n")
            .filter(|block| block.starts_with("name: "))
            .map(|block| {
                let field = |key: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(key))
                        .unwrap_or_else(|| panic!("{key} missing in {block}"))
                };
                Capture {
                    name: field("name: "),
                    command: field("command: "),
                    stdin: unescape(field("stdin: ")),
                    after: field("after: ")
                        .split(' ')
                        .map(|h| u8::from_str_radix(h, 16).unwrap())
                        .collect(),
                }
            })
            .collect()
    }

    /// Feed a capture through read_words, to_words and rsync::parse.
    fn run(c: &Capture) -> Result<Invocation, String> {
        let (r, w) = filled(&[&c.stdin[..], &c.after[..]].concat());
        drop(w);
        let secluded = read_words(r.as_fd(), &Limits::DEFAULT).map_err(|e| e.to_string())?;
        assert_eq!(rest_of(&r), c.after, "{}: over-read", c.name);
        let line = split(c.command.as_bytes()).unwrap();
        let words = to_words(&line, &secluded).map_err(|e| e.to_string())?;
        parse(&words, "/usr/bin/rsync").map_err(|e| e.to_string())
    }

    #[test]
    fn real_client_captures_read_convert_and_parse() {
        let all = captures();
        assert!(all.len() >= 9, "captures file lost blocks");
        for c in &all {
            let outcome = run(c);
            match c.name {
                "push-iconv" => assert_eq!(outcome, Err(SecludedError::Iconv.to_string())),
                _ => assert!(outcome.is_ok(), "{}: {outcome:?}", c.name),
            }
        }
        let paths = |name: &str| -> Vec<Word> {
            let c = all.iter().find(|c| c.name == name).unwrap();
            match run(c) {
                Ok(Invocation::Transfer(t)) => t.paths,
                other => panic!("{name}: {other:?}"),
            }
        };
        let unicode = paths("pull-space-unicode");
        assert_eq!(
            texts(&unicode),
            ["src/file with space.txt", "src/caf\u{e9} \u{fc}.txt"]
        );
        // A Latin-1 client's name arrives as its bytes and stays so.
        let latin1 = paths("pull-non-utf8");
        assert_eq!(latin1[0].text, b"src/latin1-\xe9.txt");
        // rsync's client turns a leading `-` into `./-`, even in the secluded list.
        assert_eq!(texts(&paths("pull-leading-dash")), ["./-dash.txt"]);
        let wild = paths("pull-wildcard");
        assert_eq!(wild[0].active_glob, [4]);
        assert_eq!(texts(&paths("push-empty-destination")), ["."]);
    }
}
