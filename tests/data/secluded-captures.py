#!/usr/bin/env python3
"""Regenerates secluded-captures.txt: runs real rsync clients against a fake remote
shell that records its arguments and stdin, and prints one block per capture.

    python3 tests/data/secluded-captures.py > tests/data/secluded-captures.txt

Needs rsync on PATH; the rsync_bpc block is skipped when BackupPC's client is absent.
"""
import os, shlex, subprocess, sys, tempfile

BPC = "/usr/libexec/backuppc-rsync/rsync_bpc"
FAKE_SHELL = """#!/bin/sh
printf '%s\\n' "$*" > "$CAPTURE_OUT.args"
timeout 1 cat > "$CAPTURE_OUT.stdin"
"""

def cases(work):
    bpc = [BPC, f"--bpc-top-dir={work}/bpc", "--bpc-host-name=h", "--bpc-share-name=/",
           "--bpc-bkup-num=1", "--bpc-bkup-comp=3", "--bpc-bkup-prevnum=-1",
           "--bpc-bkup-prevcomp=-1", "--bpc-bkup-inode0=1", "--bpc-attrib-new",
           "--bpc-log-level=0"]
    # BackupPC 4's default $Conf{RsyncArgs} plus its --rsync-path.
    bpc += ["--rsync-path=/usr/bin/rsync", "--super", "--recursive", "--protect-args",
            "--numeric-ids", "--perms", "--owner", "--group", "-D", "--times", "--links",
            "--hard-links", "--delete", "--delete-excluded", "--one-file-system", "--partial",
            "--log-format=log: %o %i %B %8U,%8G %9l %f%L", "--stats", "--checksum",
            "--timeout=72000", "fakehost:/", "/"]
    out = [
        ("push-delete-backup-dir", "src",
         ["rsync", "-a", "-s", "--delete", "--backup-dir=old", "./", "fakehost:dir with space/"]),
        ("pull-space-unicode", ".",
         ["rsync", "-a", "-s", "fakehost:src/file with space.txt",
          "fakehost:src/caf\u00e9 \u00fc.txt", "dest/"]),
        ("push-leading-dash", "src",
         ["rsync", "-a", "-s", "--", "-dash.txt", "fakehost:dest dir/"]),
        ("pull-leading-dash", ".",
         ["rsync", "-a", "-s", "--", "fakehost:-dash.txt", "dest/"]),
        ("push-link-dest", ".",
         ["rsync", "-a", "--secluded-args", "--delete", "--link-dest=../prev", "src/",
          "fakehost:cur/"]),
        ("pull-wildcard", ".",
         ["rsync", "-a", "--protect-args", "fakehost:src/*.txt", "dest/"]),
        ("push-empty-destination", ".",
         ["rsync", "-a", "-s", "src/", "fakehost:"]),
        ("pull-non-utf8", ".",
         ["rsync", "-a", "-s", "fakehost:src/latin1-\udce9.txt", "dest/"]),
        ("push-iconv", ".",
         ["rsync", "-a", "-s", "--iconv=utf8,latin1", "src/", "fakehost:dst/"]),
    ]
    if os.access(BPC, os.X_OK):
        out.append(("rsync-bpc-backup", ".", bpc))
    return out

def esc(b):
    """NUL as \\0, backslash as \\\\, printable ASCII and valid UTF-8 as is, else \\xNN."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        if c == 0:
            out.append("\\0")
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            for n in (4, 3, 2):
                try:
                    out.append(b[i:i + n].decode("utf-8"))
                    i += n
                    break
                except UnicodeDecodeError:
                    continue
            else:
                out.append("\\x%02x" % c)
                i += 1
            continue
        i += 1
    return "".join(out)

def shown(argv):
    if argv[0] == BPC:
        argv = ["rsync_bpc"] + [a for a in argv[1:] if not a.startswith("--bpc-")]
        return argv[0] + " [--bpc-* options] " + shlex.join(argv[1:])
    # A non-UTF-8 byte (held as a surrogate escape) is shown as \xNN.
    return esc(os.fsencode(shlex.join(argv)))

def main():
    work = tempfile.mkdtemp(prefix="secluded-captures.")
    fake = os.path.join(work, "fake-shell")
    with open(fake, "w") as f:
        f.write(FAKE_SHELL)
    os.chmod(fake, 0o755)
    for d in ("src", "dest", "prev", "bpc/pc/h"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    for name in ("file with space.txt", "caf\u00e9 \u00fc.txt", "-dash.txt"):
        with open(os.path.join(work, "src", name), "w") as f:
            f.write("x\n")
    version = subprocess.run(["rsync", "--version"], capture_output=True, text=True)
    print("# Real secluded-args (-s / --secluded-args / --protect-args) captures from")
    print(f"# {' '.join(version.stdout.split()[:6])} and BackupPC 4's rsync_bpc 3.1.3.0,")
    print("# each client run as `CLIENT -e FAKE_SHELL ...`; FAKE_SHELL records its arguments")
    print("# and its stdin (regenerate: python3 tests/data/secluded-captures.py).")
    print("# client: the client command; command: what sshd would hand to `rshell -c`")
    print("# (the host word dropped); stdin: the secluded words, each NUL shown as \\0")
    print("# (backslash as \\\\, other non-UTF-8 bytes as \\xNN); after: the next 4 bytes")
    print("# (the protocol version, little-endian), in hex.")
    for name, cwd, argv in cases(work):
        out = os.path.join(work, "cap-" + name)
        env = dict(os.environ, CAPTURE_OUT=out)
        subprocess.run(argv[:1] + ["-e", fake] + argv[1:], cwd=os.path.join(work, cwd),
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        args = open(out + ".args").read().rstrip("\n").split(" ", 1)[1]
        data = open(out + ".stdin", "rb").read()
        end = data.index(b"\0\0") + 2
        print()
        print(f"name: {name}")
        print(f"client: {shown(argv)}")
        print(f"command: {args}")
        print(f"stdin: {esc(data[:end])}")
        print(f"after: {' '.join('%02x' % c for c in data[end:end + 4])}")
    subprocess.run(["rm", "-rf", "--", work])

if __name__ == "__main__":
    sys.exit(main())
