#!/usr/bin/env bash
# rshell's own start-to-exec cost (issue 7), compared with /bin/true and Debian's rrsync.
#
#   tests/bench/overhead.sh BINARY [ITERATIONS]     (as root; builds nothing; default 300)
#
# A tiny C harness (compiled here with cc into a temp dir) fork/execs each variant with a
# fixed environment, stdin from /dev/null, stdout/stderr to /dev/null, waits with wait4
# and records wall time (CLOCK_MONOTONIC) and max resident set size. Variants run
# interleaved (round-robin, rotating start) so drift hits them all alike. rshell runs in
# standalone forced-command mode with `rsync = "/bin/true"` (e2e-notes: "measure a
# wrapper's start-up by pointing the configured rsync at /bin/true"), so a run is the
# whole pipeline — config checks and parse, passwd lookup, split, parse, decide, root
# lock, syslog record, Landlock (when on), exec — minus rsync itself.
# The harness runs in a private mount namespace with its own datagram socket bind-mounted
# over /dev/log (a placeholder /dev/log is created only if absent, removed on exit), so the
# syslog records cost what they cost on a real server; it counts the records it received.
set -euo pipefail

bin=${1:?usage: $0 BINARY [ITERATIONS]}
iterations=${2:-300}
bin=$(readlink -f "$bin")
[ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (the config must be root-owned; /dev/log is bind-mounted)" >&2; exit 2; }
command -v cc >/dev/null || { echo "needs cc" >&2; exit 2; }
rrsync=/usr/bin/rrsync
[ -x "$rrsync" ] || { echo "note: $rrsync missing (apt-get install rsync): rrsync variant skipped" >&2; rrsync=; }

# Not under /tmp: a trusted config needs directories that are root's alone up to /.
tmp=$(mktemp -d /run/rshell-overhead.XXXXXX)
chmod 755 "$tmp"
devlog_placeholder=
cleanup() {
  [ -n "$devlog_placeholder" ] && rm -f /dev/log
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ ! -e /dev/log ]; then
  : > /dev/log
  devlog_placeholder=1
fi

mkdir -p "$tmp/root/dest" "$tmp/etc"
chmod 755 "$tmp/etc"
for confine in auto off; do
  for log in true false; do
    cat > "$tmp/etc/$confine-$log.toml" <<EOF
version = 1
[defaults]
rsync = "/bin/true"
confine = "$confine"
log_outcome = $log
EOF
    chmod 644 "$tmp/etc/$confine-$log.toml"
  done
done

cat > "$tmp/harness.c" <<'EOF'
/* harness ITER LOGSOCK  NAME [K=V...] -- PROG ARGS... [:: NAME ...]
 * Interleaved fork/exec/wait4 timing; prints one line per variant:
 * name median_us p10_us p90_us mean_us maxrss_kb_median failures */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct { char *name; char **env; char **argv; double *us; long *rss; int fails; } variant;

static int cmp_d(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }
static int cmp_l(const void *a, const void *b) { long x = *(long *)a, y = *(long *)b; return (x > y) - (x < y); }
static long drained;
static void drain(int s) { char buf[4096]; while (s >= 0 && recv(s, buf, sizeof buf, MSG_DONTWAIT) >= 0) drained++; }

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage\n"); return 2; }
  int iter = atoi(argv[1]);
  const char *logsock = argv[2];
  variant v[32]; int nv = 0;
  for (int i = 3; i < argc && nv < 32;) {
    variant *x = &v[nv++];
    x->name = argv[i++];
    x->env = &argv[i];
    while (i < argc && strcmp(argv[i], "--")) i++;
    if (i >= argc) { fprintf(stderr, "missing -- for %s\n", x->name); return 2; }
    argv[i++] = NULL;
    x->argv = &argv[i];
    while (i < argc && strcmp(argv[i], "::")) i++;
    if (i < argc) argv[i++] = NULL;
    x->us = calloc(iter, sizeof(double)); x->rss = calloc(iter, sizeof(long)); x->fails = 0;
  }
  int s = -1;
  if (strcmp(logsock, "-")) {
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, logsock, sizeof a.sun_path - 1);
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || mount(logsock, "/dev/log", NULL, MS_BIND, NULL)) {
      perror("log socket / bind mount over /dev/log"); return 2;
    }
    int big = 1 << 20; setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }
  int devnull = open("/dev/null", O_RDWR);
  for (int r = 0; r < iter; r++) {
    for (int k = 0; k < nv; k++) {
      variant *x = &v[(k + r) % nv];
      struct timespec t0, t1; struct rusage ru; int st;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      pid_t pid = fork();
      if (pid == 0) {
        dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2);
        execve(x->argv[0], x->argv, x->env);
        _exit(127);
      }
      if (pid < 0 || wait4(pid, &st, 0, &ru) < 0) { perror("fork/wait"); return 1; }
      clock_gettime(CLOCK_MONOTONIC, &t1);
      x->us[r] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
      x->rss[r] = ru.ru_maxrss;
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) x->fails++;
      drain(s);
    }
  }
  for (int k = 0; k < nv; k++) {
    variant *x = &v[k]; double sum = 0;
    for (int r = 0; r < iter; r++) sum += x->us[r];
    qsort(x->us, iter, sizeof(double), cmp_d); qsort(x->rss, iter, sizeof(long), cmp_l);
    printf("%s %.1f %.1f %.1f %.1f %ld %d\n", x->name, x->us[iter / 2], x->us[iter / 10], x->us[iter * 9 / 10],
           sum / iter, x->rss[iter / 2], x->fails);
  }
  printf("syslog-records %ld\n", drained);
  return 0;
}
EOF
cc -O2 -o "$tmp/harness" "$tmp/harness.c"

push='rsync --server -logDtpre.iLsfxCIvu . dest/'
env_base=(PATH=/usr/bin:/bin HOME=/root USER=root LOGNAME=root "SSH_CONNECTION=127.0.0.1 50000 127.0.0.1 22")
variants=(
  true "${env_base[@]}" -- /bin/true ::
  rshell-auto-log "${env_base[@]}" "SSH_ORIGINAL_COMMAND=$push" -- "$bin" --config "$tmp/etc/auto-true.toml" "$tmp/root" ::
  rshell-auto-nolog "${env_base[@]}" "SSH_ORIGINAL_COMMAND=$push" -- "$bin" --config "$tmp/etc/auto-false.toml" "$tmp/root" ::
  rshell-off-log "${env_base[@]}" "SSH_ORIGINAL_COMMAND=$push" -- "$bin" --config "$tmp/etc/off-true.toml" "$tmp/root" ::
  rshell-off-nolog "${env_base[@]}" "SSH_ORIGINAL_COMMAND=$push" -- "$bin" --config "$tmp/etc/off-false.toml" "$tmp/root" ::
  rshell-probe "${env_base[@]}" "SSH_ORIGINAL_COMMAND=true" -- "$bin" --config "$tmp/etc/off-false.toml" "$tmp/root"
)
[ -n "$rrsync" ] && variants+=(:: rrsync-probe "${env_base[@]}" "SSH_ORIGINAL_COMMAND=true" -- "$rrsync" "$tmp/root")

# Sanity: every rshell variant must really be allowed (exit 0), not refused quickly.
for cfg in auto-true off-false; do
  if ! env -i "${env_base[@]}" "SSH_ORIGINAL_COMMAND=$push" "$bin" --config "$tmp/etc/$cfg.toml" "$tmp/root" </dev/null >/dev/null 2>"$tmp/err"; then
    echo "rshell refused the benchmark request ($cfg):" >&2; cat "$tmp/err" >&2; exit 1
  fi
done

echo "running $iterations interleaved iterations of each variant..." >&2
unshare -m --propagation private "$tmp/harness" "$iterations" "$tmp/log" "${variants[@]}" > "$tmp/results"

median() { awk -v n="$1" '$1 == n { print $2 }' "$tmp/results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "host: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
echo "binary: $bin"
echo "  size: $(stat -c %s "$bin") bytes ($(( $(stat -c %s "$bin") / 1024 )) KiB); $(file -b "$bin" | cut -d, -f1-2,5)"
if command -v strip >/dev/null; then
  cp "$bin" "$tmp/stripped" && strip "$tmp/stripped" && echo "  stripped: $(stat -c %s "$tmp/stripped") bytes"
fi
echo "LSMs: $(cat /sys/kernel/security/lsm 2>/dev/null || echo unknown)"
echo
printf '%-20s %10s %10s %10s %10s %12s %6s\n' variant median_us p10_us p90_us mean_us maxrss_KiB fails
grep -v '^syslog-records' "$tmp/results" | while read -r name med p10 p90 mean rss fails; do
  printf '%-20s %10s %10s %10s %10s %12s %6s\n' "$name" "$med" "$p10" "$p90" "$mean" "$rss" "$fails"
done
echo "$(awk '/^syslog-records/ { print $2 }' "$tmp/results") syslog records received over the private /dev/log"

t=$(median true)
echo
echo "=== summary (medians of $iterations interleaved runs)"
echo "/bin/true alone:                      $t µs"
for v in rshell-auto-log rshell-auto-nolog rshell-off-log rshell-off-nolog rshell-probe; do
  m=$(median "$v")
  printf '%-37s %s µs  (%sx /bin/true, +%s µs)\n' "$v:" "$m" "$(ratio "$m" "$t")" "$(awk -v a="$m" -v b="$t" 'BEGIN { printf "%.0f", a - b }')"
done
if [ -n "$rrsync" ]; then
  r=$(median rrsync-probe)
  printf '%-37s %s µs  (%sx /bin/true)\n' "rrsync-probe (python3):" "$r" "$(ratio "$r" "$t")"
  echo "rrsync-probe / rshell-probe:          $(ratio "$r" "$(median rshell-probe)")x"
  echo "rrsync-probe / rshell-auto-log (full): $(ratio "$r" "$(median rshell-auto-log)")x"
fi
echo "max RSS (median, KiB): rshell $(awk '$1 == "rshell-auto-log" { print $6 }' "$tmp/results"), /bin/true $(awk '$1 == "true" { print $6 }' "$tmp/results")${rrsync:+, rrsync $(awk '$1 == "rrsync-probe" { print $6 }' "$tmp/results")}"
fails=$(awk '$1 != "syslog-records" { s += $7 } END { print s + 0 }' "$tmp/results")
[ "$fails" -eq 0 ] || { echo "WARNING: $fails runs exited non-zero" >&2; exit 1; }
