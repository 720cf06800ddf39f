#!/usr/bin/env bash
# The release binary is static, so the dynamic loader never honours LD_PRELOAD, LD_AUDIT
# or LD_LIBRARY_PATH (issue 3): an uploaded library named in ~/.pam_environment never runs
# in rshell. Twin: the same library does run in a dynamically linked program, so the test
# can tell the difference.
# usage: tests/static.sh STATIC_BINARY
set -euo pipefail
bin=${1:?usage: tests/static.sh STATIC_BINARY}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }

if file -L "$bin" | grep -Eq 'static(-pie)? linked|statically linked'; then ok "static executable: $(file -L "$bin" | cut -d, -f1-4)"; else bad "not static: $(file -L "$bin")"; fi
if readelf -l "$bin" | grep -q 'INTERP'; then bad "has a PT_INTERP (dynamic loader) segment"; else ok "no PT_INTERP segment: no dynamic loader runs"; fi

cat > "$work/evil.c" <<C
#include <stdio.h>
__attribute__((constructor)) static void pwn(void) { FILE *f = fopen("$work/marker", "w"); if (f) { fputs("pwned", f); fclose(f); } }
C
cc -shared -fPIC -o "$work/evil.so" "$work/evil.c"

for var in LD_PRELOAD LD_AUDIT; do
  rm -f "$work/marker"
  env -i "$var=$work/evil.so" LD_LIBRARY_PATH="$work" "$bin" --version 2>/dev/null || true
  env -i "$var=$work/evil.so" SSH_ORIGINAL_COMMAND=true "$bin" -ro "$work" 2>/dev/null || true
  if [ -e "$work/marker" ]; then bad "$var library ran inside rshell"; else ok "$var library ignored by rshell"; fi
done
# NSS: a static glibc would still dlopen() the modules of /etc/nsswitch.conf for
# getpwuid/getgrouplist, honouring LD_LIBRARY_PATH. rshell reads /etc/passwd itself.
for lib in libnss_systemd.so.2 libnss_files.so.2 libnss_compat.so.2 libnss_sss.so.2 libnss_ldap.so.2; do
  cp "$work/evil.so" "$work/$lib"
done
rm -f "$work/marker"
env -i LD_LIBRARY_PATH="$work" "$bin" --test "rsync --server . x" --user root --config /nonexistent >/dev/null 2>&1 || true
env -i LD_LIBRARY_PATH="$work" SSH_ORIGINAL_COMMAND=true "$bin" -ro "$work" 2>/dev/null || true
if [ -e "$work/marker" ]; then bad "an NSS module from LD_LIBRARY_PATH ran inside rshell"; else ok "no NSS module is ever loaded (LD_LIBRARY_PATH ignored)"; fi
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  # Identity lookup, then a config error (78) for the missing file: never a crash (>= 128).
  rc=0; env -i setpriv --reuid=nobody --regid=nogroup --clear-groups "$bin" --test "rsync --server . x" --config /nonexistent >/dev/null 2>&1 || rc=$?
  if [ "$rc" -eq 78 ]; then ok "runs as an unprivileged user (identity from /etc/passwd, no NSS crash)"; else bad "exit $rc as an unprivileged user"; fi
fi
rm -f "$work/marker"
env -i LD_PRELOAD="$work/evil.so" /bin/true
if [ -e "$work/marker" ]; then ok "twin: the same LD_PRELOAD library does run in a dynamic program"; else bad "twin: the test library never runs, so the test proves nothing"; fi

echo "static: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
