#!/usr/bin/env python3
"""Drives `skywire cli pty start …` through a real terminal with pexpect (DESIGN.md §9).

usage: pty_interactive.py CMD ARGS...
Checks: the remote shell sees a real tty (/dev/pts/N), `stty size` follows a resize of the
local terminal, Ctrl-C interrupts `sleep 30` and the prompt comes back, and `exit 7` ends
the client with status 7. Every wait is bounded; exits 0 when all hold, 1 with the reason."""
import sys
import time

import pexpect

cmd = sys.argv[1:]
child = pexpect.spawn(cmd[0], cmd[1:], dimensions=(24, 80), timeout=10, encoding="utf-8")
log = []
child.logfile_read = type("L", (), {"write": lambda s, d: log.append(d), "flush": lambda s: None})()


def fail(why):
    print(f"FAIL: {why}\n--- terminal output ---\n{''.join(log)[-2000:]}")
    child.terminate(force=True)
    sys.exit(1)


def expect(pattern, what, timeout=10):
    try:
        return child.expect(pattern, timeout=timeout)
    except pexpect.TIMEOUT:
        fail(f"timed out waiting for {what}")
    except pexpect.EOF:
        fail(f"client exited while waiting for {what}")


# A prompt we can recognise that the echo of the command setting it does not contain.
child.sendline("PS1='PT''Y> '; export PS1")
expect("PTY> ", "the prompt")
child.sendline("tty")
expect(r"/dev/pts/\d+", "tty to print /dev/pts/N")
expect("PTY> ", "the prompt after tty")

child.setwinsize(30, 100)
time.sleep(0.3)  # SIGWINCH → resize frame → the remote pty
child.sendline("stty size")
expect(r"30 100", "stty size to follow the resize")
expect("PTY> ", "the prompt after stty")

child.sendline("sleep 30")
time.sleep(1.0)  # let `sleep 30` start: a Ctrl-C before it would hit the shell
t0 = time.monotonic()
child.sendcontrol("c")
expect("PTY> ", "the prompt after Ctrl-C", timeout=5)
if time.monotonic() - t0 > 3:
    fail("Ctrl-C took more than 3 s")

child.sendline("exit 7")
expect(pexpect.EOF, "the client to exit")
child.close()
if child.exitstatus != 7:
    fail(f"client exit status {child.exitstatus} (signal {child.signalstatus}), expected 7")
print("ok")
