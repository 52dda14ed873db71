"""What the compatibility package knows of the running agent: set once by the runner
(magi/original.py) from the protocol's `start` line, before the agent's own code is
imported, so that `testbed.nodename` works even at import time."""

import queue
import threading

_context = None


class NotUnderMagi(RuntimeError):
    """The magi package is used outside an agent started by a MAGI-rs node agent."""


class Context(object):
    """The agent's identity and its line to the node agent."""

    def __init__(self, start, channel_agent):
        self.name = start.get("name") or "agent"
        self.node = start.get("node") or "localhost"
        self.run = start.get("run") or ""
        self.execargs = start.get("execargs") or {}
        self.address = start.get("address") or ""
        self.hosts = start.get("hosts") or {}
        # The magi_agent.Agent speaking the protocol: trigger(), record(), log().
        self.channel_agent = channel_agent
        self.messenger = Messenger(self)
        self.agent = None


def set_context(context):
    global _context
    _context = context


def context():
    """The running agent's context; an error outside an agent started by a node agent."""
    if _context is None:
        raise NotUnderMagi(
            "the magi package only works inside an agent started by a MAGI-rs node agent "
            "(a module with an .idl runs under `python3 -m magi.original`)")
    return _context


def context_or_none():
    return _context


class Closed(Exception):
    """The agent's run() has ended: it takes no more calls."""


class Messenger(object):
    """The original's agent messenger (`self.messenger`): the agent's run() loop takes the
    calls from next(); trigger() sends a trigger of the agent's own."""

    def __init__(self, context):
        self._context = context
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = None
        self.serving = threading.Event()
        self.docklist = set()

    def next(self, block=True, timeout=None):
        """The next call (a MAGIMessage), or the string "PoisinPill" after stop; raises
        queue.Empty after `timeout` seconds, as the original did."""
        self.serving.set()
        return self._queue.get(block, timeout)

    def put(self, message):
        with self._lock:
            if self._closed is not None:
                raise Closed(self._closed)
            self._queue.put(message)

    def close(self, reason):
        """Refuses further calls and fails those still queued."""
        with self._lock:
            self._closed = reason
            while True:
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
                reply = getattr(message, "_reply", None)
                if reply is not None and not reply.done():
                    reply.set_exception(Closed(reason))

    def trigger(self, event=None, **kwargs):
        """Sends trigger `event`; `nodes` and `agent` are the node agent's to set."""
        if not event:
            raise ValueError("a trigger needs an event name")
        kwargs.pop("nodes", None)
        kwargs.pop("agent", None)
        self._context.channel_agent.trigger(event, **kwargs)

    def send(self, msg, **kwargs):
        raise NotImplementedError(
            "messenger.send(): MAGI-rs agents do not send messages to groups or docks of "
            "their own; send a trigger (self.messenger.trigger(event=...)) or a record")

    def joinGroup(self, group):
        raise NotImplementedError(
            "messenger.joinGroup(): groups are the procedure's in MAGI-rs (its `groups:`)")

    leaveGroup = joinGroup

    def listenDock(self, dock):
        self.docklist.add(dock)

    def unlistenDock(self, dock):
        self.docklist.discard(dock)

    def poisinPill(self):
        """Wakes a run() loop waiting in next(): it gets the string "PoisinPill"."""
        self._queue.put("PoisinPill")
