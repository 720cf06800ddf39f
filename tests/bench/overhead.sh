#!/usr/bin/env bash
# rshell's own start-to-exec cost (issues 7 and 13), compared with /bin/true and Debian's rrsync.
#
#   tests/bench/overhead.sh BINARY [ITERATIONS]     (as root; builds nothing; default 300)
#   BASELINE=OLD_BINARY tests/bench/overhead.sh BINARY [ITERATIONS]
#
# A tiny C harness (compiled here with cc into a temp dir) fork/execs each variant with a
# fixed environment, stdin and stdout from/to /dev/null, stderr into a pipe (for the
# start-to-exec stamp, below), waits with wait4
# and records wall time (CLOCK_MONOTONIC), CPU time (user + system, of the process and of
# what it waited for) and max resident set size. Variants run interleaved (round-robin,
# rotating start) so drift hits them all alike. rshell runs in standalone forced-command
# mode with `rsync = "/bin/true"` (a wrapper's start-up is measured by pointing the
# configured rsync at /bin/true), so a run is the whole pipeline — config checks and
# parse, passwd lookup, split, parse, decide, root lock, syslog record, Landlock (when on),
# exec — minus rsync itself. Variants:
#   auto/off       confine = "auto" (Landlock) or "off"
#   log/nolog      log_outcome; with either (the default idle timeout needs a parent too)
#                  rshell forks, waits for rsync (and records the outcome)
#   inplace        log_outcome = false, timeout = 0: rshell execs rsync in place, no fork
#   log-rsync      as auto-log, with `rsync` a no-op built here and shaped like Debian's
#                  rsync 3.5.0 for rshell's feature scan (rsync/version.rs: the `--version`
#                  string and option names in a 62 KB .rodata, 587 KB in all); /bin/true
#                  (35 KB, not rsync) does not show what reading the rsync binary costs;
#                  its overhead is reported against that no-op run alone
#   probe          the client's `true` connectivity probe (no exec)
#   inplace-rsync  as inplace, exec'ing the rsync-shaped no-op
#   wrapper-exec, wrapper-spawn
#                  a do-nothing static C wrapper that execs the rsync-shaped no-op in place,
#                  or starts it with vfork and waits: what any wrapper costs on this machine
# Start-to-exec: the rsync-shaped no-op writes a CLOCK_MONOTONIC stamp to stderr as it
# starts (a constructor); the harness reads it from a pipe, so the time from the harness's
# fork until the exec'd program runs is measured apart from that program's own run and exit
# (and from rshell's wait, outcome record and exit after it).
# With BASELINE set, every rshell variant also runs with that binary (`base-` prefix), in
# the same interleaved rounds: a before/after comparison that holds on a busy machine.
# The harness runs in a private mount namespace with its own datagram socket bind-mounted
# over /dev/log (a placeholder /dev/log is created only if absent, removed on exit), so the
# syslog records cost what they cost on a real server; it counts the records it received.
# The configs live in a fresh directory under /run (a trusted config needs directories that
# are root's alone up to /); /etc/rshell.toml is neither read nor touched.
set -euo pipefail

bin=${1:?usage: [BASELINE=OLD_BINARY] $0 BINARY [ITERATIONS]}
iterations=${2:-300}
bin=$(readlink -f "$bin")
[ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 2; }
base=${BASELINE:-}
if [ -n "$base" ]; then
  base=$(readlink -f "$base")
  [ -x "$base" ] || { echo "not executable: $base" >&2; exit 2; }
fi
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
config() { # NAME RSYNC CONFINE LOG_OUTCOME [EXTRA LINE]
  printf 'version = 1\n[defaults]\nrsync = "%s"\nconfine = "%s"\nlog_outcome = %s\n%s' \
    "$2" "$3" "$4" "${5:+$5
}" > "$tmp/etc/$1.toml"
  chmod 644 "$tmp/etc/$1.toml"
}
for confine in auto off; do
  for log in true false; do
    config "$confine-$log" /bin/true "$confine" "$log"
  done
  config "$confine-inplace" /bin/true "$confine" false 'timeout = 0'
done
config auto-true-rsync "$tmp/rsync-shaped" auto true
config auto-inplace-rsync "$tmp/rsync-shaped" auto false 'timeout = 0'

# A no-op shaped like Debian's rsync 3.5.0 for rshell's feature scan (rsync/version.rs).
# Its first act (a constructor, run once the loader has mapped it) writes CLOCK_MONOTONIC
# to stderr: the harness reads it from a pipe, which times start-to-exec.
cat > "$tmp/rsync-shaped.c" <<'EOF'
#include <stdio.h>
#include <time.h>
#include <unistd.h>
__attribute__((constructor)) static void stamp(void) {
  struct timespec t; char b[64];
  clock_gettime(CLOCK_MONOTONIC, &t);
  int n = snprintf(b, sizeof b, "S %ld %ld\n", (long)t.tv_sec, t.tv_nsec);
  if (write(2, b, n) < 0) _exit(3);
}
static const char *const volatile names[] = {"%s  version %s  protocol version %d%s",
                                             "confine-root", "no-drop-D", "delete-during"};
static const char rodata[61440] = {1};
char volatile data[512000] = {1};
int main(int argc, char **argv) { return names[0][0] == rodata[argc] + data[argc]; }
EOF
cc -O2 -o "$tmp/rsync-shaped" "$tmp/rsync-shaped.c"

# Two do-nothing wrappers, static like rshell: one execs its arguments in place, one starts
# them as a child (vfork, as rshell's spawn) and waits. What any wrapper costs on this
# machine: rshell's own work is what it adds beyond them.
cat > "$tmp/wrapper.c" <<'EOF'
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
  (void)argc;
  if (argv[1][0] == 'e') { execv(argv[2], argv + 2); return 127; }
  pid_t pid = vfork();
  if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) < 0) return 71;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}
EOF
cc -O2 -static -o "$tmp/wrapper" "$tmp/wrapper.c"

cat > "$tmp/harness.c" <<'EOF'
/* harness ITER LOGSOCK  NAME [K=V...] -- PROG ARGS... [:: NAME ...]
 * Interleaved fork/exec/wait4 timing; prints one line per variant:
 * name median_us p10_us p90_us mean_us maxrss_kb_median failures cpu_median_us s2e_median_us
 * s2e (start-to-exec): from fork to the stamp "S sec nsec" that the exec'd program writes
 * to its stderr (a pipe) as it starts; -1 when it wrote none (/bin/true). */
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

typedef struct { char *name; char **env; char **argv; double *us; double *cpu; long *rss; double *s2e; int ns2e; int fails; } variant;

static int cmp_d(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }
static int cmp_l(const void *a, const void *b) { long x = *(long *)a, y = *(long *)b; return (x > y) - (x < y); }
static long drained;
static void drain(int s) { char buf[4096]; while (s >= 0 && recv(s, buf, sizeof buf, MSG_DONTWAIT) >= 0) drained++; }

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage\n"); return 2; }
  int iter = atoi(argv[1]);
  const char *logsock = argv[2];
  variant v[64]; int nv = 0;
  for (int i = 3; i < argc && nv < 64;) {
    variant *x = &v[nv++];
    x->name = argv[i++];
    x->env = &argv[i];
    while (i < argc && strcmp(argv[i], "--")) i++;
    if (i >= argc) { fprintf(stderr, "missing -- for %s\n", x->name); return 2; }
    argv[i++] = NULL;
    x->argv = &argv[i];
    while (i < argc && strcmp(argv[i], "::")) i++;
    if (i < argc) argv[i++] = NULL;
    x->us = calloc(iter, sizeof(double)); x->cpu = calloc(iter, sizeof(double));
    x->rss = calloc(iter, sizeof(long)); x->s2e = calloc(iter, sizeof(double)); x->ns2e = 0; x->fails = 0;
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
      struct timespec t0, t1; struct rusage ru; int st; int err[2];
      if (pipe2(err, O_CLOEXEC)) { perror("pipe"); return 1; }
      clock_gettime(CLOCK_MONOTONIC, &t0);
      pid_t pid = fork();
      if (pid == 0) {
        dup2(devnull, 0); dup2(devnull, 1); dup2(err[1], 2);
        execve(x->argv[0], x->argv, x->env);
        _exit(127);
      }
      close(err[1]);
      if (pid < 0 || wait4(pid, &st, 0, &ru) < 0) { perror("fork/wait"); return 1; }
      clock_gettime(CLOCK_MONOTONIC, &t1);
      char eb[256]; ssize_t en = read(err[0], eb, sizeof eb - 1); long ss, sn;
      close(err[0]);
      if (en > 0) { eb[en] = 0; if (sscanf(eb, "S %ld %ld", &ss, &sn) == 2)
        x->s2e[x->ns2e++] = (ss - t0.tv_sec) * 1e6 + (sn - t0.tv_nsec) / 1e3; }
      x->us[r] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
      x->rss[r] = ru.ru_maxrss;
      x->cpu[r] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) x->fails++;
      drain(s);
    }
  }
  for (int k = 0; k < nv; k++) {
    variant *x = &v[k]; double sum = 0;
    for (int r = 0; r < iter; r++) sum += x->us[r];
    qsort(x->us, iter, sizeof(double), cmp_d); qsort(x->rss, iter, sizeof(long), cmp_l);
    qsort(x->cpu, iter, sizeof(double), cmp_d); qsort(x->s2e, x->ns2e, sizeof(double), cmp_d);
    printf("%s %.1f %.1f %.1f %.1f %ld %d %.0f %.1f\n", x->name, x->us[iter / 2], x->us[iter / 10], x->us[iter * 9 / 10],
           sum / iter, x->rss[iter / 2], x->fails, x->cpu[iter / 2], x->ns2e ? x->s2e[x->ns2e / 2] : -1.0);
  }
  printf("syslog-records %ld\n", drained);
  return 0;
}
EOF
cc -O2 -o "$tmp/harness" "$tmp/harness.c"

push='rsync --server -logDtpre.iLsfxCIvu . dest/'
env_base=(PATH=/usr/bin:/bin HOME=/root USER=root LOGNAME=root "SSH_CONNECTION=127.0.0.1 50000 127.0.0.1 22")
rshell_variants=( # name config command
  rshell-auto-log auto-true "$push"
  rshell-auto-nolog auto-false "$push"
  rshell-off-log off-true "$push"
  rshell-off-nolog off-false "$push"
  rshell-auto-inplace auto-inplace "$push"
  rshell-off-inplace off-inplace "$push"
  rshell-auto-log-rsync auto-true-rsync "$push"
  rshell-auto-inplace-rsync auto-inplace-rsync "$push"
  rshell-probe off-false true
)
variants=(true "${env_base[@]}" -- /bin/true :: rsync-shaped "${env_base[@]}" -- "$tmp/rsync-shaped"
  :: wrapper-exec "${env_base[@]}" -- "$tmp/wrapper" e "$tmp/rsync-shaped"
  :: wrapper-spawn "${env_base[@]}" -- "$tmp/wrapper" s "$tmp/rsync-shaped")
for prefix in "" ${base:+base-}; do
  exe=$bin
  [ -n "$prefix" ] && exe=$base
  for ((i = 0; i < ${#rshell_variants[@]}; i += 3)); do
    variants+=(:: "$prefix${rshell_variants[i]}" "${env_base[@]}" "SSH_ORIGINAL_COMMAND=${rshell_variants[i + 2]}"
      -- "$exe" --config "$tmp/etc/${rshell_variants[i + 1]}.toml" "$tmp/root")
  done
done
[ -n "$rrsync" ] && variants+=(:: rrsync-probe "${env_base[@]}" "SSH_ORIGINAL_COMMAND=true" -- "$rrsync" "$tmp/root")

# Sanity: every rshell variant must really be allowed (exit 0), not refused quickly.
for exe in "$bin" ${base:+"$base"}; do
  for cfg in auto-true off-false auto-inplace off-inplace auto-true-rsync auto-inplace-rsync; do
    if ! env -i "${env_base[@]}" "SSH_ORIGINAL_COMMAND=$push" "$exe" --config "$tmp/etc/$cfg.toml" "$tmp/root" </dev/null >/dev/null 2>"$tmp/err"; then
      echo "$exe refused the benchmark request ($cfg):" >&2; cat "$tmp/err" >&2; exit 1
    fi
  done
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "running $iterations interleaved iterations of each variant..." >&2
unshare -m --propagation private "$tmp/harness" "$iterations" "$tmp/log" "${variants[@]}" > "$tmp/results"

median() { awk -v n="$1" '$1 == n { print $2 }' "$tmp/results"; }
cpu() { awk -v n="$1" '$1 == n { print $8 }' "$tmp/results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f", a - b }'; }

echo
echo "host: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
echo "binary: $bin"
echo "  size: $(stat -c %s "$bin") bytes ($(( $(stat -c %s "$bin") / 1024 )) KiB); $(file -b "$bin" | cut -d, -f1-2,5)"
if command -v strip >/dev/null; then
  cp "$bin" "$tmp/stripped" && strip "$tmp/stripped" && echo "  stripped: $(stat -c %s "$tmp/stripped") bytes"
fi
[ -n "$base" ] && echo "baseline: $base ($(stat -c %s "$base") bytes)"
echo "LSMs: $(cat /sys/kernel/security/lsm 2>/dev/null || echo unknown)"
echo "load average before the run: $load"
echo
printf '%-26s %10s %10s %10s %10s %8s %12s %6s %8s\n' variant median_us p10_us p90_us mean_us cpu_us maxrss_KiB fails s2e_us
grep -v '^syslog-records' "$tmp/results" | while read -r name med p10 p90 mean rss fails cpu s2e; do
  printf '%-26s %10s %10s %10s %10s %8s %12s %6s %8s\n' "$name" "$med" "$p10" "$p90" "$mean" "$cpu" "$rss" "$fails" "$s2e"
done
echo "$(awk '/^syslog-records/ { print $2 }' "$tmp/results") syslog records received over the private /dev/log"

echo
echo "=== summary (medians of $iterations interleaved runs: wall time, and CPU time in brackets;"
echo "    each rshell variant against the program it execs: /bin/true, or the rsync-shaped no-op)"
echo "/bin/true alone:                       $(median true) µs  [cpu $(cpu true) µs]"
echo "rsync-shaped no-op alone:              $(median rsync-shaped) µs  [cpu $(cpu rsync-shaped) µs]"
for ((i = 0; i < ${#rshell_variants[@]}; i += 3)); do
  for prefix in "" ${base:+base-}; do
    v=$prefix${rshell_variants[i]}
    alone=true
    case ${rshell_variants[i]} in *-rsync) alone=rsync-shaped ;; esac
    m=$(median "$v")
    t=$(median "$alone")
    printf '%-38s %s µs  (%sx %s, %s µs)  [cpu %s µs]\n' "$v:" "$m" "$(ratio "$m" "$t")" "$alone" \
      "$(minus "$m" "$t")" "$(minus "$(cpu "$v")" "$(cpu "$alone")")"
  done
done
t=$(median true)
s2e() { awk -v n="$1" '$1 == n { print $9 }' "$tmp/results"; }
echo
echo "=== start-to-exec (medians: from the harness's fork until the exec'd rsync-shaped no-op"
echo "    starts, by the CLOCK_MONOTONIC stamp it writes first; its own run and exit excluded)"
echo "rsync-shaped no-op alone:              $(s2e rsync-shaped) µs"
for v in wrapper-exec wrapper-spawn; do
  printf '%-38s %s µs  (%s µs over the no-op alone; whole run %s µs over it)\n' \
    "do-nothing static $v:" "$(s2e "$v")" "$(minus "$(s2e "$v")" "$(s2e rsync-shaped)")" \
    "$(minus "$(median "$v")" "$(median rsync-shaped)")"
done
for prefix in "" ${base:+base-}; do
  for v in rshell-auto-log-rsync rshell-auto-inplace-rsync; do
    printf '%-38s %s µs  (%s µs over the no-op alone)\n' "$prefix$v:" "$(s2e "$prefix$v")" \
      "$(minus "$(s2e "$prefix$v")" "$(s2e rsync-shaped)")"
  done
done
if [ -n "$base" ]; then
  echo
  echo "=== BINARY minus BASELINE, same rounds (negative: BINARY is faster)"
  for ((i = 0; i < ${#rshell_variants[@]}; i += 3)); do
    v=${rshell_variants[i]}
    printf '%-38s wall %s µs, cpu %s µs\n' "$v:" "$(minus "$(median "$v")" "$(median "base-$v")")" \
      "$(minus "$(cpu "$v")" "$(cpu "base-$v")")"
  done
fi
if [ -n "$rrsync" ]; then
  r=$(median rrsync-probe)
  echo
  printf '%-38s %s µs  (%sx /bin/true)\n' "rrsync-probe (python3):" "$r" "$(ratio "$r" "$t")"
  echo "rrsync-probe / rshell-probe:           $(ratio "$r" "$(median rshell-probe)")x"
  echo "rrsync-probe / rshell-auto-log (full): $(ratio "$r" "$(median rshell-auto-log)")x"
fi
echo "max RSS (median, KiB): rshell $(awk '$1 == "rshell-auto-log" { print $6 }' "$tmp/results"), /bin/true $(awk '$1 == "true" { print $6 }' "$tmp/results")${rrsync:+, rrsync $(awk '$1 == "rrsync-probe" { print $6 }' "$tmp/results")}"
fails=$(awk '$1 != "syslog-records" { s += $7 } END { print s + 0 }' "$tmp/results")
[ "$fails" -eq 0 ] || { echo "WARNING: $fails runs exited non-zero" >&2; exit 1; }
