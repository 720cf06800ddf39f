#!/usr/bin/env bash
# Every test of rshell, in one command (the README's test command; CI runs exactly this):
#   1. cargo fmt --check and cargo clippy (all targets, warnings are errors);
#   2. the static release build;
#   3. cargo test: unit tables, the labelled corpus, the attack catalogue, and — run against
#      that static binary — CLI tests, login-shell/forced-key tests in a private mount
#      namespace, real-rsync and Landlock tests; then the static checks (LD_PRELOAD,
#      LD_AUDIT and NSS modules never run in rshell);
#   4. the end-to-end suite through a private sshd on 127.0.0.1 with real accounts, rsync
#      and rsnapshot, twice (the machine's rsync, then Debian 12's 3.2.7 as the server's);
#      the path differential (tests/paths.rs) again with that 3.2.7 as the server's rsync;
#      the load and fault suite (50 concurrent clients, killed clients and
#      servers, a full file system, a missing or stalled syslog, a replaced policy, ...);
#      and the Debian package build/install/purge check.
# Nothing is skipped: a suite or test that cannot run here (not root, no Landlock, a
# missing package) fails, so a green run means everything ran.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
target=x86_64-unknown-linux-gnu
bin="$PWD/target/$target/release/rshell"
passed=0 failed=0 failures=()
if [ -n "${RSHELL_ALLOW_SKIP:-}" ]; then
  # It lets single tests skip during a developer's partial `cargo test`; this is the full run.
  echo "note: RSHELL_ALLOW_SKIP is ignored here: tests that cannot run fail"
  unset RSHELL_ALLOW_SKIP
fi

suite() {
  local name=$1; shift
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    echo "=== $name: ok ($((SECONDS - start)) s)"; passed=$((passed + 1))
  else
    echo "=== $name: FAILED ($((SECONDS - start)) s)"; failed=$((failed + 1)); failures+=("$name")
  fi
}

suite "cargo fmt --check" cargo fmt --check
suite "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
suite "static release build" env RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked --target "$target"
# The mode tests (login shell, forced keys, real rsync, CLI) run the static binary that ships.
if [ -x "$bin" ]; then
  suite "cargo test" env RSHELL_TEST_BIN="$bin" cargo test --locked
else
  suite "cargo test" cargo test --locked
fi
suite "static binary checks" tests/static.sh "$bin"
if [ "$(id -u)" -eq 0 ]; then
  suite "end-to-end (private sshd)" tests/e2e/run.sh "$bin"
  # Debian 12 main / Ubuntu ship rsync 3.2.7 (no --confine-root, no --drop-D): the same
  # scenarios with that server rsync, from the apt sources.
  suite "end-to-end (rsync 3.2.7)" env E2E_SERVER_RSYNC=3.2.7 tests/e2e/run.sh "$bin"
  # The path differential again with that rsync: no --confine-root, no 3.5.0 refusals.
  suite "path differential (rsync 3.2.7)" sh -c 'd=$(mktemp -d /usr/local/lib/rshell-paths.XXXXXX) &&
    chmod 0755 "$d" && trap "rm -rf $d" EXIT && tests/old-rsync.sh 3.2.7 "$d/rsync" &&
    RSHELL_TEST_BIN="$1" RSHELL_PATHS_SERVER_RSYNC="$d/rsync" cargo test --locked --test paths' sh "$bin"
  suite "end-to-end load and faults" tests/e2e/load.sh "$bin"
  suite "debian package" tests/deb.sh
else
  # Not run is not passed: these count as failed.
  suite "end-to-end (private sshd)" sh -c 'echo "needs root (creates accounts, runs sshd)"; false'
  suite "end-to-end (rsync 3.2.7)" sh -c 'echo "needs root (creates accounts, runs sshd)"; false'
  suite "path differential (rsync 3.2.7)" sh -c 'echo "needs root (installs an rsync, traces it)"; false'
  suite "end-to-end load and faults" sh -c 'echo "needs root (creates accounts, runs sshd)"; false'
  suite "debian package" sh -c 'echo "needs root (installs and purges the package)"; false'
fi

[ ${#failures[@]} -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
