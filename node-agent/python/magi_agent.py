"""magi_agent: write a MAGI-rs agent in Python in a few lines (stdlib only, Python 3.9+).

    from magi_agent import Agent, run

    class Greeter(Agent):
        greeting = "hello"                  # execargs {greeting: hi} set this attribute

        def greet(self, who="world"):       # AAL: method greet, args {who: alice}
            self.log("greeting %s" % who)
            return {"text": "%s %s" % (self.greeting, who)}

    if __name__ == "__main__":
        run(Greeter)

The node agent runs the module's command with this file's directory on PYTHONPATH and
speaks the line-delimited JSON protocol of docs/agent-protocol.md over stdin/stdout. This
module does the protocol: it applies the `start` line (name, node, hosts, address, and
`execargs` through `setConfiguration(**execargs)`, as the original did), runs each call in
a thread pool so a slow method never blocks the others, turns return values and exceptions
into `return` and `error` lines, and calls `stop()` before exiting on `stop` or end of input.

Public methods of the subclass are callable by name, as in the original (names starting
with `_` are not). Arguments the method does not accept are dropped, unless it takes
`**kwargs`. `print()` is safe: stdout is redirected to stderr, which the node logs.
"""

import inspect
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Agent", "AgentError", "Bounded", "positive", "run", "run_command"]


class AgentError(Exception):
    """An error meant for the procedure's author; its text is reported as is."""


class Agent:
    """Base class of an agent. Set by `start`: name, node (alias hostname), run_name,
    address, hosts (node name -> address) and execargs (also applied as attributes)."""

    name = None
    node = None
    hostname = None
    run_name = None
    address = None
    hosts = {}
    execargs = {}
    _channel = None

    # --- configuration, as in the original (magi/util/agent.py) -------------------------

    def setConfiguration(self, **kwargs):
        """Sets each keyword as an attribute; returns confirmConfiguration(). When that
        refuses (returns False or raises), the attributes get their earlier values back."""
        missing = object()
        before = {key: self.__dict__.get(key, missing) for key in kwargs}
        for key, value in kwargs.items():
            setattr(self, key, value)
        try:
            confirmed = self.confirmConfiguration()
        except BaseException:
            confirmed = False
            raise
        finally:
            if confirmed is False:
                for key, value in before.items():
                    if value is missing:
                        self.__dict__.pop(key, None)
                    else:
                        self.__dict__[key] = value
        return confirmed

    def confirmConfiguration(self):
        """Override to check the configuration; return False to refuse it."""
        return True

    # --- talking to the node ---------------------------------------------------------------

    def trigger(self, event, **args):
        """Sends a trigger of its own (`event` plus arguments) to the run."""
        self._send({"kind": "trigger", "event": event, "args": args})

    def record(self, **data):
        """Sends a data record (field -> value) to the run's data layer."""
        self._send({"kind": "record", "data": data})

    def hand_back(self, path, name=None):
        """Has the node fetch the file at `path` (a regular file of this agent's user, at
        most 256 MiB) into the run record, as files/<node>/<agent>/<name> (default: the
        file's own name)."""
        message = {"kind": "file", "path": str(path)}
        if name is not None:
            message["name"] = str(name)
        self._send(message)

    def log(self, message, level="info"):
        """Sends a log line (level: error, warn, info or debug)."""
        self._send({"kind": "log", "level": level, "message": str(message)})

    def resolve(self, name):
        """The IP address of a node: the `hosts` map, an IP literal, then the system resolver
        (a testbed's /etc/hosts names nodes outside the procedure's groups). An unknown name
        is an AgentError listing the known nodes."""
        if not isinstance(name, str) or not name.strip():
            raise AgentError("a node name or address was expected, not %r" % (name,))
        name = name.strip()
        if name in self.hosts:
            return self.hosts[name]
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            pass
        try:
            return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
        except (OSError, IndexError):
            known = ", ".join(sorted(self.hosts)) or "(none)"
            raise AgentError("unknown node %r: not in the experiment's nodes (%s) and not "
                             "resolvable here" % (name, known)) from None

    # --- hooks -----------------------------------------------------------------------------

    def stop(self):
        """Called once before the process exits (on `stop` or end of input): clean up."""

    def method_missing(self, method, args):
        """Called for a method the agent does not have; by default that is an error."""
        raise AgentError("agent %s has no method %s" % (self.name, method))

    # --- internals -------------------------------------------------------------------------

    def _send(self, message):
        if self._channel is None:
            raise AgentError("the agent is not running under magi_agent.run()")
        self._channel.send(message)

    def _write_raw(self, text):
        """Writes a raw line to the protocol stream (for tests of bad agents only)."""
        self._channel.write_raw(text)

    def _call(self, method, args):
        """Looks a method up and calls it with the arguments it accepts."""
        function = None
        if isinstance(method, str) and method and not method.startswith("_"):
            function = getattr(self, method, None)
        if function is None or not callable(function):
            return self.method_missing(method, args)
        return function(**_accepted(function, args))

    def _start(self, message):
        self.name = message.get("name")
        self.node = self.hostname = message.get("node")
        self.run_name = message.get("run")
        self.address = message.get("address")
        self.hosts = message.get("hosts") or {}
        self.execargs = message.get("execargs") or {}
        if self.setConfiguration(**self.execargs) is False:
            raise AgentError("the configuration was refused: %r" % (self.execargs,))


class Bounded:
    """A child process whose stdout and stderr are read into memory up to `limit` bytes
    each (the rest is read and dropped, so the child never blocks on a full pipe).
    `argv` runs without a shell, with stdin from /dev/null, in a process group of its own,
    so that signals reach its children too (a shell's); the groups still alive when the
    agent exits are killed by run()."""

    def __init__(self, argv, limit=65536, cwd=None):
        self.argv = list(argv)
        self.limit = int(limit)
        self.started = time.time()
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                        start_new_session=True)
        _children.add(self)
        self._out = {"stdout": bytearray(), "stderr": bytearray()}
        self._total = {"stdout": 0, "stderr": 0}
        self._readers = [threading.Thread(target=self._drain, args=(key, pipe), daemon=True)
                         for key, pipe in (("stdout", self.process.stdout),
                                           ("stderr", self.process.stderr))]
        for reader in self._readers:
            reader.start()
        self.timed_out = False

    def _drain(self, key, pipe):
        while True:
            chunk = pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536)
            if not chunk:
                break
            self._total[key] += len(chunk)
            room = self.limit - len(self._out[key])
            if room > 0:
                self._out[key] += chunk[:room]
        pipe.close()

    def running(self):
        return self.process.poll() is None

    def output_so_far(self, key="stderr"):
        """What the child wrote on `key` ("stdout" or "stderr") so far (text, cut at the
        limit)."""
        return bytes(self._out[key]).decode("utf-8", "replace")

    def send(self, sig):
        """Sends signal `sig` to the child's process group while the child runs."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=None, grace=2.0):
        """Waits for the end (at most `timeout` seconds, then SIGTERM, then SIGKILL after
        `grace`) and returns the result: exitStatus (negative: killed by that signal),
        stdout, stderr (text, cut at the limit), their full sizes, whether they were cut,
        timedOut and duration in seconds."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.stop(grace)
        self.result()  # ends what is left of the group, so that the readers finish
        for reader in self._readers:
            reader.join()
        return self.result()

    def stop(self, grace=2.0, sig=signal.SIGTERM):
        """Ends the child: `sig`, then SIGKILL after `grace` seconds."""
        self.send(sig)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.process.wait()

    def result(self):
        if self.process.poll() is not None:
            # The child has ended; what is left of its group (a shell's background
            # children) ends with it, so that the pipes close.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _children.discard(self)
        out = {
            "exitStatus": self.process.returncode,
            "timedOut": self.timed_out,
            "duration": round(time.time() - self.started, 6),
        }
        for key in ("stdout", "stderr"):
            out[key] = self._out[key].decode("utf-8", "replace")
            out[key + "Bytes"] = self._total[key]
            out[key + "Truncated"] = self._total[key] > len(self._out[key])
        return out


_children = set()


def _kill_children():
    """Kills the process groups of the Bounded children still alive."""
    for child in list(_children):
        try:
            os.killpg(child.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_command(argv, timeout=None, limit=65536, cwd=None):
    """Runs `argv` (no shell) to its end with bounded capture; see Bounded.wait."""
    return Bounded(argv, limit=limit, cwd=cwd).wait(timeout=timeout)


def positive(value, what, integer=False, maximum=None, zero=False):
    """`value` as a positive number (an int if `integer`), else an AgentError naming `what`."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value) if integer else float(value)
        if integer and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise AgentError("%s must be a %s, not %r"
                         % (what, "whole number" if integer else "number", value)) from None
    if (number != number or number in (float("inf"), float("-inf")) or number < 0
            or (number == 0 and not zero)):
        raise AgentError("%s must be %s, not %r"
                         % (what, "zero or more" if zero else "more than zero", value))
    if maximum is not None and number > maximum:
        raise AgentError("%s must be at most %s, not %r" % (what, maximum, value))
    return number


def _accepted(function, args):
    """The arguments `function` accepts: all with **kwargs, else those it names."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return args
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return args
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in args.items() if k in names}


def _describe(error):
    """One line for a person: `Type: message (file:line in function)`, the place being the
    innermost frame in the agent's own files (the module directory); an AgentError is its
    message alone."""
    if isinstance(error, AgentError):
        return str(error)
    text = "%s: %s" % (type(error).__name__, error)
    frames = traceback.extract_tb(error.__traceback__)
    here = os.getcwd() + os.sep
    own = [f for f in frames if os.path.abspath(f.filename).startswith(here)]
    place = (own or frames or [None])[-1]
    if place is not None:
        text += " (%s:%d in %s)" % (os.path.basename(place.filename), place.lineno, place.name)
    return text


def _report(error):
    """Writes an exception to stderr: the traceback, or one line for an AgentError."""
    if isinstance(error, AgentError):
        sys.stderr.write("magi_agent: %s\n" % error)
    else:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


class _Channel:
    """The protocol pipes. fd 0 and 1 are moved out of the way so that print() and child
    processes cannot corrupt the protocol: fd 0 becomes /dev/null, fd 1 goes to stderr."""

    def __init__(self):
        self._input = os.fdopen(os.dup(0), "rb")
        self._output = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdout.flush()
        os.dup2(2, 1)
        self._lock = threading.Lock()

    def lines(self):
        while True:
            line = self._input.readline()
            if not line:
                return
            yield line

    def send(self, message):
        self.write_raw(json.dumps(message, allow_nan=False, separators=(",", ":")))

    def write_raw(self, text):
        data = (text + "\n").encode("utf-8")
        with self._lock:
            self._output.write(data)
            self._output.flush()

    def reply(self, call_id, value):
        try:
            line = json.dumps({"kind": "return", "id": call_id, "value": value},
                              allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            self.send({"kind": "error", "id": call_id,
                       "error": "the return value is not JSON: %s" % error})
            return
        self.write_raw(line)


def _serve(agent, channel, message):
    call_id = message.get("id")
    try:
        args = message.get("args") or {}
        value = agent._call(message.get("method"), args)
    except BaseException as error:  # noqa: B036 - every failure must answer the call
        _report(error)
        channel.send({"kind": "error", "id": call_id, "error": _describe(error)})
        return
    channel.reply(call_id, value)


def run(agent_class, max_workers=32):
    """Runs an agent: serves the protocol on stdin/stdout until `stop`; never returns."""
    channel = _Channel()
    agent = agent_class()
    agent._channel = channel
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="magi-call")
    for raw in channel.lines():
        try:
            message = json.loads(raw)
            kind = message.get("kind")
        except (ValueError, AttributeError):
            sys.stderr.write("magi_agent: ignoring a bad line from the node: %r\n" % raw[:200])
            continue
        if kind == "start":
            try:
                agent._start(message)
            except BaseException as error:  # noqa: B036 - report, then exit
                _report(error)
                channel.send({"kind": "error", "error": _describe(error)})
                _exit(1)
            channel.send({"kind": "ready"})
        elif kind == "call":
            pool.submit(_serve, agent, channel, message)
        elif kind == "stop":
            break
        else:
            sys.stderr.write("magi_agent: ignoring a line of unknown kind %r\n" % (kind,))
    try:
        agent.stop()
    except BaseException:  # noqa: B036 - exiting anyway
        traceback.print_exc(file=sys.stderr)
    _kill_children()
    _exit(0)


def _exit(code):
    """Exits at once: calls still running in the pool must not hold the process."""
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)
