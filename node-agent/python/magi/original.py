"""Runs an original-style MAGI agent: `python3 -m magi.original --execute MODE --mainfile F`.

The node agent starts this for a module with an `.idl` and no magi-agent.json (the command
comes from node-agent/src/idl.rs). It speaks the MAGI-rs agent protocol through magi_agent
and gives the agent the original's world:

- `execute: thread`: the mainfile is imported and its `getAgent(**kwargs)` builds the agent
  (kwargs: the execargs plus `name` and `hostname`), then the agent's `run()` runs in a
  thread, as the original's ThreadedAgent did;
- `execute: pipe` or `socket`: the mainfile runs as `__main__` (in a thread), with the
  original's argv; its `initializeProcessAgent(agent, sys.argv)` binds the agent and its
  `agent.run()` serves the calls.

Either way the agent is ready when its run() first waits for a call. Each call becomes a
MAGIMessage queued for run(), which calls `method(msg, **args)` (arguments the method does
not take are dropped); the return value goes back as is (None becomes retVal: true). A file
the agent needs that is Python 2 (`print "x"`, `except E, e:`) fails the load with the
file, the line and the Python 3 spelling.
"""

import argparse
import importlib.util
import logging
import os
import re
import runpy
import sys
import threading
from concurrent.futures import Future

import magi_agent
from magi import _runtime
from magi.messaging.magimessage import MAGIMessage

LOG_FORMAT = "%(asctime)s %(name)-30s %(levelname)-8s %(message)s"

# Python 2 spellings Python 3 refuses, and how to write them now: (pattern, what, fix).
_PYTHON2 = [
    (r"^\s*print\b\s*[^\s(=]", "`print` is a statement in Python 2",
     'print is a function in Python 3: write print(...), e.g. print("x")'),
    (r"^\s*except\b[^:]*,\s*\w+\s*:", "`except E, e:` is Python 2",
     "write `except E as e:`"),
    (r"^\s*raise\s+[\w.]+\s*,", "`raise E, message` is Python 2",
     'write `raise E("message")`'),
    (r"^\s*exec\s+[^\s(=]", "`exec` is a statement in Python 2",
     "exec is a function in Python 3: write exec(code)"),
    (r"<>", "`<>` is Python 2", "write `!=`"),
    (r"`", "backquotes are Python 2", "write repr(x)"),
    (r"\b0[0-7]+\b", "octal numbers like 0777 are Python 2", "write 0o777"),
    (r"\b\d+[lL]\b", "long numbers like 10L are Python 2", "write 10"),
    (r"\bur['\"]", "ur'...' strings are Python 2", "write r'...'"),
]


def python2_message(error):
    """One line for a SyntaxError: file, line, and the Python 3 fix when it is a Python 2
    spelling the original's agents used; then the file's other lines with the plainest
    Python 2 spellings (print, except and raise with a comma), so all are fixed at once."""
    first = _first_message(error)
    others = []
    try:
        with open(error.filename, encoding="utf-8", errors="replace") as source:
            for number, line in enumerate(source, 1):
                if number != error.lineno and any(re.search(p, line) for p, _, _ in _PYTHON2[:3]):
                    others.append(str(number))
    except (OSError, TypeError):
        pass
    if others:
        more = ", ".join(others[:10]) + (" ..." if len(others) > 10 else "")
        first += "; the same kind of Python 2 line is also at line(s) %s" % more
    return first


def _first_message(error):
    filename = os.path.relpath(error.filename) if error.filename else "?"
    place = "%s:%s" % (filename, error.lineno or "?")
    text = (error.text or "").rstrip("\n")
    if isinstance(error, TabError) or "inconsistent use of tabs" in str(error.msg):
        return ("%s: indentation mixes tabs and spaces, which Python 2 allowed and Python 3 "
                "refuses: indent with spaces only (expand -t 8 %s)" % (place, filename))
    for pattern, what, fix in _PYTHON2:
        if re.search(pattern, text):
            return "%s: %s (%s): %s" % (place, what, text.strip(), fix)
    return ("%s: Python 3 cannot compile this line (%s): %s; the original's agents were "
            "Python 2, see docs/agents.md" % (place, error.msg, text.strip()))


def _describe_failure(error):
    if isinstance(error, SyntaxError):
        return python2_message(error)
    return magi_agent._describe(error)


class OriginalAgent(magi_agent.Agent):
    """The protocol side: takes `start`, builds the original-style agent, queues calls for
    its run() loop and waits for their answers."""

    execute = "thread"
    mainfile = None

    def _start(self, message):
        self.name = message.get("name")
        self.node = self.hostname = message.get("node")
        self.run_name = message.get("run")
        self.execargs = message.get("execargs") or {}
        context = _runtime.Context(message, self)
        _runtime.set_context(context)
        self._context = context
        _setup_logging(self.execargs.get("loglevel"))
        here = os.getcwd()
        if here not in sys.path:
            sys.path.insert(0, here)
        self._failure = None
        self._ended = threading.Event()
        if self.execute == "thread":
            agent = self._build_threaded(context)
            target = agent.run
        else:
            target = self._run_main
        threading.Thread(target=self._guard, args=(target,), name="magi-agent-run",
                         daemon=True).start()
        # Ready once run() waits for calls, or failed if it ends first.
        while not context.messenger.serving.wait(0.05):
            if self._ended.is_set():
                if self._failure is not None:
                    raise magi_agent.AgentError(_describe_failure(self._failure))
                raise magi_agent.AgentError(
                    "%s ended before the agent served calls (does it call agent.run()?)"
                    % self.mainfile)

    def _build_threaded(self, context):
        try:
            spec = importlib.util.spec_from_file_location(
                "magi_agent_main", os.path.join(os.getcwd(), self.mainfile))
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        except SyntaxError as error:
            raise magi_agent.AgentError(python2_message(error))
        get_agent = getattr(module, "getAgent", None)
        if not callable(get_agent):
            raise magi_agent.AgentError(
                "%s has no getAgent(**kwargs): an agent with `execute: thread` is built by it"
                % self.mainfile)
        kwargs = dict(context.execargs)
        kwargs["name"] = context.name
        kwargs["hostname"] = context.node
        agent = get_agent(**kwargs)
        if agent is None:
            raise magi_agent.AgentError("getAgent() in %s returned None" % self.mainfile)
        if not callable(getattr(agent, "run", None)):
            raise magi_agent.AgentError(
                "the agent getAgent() in %s returned has no run(): derive it from "
                "magi.util.agent.DispatchAgent" % self.mainfile)
        self._bind(agent)
        return agent

    def _bind(self, agent):
        """Connects an original-style agent to the calls (also initializeProcessAgent's)."""
        context = self._context
        agent.name = context.name
        agent.hostname = context.node
        agent.messenger = context.messenger
        if getattr(agent, "docklist", None) is None:
            agent.docklist = set()
        agent.docklist.add(context.name)
        context.agent = agent

    def _run_main(self):
        context = self._context
        argv = [self.mainfile, context.name, context.name, "", ""]
        argv += ["%s=%s" % (k, _json_text(v)) for k, v in context.execargs.items()]
        argv.append("execute=%s" % self.execute)
        sys.argv = argv
        runpy.run_path(os.path.join(os.getcwd(), self.mainfile), run_name="__main__")

    def _guard(self, target):
        try:
            target()
            reason = "the agent's run() has ended; it takes no more calls"
        except BaseException as error:  # noqa: B036 - reported, then the agent is closed
            self._failure = error
            reason = "the agent failed: %s" % _describe_failure(error)
            magi_agent._report(error)
            if self._context.messenger.serving.is_set():
                self._send({"kind": "error", "error": reason})
        self._context.messenger.close(reason)
        self._ended.set()

    def _call(self, method, args):
        context = self._context
        message = MAGIMessage(src=context.run, srcdock=context.run, dstdocks=[context.name],
                              dstnodes=[context.node],
                              data={"version": 1.0, "method": method, "args": dict(args)})
        message._reply = Future()
        try:
            context.messenger.put(message)
        except _runtime.Closed as closed:
            raise magi_agent.AgentError(str(closed))
        try:
            return message._reply.result()
        except _runtime.Closed as closed:
            raise magi_agent.AgentError(str(closed))
        except SyntaxError as error:
            raise magi_agent.AgentError(python2_message(error))

    def stop(self):
        agent = self._context.agent if getattr(self, "_context", None) else None
        if agent is not None and callable(getattr(agent, "stop", None)):
            agent.stop(MAGIMessage(src=self._context.run, data={"method": "stop"}))


def _json_text(value):
    import json
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _setup_logging(level):
    names = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
             "error": logging.ERROR, "critical": logging.CRITICAL}
    root = logging.getLogger()
    root.handlers = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(names.get(str(level or "info").lower(), logging.INFO))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m magi.original")
    parser.add_argument("--execute", choices=["thread", "pipe", "socket"], required=True)
    parser.add_argument("--mainfile", required=True)
    options = parser.parse_args(argv)

    class Agent(OriginalAgent):
        execute = options.execute
        mainfile = options.mainfile

    magi_agent.run(Agent)


if __name__ == "__main__":
    main()
