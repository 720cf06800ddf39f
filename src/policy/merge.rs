//! From the texts of the main file and its drop-ins to one [`Config`]: every section of
//! every file checked key by key (all or nothing), each section defined in one file only.
//!
//! A file in the canonical shape is checked as it is scanned, each section's keys going
//! straight into its layer (no tree, no copy of the file's structure): that is the fast
//! path a connection takes. On any problem in a file the fast path undoes what it merged
//! from that file and the file is read again the careful way (sections collected, then
//! checked `[defaults]` first, then users, then groups), which finds and words the first
//! error exactly as it always has.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::collections::btree_map;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use crate::policy::keys::{suggestion, Layer, Origin, SetError};
use crate::policy::read::{
    line_col, read_any, read_canonical, scan, Ctx, Declined, Entry, Item, Kind, Shown, Sink,
};
use crate::policy::{Config, ConfigError, DEFAULT_CONFIG};

impl Config {
    /// Validate text as if it came from `path` (no file-system access, no drop-ins).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_files(&[(path, text)])
    }

    /// Validate and merge files given as `(path, text)`, the main file first, then the
    /// drop-ins in merge order (no file-system access). Every section of every file is
    /// validated, whoever connects. Each file needs `version = 1`; `[defaults]` may be
    /// defined in one file only, and each `[users.U]` and `[groups.G]` in one file only
    /// (the error names both places): a policy never depends on the order of two files.
    pub fn parse_files<P: AsRef<Path>, T: AsRef<str>>(
        files: &[(P, T)],
    ) -> Result<Config, ConfigError> {
        Config::parse_files_with(files, true)
    }

    /// [`Config::parse_files`]; `canonical_first: false` reads every file through
    /// [`read_any`] only (for the test that the readers agree).
    pub(crate) fn parse_files_with<P: AsRef<Path>, T: AsRef<str>>(
        files: &[(P, T)],
        canonical_first: bool,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::empty(files);
        for index in 0..files.len() {
            cfg.merge_file(index, files, canonical_first)?;
        }
        Ok(cfg)
    }

    /// [`Config::parse_files`] for one connection: every file is read and every section
    /// of every file checked exactly as there (all or nothing; a section defined twice is
    /// still an error), but only `[defaults]`, `[users.<user>]` and the sections of
    /// `groups` are kept — what [`Config::policy_for`] of this user and these groups
    /// reads, so it gives the same policy. Any error, and any file not in the canonical
    /// shape, makes it [`Config::parse_files`] of everything (which then keeps every
    /// section), so an error reads exactly as there.
    pub fn parse_files_for<P: AsRef<Path>, T: AsRef<str>>(
        files: &[(P, T)],
        user: &str,
        groups: &[String],
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::empty(files);
        let mut only = Only {
            user,
            groups,
            users: Names::default(),
            group_names: Names::default(),
        };
        for (index, (path, text)) in files.iter().enumerate() {
            let ctx = Ctx {
                path: path.as_ref(),
                text: text.as_ref(),
            };
            let mut direct = Direct {
                cfg: &mut cfg,
                ctx: &ctx,
                file: index,
                open: None,
                only: Some(&mut only),
            };
            if scan(ctx.text, &mut direct).and_then(|()| direct.close()) != Ok(()) {
                return Config::parse_files(files);
            }
        }
        Ok(cfg)
    }

    fn empty<P: AsRef<Path>, T: AsRef<str>>(files: &[(P, T)]) -> Config {
        Config {
            path: files.first().map_or_else(
                || PathBuf::from(DEFAULT_CONFIG),
                |f| f.0.as_ref().to_path_buf(),
            ),
            files: files.iter().map(|f| f.0.as_ref().to_path_buf()).collect(),
            defaults: None,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// `file:line:col` of where a section was defined.
    fn place<P: AsRef<Path>, T: AsRef<str>>(files: &[(P, T)], at: Origin) -> String {
        let (path, text) = (files[at.file].0.as_ref(), files[at.file].1.as_ref());
        let (line, col) = line_col(text, at.offset);
        format!("{}:{line}:{col}", path.display())
    }

    fn merge_file<P: AsRef<Path>, T: AsRef<str>>(
        &mut self,
        index: usize,
        files: &[(P, T)],
        canonical_first: bool,
    ) -> Result<(), ConfigError> {
        let ctx = Ctx {
            path: files[index].0.as_ref(),
            text: files[index].1.as_ref(),
        };
        if canonical_first {
            let mut direct = Direct {
                cfg: self,
                ctx: &ctx,
                file: index,
                open: None,
                only: None,
            };
            if scan(ctx.text, &mut direct).and_then(|()| direct.close()) == Ok(()) {
                return Ok(());
            }
            self.forget_file(index);
        }
        let canonical = canonical_first.then(|| read_canonical(ctx.text)).flatten();
        let sections = match canonical {
            Some(s) => s,
            None => read_any(&ctx)?,
        };
        let at = |offset| Origin {
            file: index,
            offset,
        };
        if let Some(d) = sections.defaults {
            if let Some(first) = self.defaults.as_ref().and_then(|d| d.origin) {
                return Err(ctx.err(
                    d.at,
                    format!(
                        "[defaults] is already defined at {} (it may appear in one file only)",
                        Config::place(files, first)
                    ),
                ));
            }
            let mut layer = checked_layer(&ctx, &d.entries, Shown("defaults", None))?;
            layer.origin = Some(at(d.at));
            self.defaults = Some(layer);
        }
        for (kind, list) in [("users", sections.users), ("groups", sections.groups)] {
            let layers = if kind == "users" {
                &mut self.users
            } else {
                &mut self.groups
            };
            for s in list {
                let shown = Shown(kind, Some(&s.name));
                let mut layer = checked_layer(&ctx, &s.entries, shown)?;
                layer.origin = Some(at(s.at));
                match layers.entry(s.name.into_owned()) {
                    btree_map::Entry::Vacant(v) => {
                        v.insert(layer);
                    }
                    btree_map::Entry::Occupied(o) => {
                        let first = o.get().origin.map_or_else(String::new, |first| {
                            format!(" at {}", Config::place(files, first))
                        });
                        return Err(ctx.err(
                            s.at,
                            format!(
                                "[{kind}.{}] is already defined{first} (a section may be defined in one file only)",
                                o.key()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Undo what the fast path merged from file `index` before it gave up.
    fn forget_file(&mut self, index: usize) {
        let kept = |layer: &Layer| layer.origin.is_none_or(|o| o.file != index);
        self.users.retain(|_, l| kept(l));
        self.groups.retain(|_, l| kept(l));
        if self.defaults.as_ref().is_some_and(|d| !kept(d)) {
            self.defaults = None;
        }
    }
}

/// One section as a layer; every key checked, the first error returned.
fn checked_layer(ctx: &Ctx, entries: &[Entry], section: Shown) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for Entry { key, key_at, value } in entries {
        match layer.set(key, value, ctx, section) {
            Ok(()) => {}
            Err(SetError::Invalid(e)) => return Err(e),
            Err(SetError::Unknown) => {
                let hint =
                    suggestion(key).map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
                return Err(ctx.err(
                    *key_at,
                    format!(
                        "unknown field `{key}` in {section}{hint}; rshell.toml(5) lists the keys"
                    ),
                ));
            }
            // Both readers refuse a key set twice before a section gets here.
            Err(SetError::Duplicate) => {
                return Err(ctx.err(*key_at, format!("duplicate key `{key}` in {section}")))
            }
        }
    }
    Ok(layer)
}

/// The fast path's sink: checks each entry into the layer of the section being read and
/// merges that layer into the config when the next section starts. Declines at the first
/// problem of any kind; the careful path then says what it is.
struct Direct<'c, 'k, 'i> {
    cfg: &'c mut Config,
    ctx: &'c Ctx<'c>,
    file: usize,
    open: Option<Open<'i>>,
    /// For one connection: which sections to keep, and the names of all seen so far.
    only: Option<&'c mut Only<'k>>,
}

/// The section being read.
struct Open<'i> {
    kind: Kind,
    name: Cow<'i, str>,
    layer: Layer,
    /// Checked but not kept (another user's or group's section).
    drop: bool,
}

/// The sections one connection keeps, and every `[users.*]` and `[groups.*]` section
/// seen: a name seen twice is an error.
struct Only<'k> {
    user: &'k str,
    groups: &'k [String],
    users: Names,
    group_names: Names,
}

/// The section names seen, as 64-bit hashes: no copy of any name is kept. Two names with
/// the same hash look like one section defined twice, which only sends the load down the
/// careful path, and that compares the names themselves.
type Names = HashSet<u64, BuildHasherDefault<Prehashed>>;

/// A name's hash: eight bytes at a time, a multiply and a rotate per word (rustc's
/// FxHash), then MurmurHash3's finalizer so that every bit depends on every byte. The
/// names are the administrator's, so no defence against chosen collisions is needed.
fn name_hash(name: &str) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = name.len() as u64;
    for chunk in name.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hasher of a set of hashes: the key is its own hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Direct<'_, '_, '_> {
    /// Merge the section being read.
    fn close(&mut self) -> Result<(), Declined> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if open.drop {
            return Ok(());
        }
        let layers = match open.kind {
            Kind::Defaults if self.cfg.defaults.is_some() => return Err(Declined),
            Kind::Defaults => {
                self.cfg.defaults = Some(open.layer);
                return Ok(());
            }
            Kind::Users => &mut self.cfg.users,
            Kind::Groups => &mut self.cfg.groups,
        };
        match layers.entry(open.name.into_owned()) {
            btree_map::Entry::Vacant(v) => {
                v.insert(open.layer);
                Ok(())
            }
            btree_map::Entry::Occupied(_) => Err(Declined),
        }
    }
}

impl<'i> Sink<'i> for Direct<'_, '_, 'i> {
    fn section(&mut self, kind: Kind, name: Cow<'i, str>, at: usize) -> Result<(), Declined> {
        self.close()?;
        let mut drop = false;
        if let Some(only) = self.only.as_deref_mut() {
            let (seen, keep) = match kind {
                Kind::Defaults => (None, true),
                Kind::Users => (Some(&mut only.users), name == only.user),
                Kind::Groups => (
                    Some(&mut only.group_names),
                    only.groups.iter().any(|g| *g == name),
                ),
            };
            if let Some(seen) = seen {
                if !seen.insert(name_hash(&name)) {
                    return Err(Declined);
                }
            }
            drop = !keep;
        }
        let layer = Layer {
            origin: Some(Origin {
                file: self.file,
                offset: at,
            }),
            ..Layer::default()
        };
        self.open = Some(Open {
            kind,
            name,
            layer,
            drop,
        });
        Ok(())
    }

    fn entry(
        &mut self,
        key: Cow<'i, str>,
        _key_at: usize,
        value: Item<'i>,
    ) -> Result<(), Declined> {
        let Some(open) = &mut self.open else {
            return Err(Declined);
        };
        let name = (open.kind != Kind::Defaults).then_some(&*open.name);
        let section = Shown(open.kind.word(), name);
        open.layer
            .set(&key, &value, self.ctx, section)
            .map_err(|_| Declined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(files: &[(&str, &str)]) -> (Result<Config, ConfigError>, Result<Config, ConfigError>) {
        (
            Config::parse_files_with(files, true),
            Config::parse_files_with(files, false),
        )
    }

    /// The fast path gives up on a file half-way (a shape only toml reads): what it had
    /// merged from that file is undone, and the file is read again in full.
    #[test]
    fn a_file_the_scanner_declines_half_way_is_read_again_from_scratch() {
        let files = [
            ("/etc/rshell.toml", "version = 1\n[users.a]\nlock = false\n"),
            (
                "/etc/rshell.d/1.toml",
                "version = 1\n[defaults]\nroot = \"/d\"\n[users.b]\nlock = true\n[users.c]\nx = { y = 1 }\n",
            ),
        ];
        let err = Config::parse_files(&files).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `x` in [users.c]"),
            "{err}"
        );
        let files = [
            files[0],
            (
                "/etc/rshell.d/1.toml",
                "version = 1\n[defaults]\nroot = \"/d\"\n[users.b]\nlock = true\n[groups]\ng = { lock = true }\n",
            ),
        ];
        let (fast, careful) = both(&files);
        let cfg = fast.unwrap();
        assert_eq!(Ok(&cfg), careful.as_ref());
        assert_eq!(cfg.users.len(), 2);
        assert_eq!(cfg.groups["g"].lock, Some(true));
        assert_eq!(cfg.defaults.unwrap().root.as_deref(), Some("/d"));
    }

    /// One connection's load keeps its own sections only, but checks everyone's.
    #[test]
    fn a_connection_keeps_its_sections_and_checks_all_the_others() {
        let files = [
            (
                "/etc/rshell.toml",
                "version = 1\n[defaults]\nlock = false\n[groups.g]\nroot = \"/g\"\n[groups.h]\n",
            ),
            (
                "/etc/rshell.d/1.toml",
                "version = 1\n[users.a]\naccess = \"read-only\"\n[users.b]\n",
            ),
        ];
        let groups = ["g".to_string()];
        let one = Config::parse_files_for(&files, "a", &groups).unwrap();
        assert_eq!(one.users.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(one.groups.keys().collect::<Vec<_>>(), ["g"]);
        assert_eq!(one.files.len(), 2);
        let full = Config::parse_files(&files).unwrap();
        assert_eq!(
            one.policy_for("a", &groups).unwrap(),
            full.policy_for("a", &groups).unwrap()
        );
        // Someone else's bad value, or someone else's section twice, refuses everyone.
        let bad = [
            files[0],
            (
                "/etc/rshell.d/1.toml",
                "version = 1\n[users.b]\numask = \"8\"\n",
            ),
        ];
        let err = Config::parse_files_for(&bad, "a", &groups).unwrap_err();
        assert_eq!(err, Config::parse_files(&bad).unwrap_err());
        let twice = [
            files[0],
            ("/etc/rshell.d/1.toml", "version = 1\n[groups.h]\n"),
        ];
        let err = Config::parse_files_for(&twice, "a", &groups).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.d/1.toml:2:9: [groups.h] is already defined at /etc/rshell.toml:6:9 (a section may be defined in one file only)"
        );
    }

    /// With several errors in a file the one reported is the same as before the fast
    /// path: `[defaults]` first, then the users in file order, then the groups.
    #[test]
    fn of_several_errors_the_first_in_the_usual_order_is_reported() {
        let text = "version = 1\n[groups.g]\nlock = 1\n[users.a]\nroot = \"/a\"\n[users.b]\numask = \"9\"\nbogus = 2\n[defaults]\ntimeout = -1\n";
        let err = Config::parse(Path::new("/etc/rshell.toml"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.toml:10:11: [defaults]: `timeout` must be a number of seconds from 0 (never) to 604800, got -1"
        );
        let text = text.replace("timeout = -1", "timeout = 1");
        let err = Config::parse(Path::new("/etc/rshell.toml"), &text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rshell.toml:7:9: [users.b]: `umask` must be an octal string like \"0077\", got \"9\""
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(500)
        ))]
        /// Whole configs, with and without the canonical reader: the same Config, or
        /// both an error (a section defined twice in one file is toml's error through
        /// read_any, the merge's through read_canonical: both refuse).
        #[test]
        fn both_readers_give_the_same_config(lines in proptest::collection::vec(
            proptest::sample::select(vec![
                "version = 1", "version = 2", "[defaults]", "[users.a]", "[users.b]",
                "[users.\"a\"]", "[groups.g]", "[groups.'g']", "[users]", "[users.a.b]",
                "[[users.a]]", "root = \"/x\"", "root = '/y'", "root = \"/x\\u0041\"",
                "root = \"rel\"", "access = \"read-only\"", "access = \"bogus\"",
                "lock = true", "lock = false", "lock = \"no\"", "timeout = 0x10",
                "timeout = 1_000", "timeout = 99999999999999999999", "timeout = 1.5",
                "umask = \"0027\"", "from = [\"10.0.0.0/8\", \"::1/128\"]",
                "from = [\n\"10.0.0.0/8\", # c\n]", "from = [[\"x\"]]", "from = []",
                "x.y = 1", "users.c.root = \"/z\"", "a = { root = \"/i\" }",
                "defaults = 1", "# comment", "", "root = \"\"\"/m\"\"\"",
                "rsync = \"/usr/bin/rsync\" # c", "[defaults", "bogus = 1",
                // A `[` starting a line inside an array or a multi-line string.
                "from = [\n[\"10.0.0.0/8\"],\n]", "root = \"\"\"\n[users.z]\n\"\"\"",
                "from = [\n\"10.0.0.0/8\"\n", "a = {\n[users.y]", "  [users.c]",
            ]),
            0..12,
        ), split in 0..13usize) {
            // The lines over a main file and a drop-in.
            let split = split.min(lines.len());
            let main = lines[..split].join("\n") + "\n";
            let dropin = lines[split..].join("\n") + "\n";
            let files = [
                ("/etc/rshell.toml", main.as_str()),
                ("/etc/rshell.d/a.toml", dropin.as_str()),
            ];
            let fast = Config::parse_files_with(&files, true);
            let slow = Config::parse_files_with(&files, false);
            match (&fast, &slow) {
                (Ok(f), Ok(s)) => proptest::prop_assert_eq!(f, s, "{:?}", files),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "{:?}: {:?} vs {:?}", files, fast, slow),
            }
            // One connection's load: the same verdict, error and policy.
            let groups = ["g".to_string()];
            let one = Config::parse_files_for(&files, "a", &groups);
            match (&fast, &one) {
                (Ok(f), Ok(o)) => proptest::prop_assert_eq!(
                    f.policy_for("a", &groups),
                    o.policy_for("a", &groups),
                    "{:?}", files
                ),
                (Err(f), Err(o)) => proptest::prop_assert_eq!(f, o, "{:?}", files),
                _ => proptest::prop_assert!(false, "{:?}: {:?} vs {:?}", files, fast, one),
            }
        }
    }
}
