"""runshell: runs a shell line (the original's `path`, a script or any command line) and
puts its exit status and output into the call's trigger and the run's data layer.

The original module's interface (deter-project/magi-modules runshell/runshell.idl):
variable `path`, method `execute`. Written anew for the MAGI-rs agent protocol.
"""

import os
import shlex

from magi_agent import Agent, AgentError, positive, run, run_command

SHELL = "/bin/sh"


class RunShell(Agent):
    path = ""            # the shell line: a script's path, or any command line
    timeout = 3600       # seconds before the line is ended (SIGTERM, then SIGKILL)
    maxOutput = 65536    # bytes kept of stdout and of stderr each

    def confirmConfiguration(self):
        if not isinstance(self.path, str):
            raise AgentError("path must be a string (a shell line), not %r" % (self.path,))
        self.timeout = positive(self.timeout, "timeout (seconds)", maximum=7 * 86400)
        self.maxOutput = positive(self.maxOutput, "maxOutput (bytes)", integer=True,
                                  maximum=16 << 20, zero=True)
        return True

    def execute(self):
        """Runs `path` with /bin/sh -c and waits for it; returns retVal: true (as the
        original, whatever the status) with exitStatus, stdout, stderr, duration, timedOut."""
        if not self.path.strip():
            raise AgentError("path is not set: setConfiguration(path=...) names the shell line")
        line = self._local(self.path)
        result = run_command([SHELL, "-c", line], timeout=self.timeout, limit=self.maxOutput)
        result["command"] = line
        self.record(**result)
        if result["timedOut"]:
            self.log("%r ran longer than %s s and was ended" % (line, self.timeout), "warn")
        return dict(result, retVal=True)

    def _local(self, line):
        """A line whose program is a missing /share/.../runshell/<file> path runs the
        module's own <file> instead, as missing module paths resolve to the module library
        (the original's procedure names scripts shipped in its module directory)."""
        try:
            words = shlex.split(line)
        except ValueError:
            return line
        if not words:
            return line
        program = words[0]
        parent = os.path.basename(os.path.dirname(program))
        own = os.path.join(os.getcwd(), os.path.basename(program))
        if (os.path.isabs(program) and not os.path.exists(program) and parent == "runshell"
                and os.path.isfile(own)):
            self.log("%s does not exist here; running the module's %s" % (program, own), "warn")
            return line.replace(program, shlex.quote(own), 1)
        return line


if __name__ == "__main__":
    run(RunShell)
