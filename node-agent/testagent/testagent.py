"""The test agent: a module whose behaviour a procedure or a test can dictate.

Methods: ret(value), fail(message), crash(code=3), garbage(), sleep(ms), emit(event, **args),
record(**data), spawn_sleeper(seconds=1000); any other method returns nothing (retVal: true),
so procedures shaped like the case studies (startServer, startClient, ...) run with it.
Execargs: fail_on (method names that return False) and crash_on (method names that exit
the process with code 3), each a list or a comma-separated string; refuse_start (true: the
agent refuses its configuration, so the load fails).
"""

import os
import subprocess
import sys
import time

from magi_agent import Agent, run


def _names(value):
    if not value:
        return []
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    return [str(n) for n in value]


class TestAgent(Agent):
    fail_on = ()
    crash_on = ()
    refuse_start = False

    def confirmConfiguration(self):
        return not self.refuse_start

    def _call(self, method, args):
        if method in _names(self.crash_on):
            self._crash(3, method)
        if method in _names(self.fail_on):
            return False
        return super()._call(method, args)

    def _crash(self, code, why):
        sys.stderr.write("testagent %s: crashing with code %s in %s\n" % (self.name, code, why))
        sys.stderr.flush()
        os._exit(int(code))

    def ret(self, value=None):
        return value

    def fail(self, message="failing as asked"):
        raise RuntimeError(message)

    def crash(self, code=3):
        self._crash(code, "crash")

    def garbage(self):
        self._write_raw("this line is not part of the protocol")

    def sleep(self, ms=0):
        time.sleep(float(ms) / 1000.0)

    def emit(self, event, **args):
        self.trigger(event, **args)

    def record(self, **data):
        super().record(**data)

    def spawn_sleeper(self, seconds=1000):
        child = subprocess.Popen(["sleep", str(seconds)])
        return {"pid": child.pid}

    def method_missing(self, method, args):
        return None


if __name__ == "__main__":
    run(TestAgent)
