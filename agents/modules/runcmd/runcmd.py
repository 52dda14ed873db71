"""runcmd: starts a command (never through a shell) in the background, and reports its
exit status and output when it is done, in the `isDown` trigger and the run's data layer.

The original module's interface (deter-project/magi-modules runcmd/runcmd.idl and .py):
variable `cmdstring`, methods `start` and `isDown`. Written anew for the MAGI-rs agent
protocol.
"""

import shlex
import threading

from magi_agent import Agent, AgentError, Bounded, positive, run


class RunCmd(Agent):
    cmdstring = ""       # the command: words split as a shell would, but run without one
    timeout = 3600       # seconds before the command is ended (SIGTERM, then SIGKILL)
    maxOutput = 65536    # bytes kept of stdout and of stderr each

    def __init__(self):
        self._lock = threading.Lock()
        self._child = None
        self._result = None
        self._done = threading.Event()

    def confirmConfiguration(self):
        if isinstance(self.cmdstring, list):
            if not all(isinstance(w, str) for w in self.cmdstring):
                raise AgentError("cmdstring as a list must hold strings only")
        elif isinstance(self.cmdstring, str):
            try:
                shlex.split(self.cmdstring)
            except ValueError as error:
                raise AgentError("cmdstring %r: %s" % (self.cmdstring, error)) from None
        else:
            raise AgentError("cmdstring must be a string or a list of words, not %r"
                             % (self.cmdstring,))
        self.timeout = positive(self.timeout, "timeout (seconds)", maximum=7 * 86400)
        self.maxOutput = positive(self.maxOutput, "maxOutput (bytes)", integer=True,
                                  maximum=16 << 20, zero=True)
        return True

    def start(self):
        """Starts `cmdstring`; returns true once it runs (an error if it cannot start, or if
        the previous command still runs)."""
        words = (list(self.cmdstring) if isinstance(self.cmdstring, list)
                 else shlex.split(self.cmdstring))
        if not words:
            raise AgentError("cmdstring is not set: setConfiguration(cmdstring=...) names "
                             "the command")
        with self._lock:
            if self._child is not None and not self._done.is_set():
                raise AgentError("the previous command (%s) still runs; call isDown or stop "
                                 "first" % shlex.join(self._child.argv))
            try:
                child = Bounded(words, limit=self.maxOutput)
            except OSError as error:
                raise AgentError("cannot run %s: %s" % (words[0], error.strerror or error)) \
                    from None
            self._child, self._result = child, None
            self._done = threading.Event()
            threading.Thread(target=self._wait, args=(child, self._done), daemon=True).start()
        return True

    def _wait(self, child, done):
        result = child.wait(timeout=self.timeout)
        result["command"] = shlex.join(child.argv)
        with self._lock:
            if child is self._child:
                self._result = result
        self.record(**result)
        done.set()

    def isDown(self):
        """Waits for the command started last to end: {retVal: true, exitStatus, stdout,
        stderr, duration, timedOut, ...}."""
        with self._lock:
            if self._child is None:
                raise AgentError("no command was started: call start first")
            done = self._done
        done.wait()
        with self._lock:
            return dict(self._result, retVal=True)

    def stop(self):
        """Ends the running command, if any (also called when the agent is unloaded)."""
        with self._lock:
            child = self._child
        if child is not None and child.running():
            child.stop()


if __name__ == "__main__":
    run(RunCmd)
