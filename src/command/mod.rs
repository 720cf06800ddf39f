//! Splits a command string into words the way a POSIX shell would — and refuses
//! everything a shell would *do* rather than merely quote (a stock rsync client escapes every such character itself).
//!
//! Rules (no syscalls here, no allocation beyond the words):
//! - blanks separate words; backslash, single and double quotes are removed as `sh` would;
//! - unquoted operators and expansions (`; & | < > ( )`, `$` and backtick outside single
//!   quotes, `#` where a word starts, `!` `{` `}` as whole words) are refused, never
//!   interpreted; inside a word `# ! { }` are literal, as in a POSIX shell;
//! - NUL, CR and LF anywhere, unescaped TAB, empty words, doubled or edge blanks,
//!   unbalanced quotes and absurd lengths are refused;
//! - we remember which glob characters and which leading `~` were *unquoted*, because
//!   only those have a meaning (see resolve.rs): `\*` and `\~` are literal names.
#![forbid(unsafe_code)]

pub mod glob;
pub mod secluded;

use std::fmt;

/// Longest command string accepted (a real rsync command line is a few hundred bytes).
pub const MAX_COMMAND_LEN: usize = 16 * 1024;
/// Most words accepted.
pub const MAX_WORDS: usize = 512;
/// Longest single word (PATH_MAX).
pub const MAX_WORD_LEN: usize = 4096;

/// One word after quote removal: bytes, because a file name is bytes (a client with
/// Latin-1 names sends `caf\xe9` as the single byte 0xE9), and what is checked must be
/// exactly what is exec'd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The bytes after quote removal (never NUL, CR, LF or another control character).
    pub text: Vec<u8>,
    /// 1-based byte position of the word in the command string (for messages).
    pub position: usize,
    /// Byte offsets into `text` of `*`, `?` and `[` that were not quoted or escaped:
    /// a shell would treat them as a pattern.
    pub active_glob: Vec<usize>,
    /// The word starts with an unquoted `~` (a shell would do tilde expansion).
    pub tilde: bool,
}

impl Word {
    /// The text when it is valid UTF-8 (program names, options and their non-path values
    /// must be; a path may be any bytes).
    pub fn utf8(&self) -> Option<&str> {
        std::str::from_utf8(&self.text).ok()
    }
}

/// Why a command string cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("empty command")]
    Empty,
    #[error("command longer than {MAX_COMMAND_LEN} bytes")]
    TooLong,
    #[error("more than {MAX_WORDS} words")]
    TooManyWords,
    #[error("word at position {0} is longer than {MAX_WORD_LEN} bytes")]
    WordTooLong(usize),
    #[error("{name} at position {1} is not allowed", name = CharName(*.0))]
    Forbidden(char, usize),
    #[error("unquoted {name} at position {1}: shell syntax is not allowed", name = CharName(*.0))]
    ShellSyntax(char, usize),
    #[error("{name} inside double quotes at position {1}: expansions are not allowed", name = CharName(*.0))]
    Expansion(char, usize),
    #[error("unterminated {kind} quote starting at position {1}", kind = if *.0 == '\'' { "single" } else { "double" })]
    Unbalanced(char, usize),
    #[error("trailing backslash at position {0}")]
    TrailingBackslash(usize),
    #[error("empty word at position {0}")]
    EmptyWord(usize),
    #[error("extra blank at position {0}")]
    ExtraBlank(usize),
}

/// Prints a character for a message: printable ones quoted, control characters by name.
struct CharName(char);

impl fmt::Display for CharName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            '\0' => f.write_str("NUL"),
            '\n' => f.write_str("LF (newline)"),
            '\r' => f.write_str("CR"),
            '\t' => f.write_str("TAB"),
            c if c.is_control() => write!(f, "control character U+{:04X}", c as u32),
            c => write!(f, "'{c}'"),
        }
    }
}

/// Characters a shell treats as operators or expansions wherever they stand unquoted.
fn is_shell_special(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`')
}

/// Words a POSIX shell treats as reserved when they stand alone (`!` negates a pipeline,
/// `{` `}` group commands); inside a word these characters are literal (`x{1}`, `excl!x`:
/// POSIX sh has no brace expansion and `sh -c` no history expansion).
fn is_reserved_word(text: &[u8]) -> bool {
    matches!(text, b"!" | b"{" | b"}")
}

/// Characters refused anywhere, quoted or not: ASCII controls but TAB, DEL, and the C1
/// controls (U+0080–U+009F) when they are spelled as UTF-8.
fn is_forbidden(c: char) -> bool {
    c == '\0' || c == '\n' || c == '\r' || (c.is_control() && c != '\t')
}

/// Stands for a byte that is not part of valid UTF-8: an ordinary name byte (Latin-1
/// `é` is 0xE9), special to nothing. Only its raw byte is ever kept.
const NAME_BYTE: char = char::REPLACEMENT_CHARACTER;

/// One unit of the command string: a character (valid UTF-8), or a single byte that is
/// not part of valid UTF-8 (then `c` is [`NAME_BYTE`]); `raw` is what goes into a word.
#[derive(Clone, Copy)]
struct Unit<'a> {
    /// 0-based byte offset.
    at: usize,
    c: char,
    raw: &'a [u8],
}

/// The units of `bytes`, in order. The shell rules below are byte rules: only ASCII
/// characters are special, so decoding the rest changes nothing but which characters
/// count as controls (a UTF-8 C1 control is refused, a stray byte is a name byte).
fn units(bytes: &[u8]) -> impl Iterator<Item = Unit<'_>> {
    let mut at = 0;
    bytes.utf8_chunks().flat_map(move |chunk| {
        let start = at;
        let valid = chunk.valid();
        at += valid.len() + chunk.invalid().len();
        let chars = valid.char_indices().map(move |(i, c)| Unit {
            at: start + i,
            c,
            raw: &valid.as_bytes()[i..i + c.len_utf8()],
        });
        let invalid_start = start + valid.len();
        let stray = chunk.invalid().iter().enumerate().map(move |(i, b)| Unit {
            at: invalid_start + i,
            c: NAME_BYTE,
            raw: std::slice::from_ref(b),
        });
        chars.chain(stray)
    })
}

/// Split `command` into words as a POSIX shell would, refusing what a shell would do.
/// Bytes that are not valid UTF-8 are name bytes (a Latin-1 client's `é`), kept as sent.
pub fn split(command: &[u8]) -> Result<Vec<Word>, SplitError> {
    if command.len() > MAX_COMMAND_LEN {
        return Err(SplitError::TooLong);
    }
    if let Some(i) = command.iter().position(|&b| b == 0) {
        return Err(SplitError::Forbidden('\0', i + 1));
    }
    if command.is_empty() {
        return Err(SplitError::Empty);
    }

    let mut words: Vec<Word> = Vec::new();
    let mut current: Option<Word> = None;
    let mut chars = units(command).peekable();
    let mut previous_was_blank = true; // a leading blank is an extra blank
                                       // Whether the word being built has seen a quote yet (`''~x` is no tilde expansion).
    let mut quoted = false;

    while let Some(Unit { at, c, raw }) = chars.next() {
        let pos = at + 1;
        if is_forbidden(c) {
            return Err(SplitError::Forbidden(c, pos));
        }
        if c == ' ' {
            if previous_was_blank {
                return Err(SplitError::ExtraBlank(pos));
            }
            previous_was_blank = true;
            if let Some(w) = current.take() {
                refuse_reserved(&w, quoted)?;
                push_word(&mut words, w)?;
            }
            quoted = false;
            continue;
        }
        previous_was_blank = false;
        if c == '\t' {
            return Err(SplitError::ShellSyntax('\t', pos));
        }
        let word = current.get_or_insert_with(|| Word {
            text: Vec::new(),
            position: pos,
            active_glob: Vec::new(),
            tilde: false,
        });
        match c {
            '\\' => match chars.next() {
                Some(e) => {
                    if is_forbidden(e.c) {
                        return Err(SplitError::Forbidden(e.c, e.at + 1));
                    }
                    word.text.extend_from_slice(e.raw);
                }
                None => return Err(SplitError::TrailingBackslash(pos)),
            },
            '\'' => {
                let mut closed = false;
                for q in chars.by_ref() {
                    if is_forbidden(q.c) {
                        return Err(SplitError::Forbidden(q.c, q.at + 1));
                    }
                    if q.c == '\'' {
                        closed = true;
                        break;
                    }
                    word.text.extend_from_slice(q.raw);
                }
                if !closed {
                    return Err(SplitError::Unbalanced('\'', pos));
                }
                quoted = true;
            }
            '"' => {
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if is_forbidden(q.c) {
                        return Err(SplitError::Forbidden(q.c, q.at + 1));
                    }
                    match q.c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '$' | '`' => return Err(SplitError::Expansion(q.c, q.at + 1)),
                        '\\' => match chars.peek().copied() {
                            // Inside double quotes a backslash escapes only these (POSIX).
                            Some(e) if matches!(e.c, '$' | '`' | '"' | '\\') => {
                                chars.next();
                                word.text.extend_from_slice(e.raw);
                            }
                            Some(e) if is_forbidden(e.c) => {
                                return Err(SplitError::Forbidden(e.c, e.at + 1));
                            }
                            _ => word.text.push(b'\\'),
                        },
                        _ => word.text.extend_from_slice(q.raw),
                    }
                }
                if !closed {
                    return Err(SplitError::Unbalanced('"', pos));
                }
                quoted = true;
            }
            c if is_shell_special(c) => return Err(SplitError::ShellSyntax(c, pos)),
            // `#` starts a comment only where a word starts (`notes#1.txt` is a name).
            '#' if word.text.is_empty() && !quoted => return Err(SplitError::ShellSyntax(c, pos)),
            '*' | '?' | '[' => {
                word.active_glob.push(word.text.len());
                word.text.extend_from_slice(raw);
            }
            '~' if word.text.is_empty() && !quoted => {
                word.tilde = true;
                word.text.extend_from_slice(raw);
            }
            _ => word.text.extend_from_slice(raw),
        }
        if word.text.len() > MAX_WORD_LEN {
            return Err(SplitError::WordTooLong(word.position));
        }
    }
    if previous_was_blank && !words.is_empty() {
        return Err(SplitError::ExtraBlank(command.len()));
    }
    if let Some(w) = current.take() {
        refuse_reserved(&w, quoted)?;
        push_word(&mut words, w)?;
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

fn refuse_reserved(w: &Word, quoted: bool) -> Result<(), SplitError> {
    if !quoted && is_reserved_word(&w.text) {
        let c = char::from(w.text[0]);
        return Err(SplitError::ShellSyntax(c, w.position));
    }
    Ok(())
}

fn push_word(words: &mut Vec<Word>, w: Word) -> Result<(), SplitError> {
    if w.text.is_empty() {
        return Err(SplitError::EmptyWord(w.position));
    }
    if words.len() >= MAX_WORDS {
        return Err(SplitError::TooManyWords);
    }
    words.push(w);
    Ok(())
}

/// Quote a word for display (`--test`): the shell-safe form of valid UTF-8 (`'a b'`);
/// any other bytes in double quotes with the log's escaping (`"caf\xe9.txt"`), which
/// keeps every byte and cannot be mistaken for the single-quoted form.
pub fn quote(text: &[u8]) -> String {
    match std::str::from_utf8(text).map(shlex::try_quote) {
        Ok(Ok(q)) => q.into_owned(),
        _ => format!("\"{}\"", crate::log::escape_bytes(text, usize::MAX)),
    }
}

/// Client bytes (a word, a path) inside a message: the log's escaping, every byte kept
/// (`caf\xe9.txt`), without quotes; callers that want quotes add `"`. Refusals and
/// `--test` lines are escaped again for their sink, so this only has to be lossless.
pub fn show(bytes: &[u8]) -> String {
    crate::log::escape_bytes(bytes, usize::MAX)
}

/// [`show`] in double quotes, as a message names a path: `"caf\xe9.txt"`.
pub fn show_quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", show(bytes))
}

/// Bytes for a person where exactness matters less than legibility (`shown_argv`, test
/// output): valid UTF-8 as it is, anything else with the log's escaping.
pub fn display(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => show(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn texts(s: &str) -> Vec<String> {
        split(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|w| String::from_utf8(w.text).unwrap())
            .collect()
    }

    fn byte_words(s: &[u8]) -> Vec<Vec<u8>> {
        split(s).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[rstest]
    #[case("rsync --server . dest/", &["rsync", "--server", ".", "dest/"])]
    #[case("a\\ b c", &["a b", "c"])]
    #[case("'a b' \"c d\"", &["a b", "c d"])]
    #[case("it\\'s\\ \\\"q\\\"/", &["it's \"q\"/"])]
    #[case("\"a\\\\b\\$c\\`d\\\"e\\x\"", &["a\\b$c`d\"e\\x"])]
    #[case("'$(id);`x`|&'", &["$(id);`x`|&"])]
    #[case("we\\$ird\\;\\&\\|\\`name\\`\\(x\\)\\<y\\>\\{z\\}\\#\\!\\\\q", &["we$ird;&|`name`(x)<y>{z}#!\\q"])]
    #[case("a'b'\"c\"d", &["abcd"])]
    #[case("caf\u{e9} \u{1f600}", &["caf\u{e9}", "\u{1f600}"])]
    #[case("a\\\tb", &["a\tb"])]
    fn posix_quote_removal(#[case] input: &str, #[case] expected: &[&str]) {
        assert_eq!(texts(input), expected);
    }

    #[rstest]
    #[case("x ;", SplitError::ShellSyntax(';', 3))]
    #[case("x $y", SplitError::ShellSyntax('$', 3))]
    #[case("x \"$y\"", SplitError::Expansion('$', 4))]
    #[case("x \"`y`\"", SplitError::Expansion('`', 4))]
    #[case("x\ny", SplitError::Forbidden('\n', 2))]
    #[case("x '\n'", SplitError::Forbidden('\n', 4))]
    #[case("x\\\ny", SplitError::Forbidden('\n', 3))]
    #[case("x\ty", SplitError::ShellSyntax('\t', 2))]
    #[case("x 'y", SplitError::Unbalanced('\'', 3))]
    #[case("x \"y", SplitError::Unbalanced('"', 3))]
    #[case("x\\", SplitError::TrailingBackslash(2))]
    #[case("x ''", SplitError::EmptyWord(3))]
    #[case(" x", SplitError::ExtraBlank(1))]
    #[case("x  y", SplitError::ExtraBlank(3))]
    #[case("x ", SplitError::ExtraBlank(2))]
    #[case("", SplitError::Empty)]
    #[case("x \u{7f}", SplitError::Forbidden('\u{7f}', 3))]
    fn refusals_name_the_character_and_position(#[case] input: &str, #[case] expected: SplitError) {
        assert_eq!(split(input.as_bytes()), Err(expected));
    }

    #[test]
    fn absurd_lengths_and_bad_encodings_are_refused() {
        assert_eq!(
            split(&vec![b'a'; MAX_COMMAND_LEN + 1]),
            Err(SplitError::TooLong)
        );
        assert_eq!(split(&[b'a', 0, b'b']), Err(SplitError::Forbidden('\0', 2)));
        let many = vec!["x"; MAX_WORDS + 1].join(" ");
        assert_eq!(split(many.as_bytes()), Err(SplitError::TooManyWords));
        assert!(matches!(
            split("x".repeat(MAX_WORD_LEN + 1).as_bytes()),
            Err(SplitError::WordTooLong(1))
        ));
    }

    #[test]
    fn only_unquoted_globs_and_tildes_are_active() {
        let w = &split(b"a*b 'c*' d\\* [x] ~ ~/y \\~ ''~z \"~\"").unwrap();
        assert_eq!(w[0].active_glob, vec![1]);
        assert!(w[1].active_glob.is_empty());
        assert!(w[2].active_glob.is_empty());
        assert_eq!(w[3].active_glob, vec![0]);
        assert!(w[4].tilde && w[5].tilde);
        assert!(!w[6].tilde && !w[7].tilde && !w[8].tilde);
        assert_eq!(w[7].text, b"~z");
    }

    /// A Latin-1 client sends `é` as the single byte 0xE9 (and `ÿ` as 0xFF): a name byte,
    /// kept as sent, quoted or not; the shell rules stay byte rules.
    #[test]
    fn latin1_bytes_are_name_bytes() {
        let table: &[(&[u8], &[&[u8]])] = &[
            (b"caf\xe9.txt", &[b"caf\xe9.txt"]),
            (b"'caf\xe9 x' \"d\xff\\\"\"", &[b"caf\xe9 x", b"d\xff\""]),
            (b"caf\\\xe9 a\\ \xff", &[b"caf\xe9", b"a \xff"]),
            (
                b"rsync --server . d\xff/",
                &[b"rsync", b"--server", b".", b"d\xff/"],
            ),
            (b"\x80\x9f \xc3", &[b"\x80\x9f", b"\xc3"]),
            (b"\xc3\xa9 \xe9\xa9", &[b"\xc3\xa9", b"\xe9\xa9"]),
        ];
        for &(input, expected) in table {
            assert_eq!(byte_words(input), expected, "{input:?}");
        }
    }

    #[test]
    fn latin1_bytes_change_none_of_the_shell_rules() {
        // Special characters next to a stray byte are still special.
        assert_eq!(split(b"\xe9;id"), Err(SplitError::ShellSyntax(';', 2)));
        assert_eq!(split(b"x \xe9$y"), Err(SplitError::ShellSyntax('$', 4)));
        assert_eq!(split(b"x \"\xe9`y`\""), Err(SplitError::Expansion('`', 5)));
        assert_eq!(split(b"x '\xe9"), Err(SplitError::Unbalanced('\'', 3)));
        assert_eq!(split(b"\xe9\n"), Err(SplitError::Forbidden('\n', 2)));
        assert_eq!(
            split(b"a \xe9\x1b[0m"),
            Err(SplitError::Forbidden('\x1b', 4))
        );
        assert_eq!(split(b"x\xe9 "), Err(SplitError::ExtraBlank(3)));
        assert_eq!(split(b"x \xe9\\"), Err(SplitError::TrailingBackslash(4)));
        // A C1 control is refused when spelled in UTF-8 (as before); the same value as a
        // lone byte is a Latin-1 name byte that no terminal sees raw (logs show `\x85`).
        assert_eq!(
            split(b"x \xc2\x85"),
            Err(SplitError::Forbidden('\u{85}', 3))
        );
        assert_eq!(byte_words(b"x \x85")[1], b"\x85");
        // Positions are byte offsets, also after stray bytes.
        let w = split(b"\xe9\xe9 a* ~\xe9").unwrap();
        assert_eq!(w[1].position, 4);
        assert_eq!(w[1].active_glob, [1]);
        assert!(w[2].tilde);
        assert_eq!(w[2].text, b"~\xe9");
    }

    #[test]
    fn words_are_quoted_and_shown_without_losing_a_byte() {
        assert_eq!(quote(b"a b"), "'a b'");
        assert_eq!(quote(b"caf\xc3\xa9"), "'caf\u{e9}'");
        assert_eq!(quote(b"caf\xe9 x"), "\"caf\\xe9 x\"");
        assert_eq!(quote(b"a\\\xff\""), "\"a\\\\\\xff\\\"\"");
        assert_eq!(show(b"caf\xe9.txt"), "caf\\xe9.txt");
        assert_eq!(show_quoted(b"\xff"), "\"\\xff\"");
        assert_eq!(display(b"caf\xc3\xa9"), "caf\u{e9}");
        assert_eq!(display(b"caf\xe9"), "caf\\xe9");
    }

    #[test]
    fn the_error_message_is_readable() {
        let e = split(b"rsync --server . x; id").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unquoted ';' at position 19: shell syntax is not allowed"
        );
        let e = split(b"rsync\n").unwrap_err();
        assert_eq!(e.to_string(), "LF (newline) at position 6 is not allowed");
    }
}
