#!/usr/bin/env bash
# Fetch an older rsync from the apt sources (Debian 12 main and Ubuntu ship 3.2.7) and
# install its binary root-owned at DEST, so a test can point `rsync =` at it.
# usage: tests/old-rsync.sh VERSION DEST      (needs root, apt-get, dpkg-deb)
set -euo pipefail
want=${1:?usage: tests/old-rsync.sh VERSION DEST}
dest=${2:?usage: tests/old-rsync.sh VERSION DEST}
die() { printf 'old-rsync: %s\n' "$*" >&2; exit 2; }
for tool in apt-cache apt-get dpkg-deb ldd; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done
deb_version=$(apt-cache madison rsync | awk -v p="$want" '{ v = $3; if (index(v, p) == 1 && substr(v, length(p) + 1, 1) !~ /[0-9]/) { print v; exit } }')
[ -n "$deb_version" ] || die "no rsync $want in the apt sources (apt-cache madison rsync: $(apt-cache madison rsync | awk '{print $3}' | tr '\n' ' ')); run apt-get update first"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
(cd "$work" && apt-get download -q "rsync=$deb_version") >"$work/download.log" 2>&1 ||
  die "apt-get download rsync=$deb_version failed: $(tail -n 3 "$work/download.log")"
dpkg-deb -x "$work"/rsync_*.deb "$work/x" || die "dpkg-deb -x failed"
install -d -m 0755 -o root -g root "$(dirname "$dest")"
install -m 0755 -o root -g root "$work/x/usr/bin/rsync" "$dest"
! ldd "$dest" | grep -q 'not found' || die "rsync $deb_version lacks libraries: $(ldd "$dest" | grep 'not found' | tr '\n' ' ')"
line=$("$dest" --version 2>&1) || die "the unpacked rsync does not run: $line"
line=${line%%$'\n'*}
case "$line" in
  *"version $want "*) ;;
  *) die "the unpacked rsync is not $want: $line" ;;
esac
printf 'old-rsync: %s (Debian package %s) at %s\n' "$want" "$deb_version" "$dest"
