"""The original's magi.util.execl: running programs from an agent (Python 3).

A command given as text is split on white space (no shell) unless `shell=True`, as in the
original; `execAndRead` returns text (str), as Python 2's str was. Children stay in the
agent's process group, so they end with the agent.
"""

import logging
import subprocess

locallog = logging.getLogger(__name__)


def _argv(cmd, kwargs):
    return cmd.split() if isinstance(cmd, str) and not kwargs.get("shell", False) else cmd


def procOpen(cmd, log=locallog, **kwargs):
    """Starts `cmd`; returns its Popen."""
    log.debug("Spawning (%s)", cmd)
    return subprocess.Popen(_argv(cmd, kwargs), **kwargs)


def spawn(cmd, log=locallog, **kwargs):
    """Starts `cmd`; returns its pid."""
    return procOpen(cmd, log, **kwargs).pid


def run(cmd, log=locallog, **kwargs):
    """Runs `cmd` to its end; returns its exit status."""
    log.debug("Running (%s)", cmd)
    return subprocess.call(_argv(cmd, kwargs), **kwargs)


def execAndRead(cmd, log=locallog, **kwargs):
    """Runs `cmd` to its end; returns (stdout, stderr) as text."""
    log.debug("Executing (%s)", cmd)
    out, err = subprocess.Popen(_argv(cmd, kwargs), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs).communicate()
    return (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace")


def pipeIn(cmd, log=locallog, **kwargs):
    """Starts the shell line `cmd`; returns a file reading its stdout (text)."""
    log.debug("Spawning (%s)", cmd)
    return subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, text=True, **kwargs).stdout


def pipeOut(cmd, log=locallog, **kwargs):
    """Starts the shell line `cmd`; returns a file writing its stdin (text)."""
    log.debug("Spawning (%s)", cmd)
    return subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, text=True, **kwargs).stdin


def pipeBoth(cmd, log=locallog, **kwargs):
    """Starts the shell line `cmd`; returns (its stdout, its stdin) as text files."""
    log.debug("Spawning (%s)", cmd)
    p = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, **kwargs)
    return p.stdout, p.stdin
