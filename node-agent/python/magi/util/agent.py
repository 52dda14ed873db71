"""The original's base agents (magi/util/agent.py), in Python 3 over MAGI-rs.

An agent's run() takes calls from `self.messenger.next()` and answers them with
magi.util.calls.doMessageAction, as in the original; the runner (magi/original.py) feeds
the messenger from the agent protocol. Methods are called as `method(msg, **args)`.
"""

import logging
import threading
import time

from magi.util.calls import doMessageAction
from magi.messaging.magimessage import MAGIMessage

log = logging.getLogger(__name__)

__all__ = ["agentmethod", "Agent", "DispatchAgent", "NonBlockingDispatchAgent",
           "ReportingDispatchAgent", "SharedServer"]


def agentmethod(*dargs, **dkwargs):
    """Marks a method as callable from a procedure (documentation only, as in the
    original: every public method is callable). Use it with parentheses: @agentmethod()."""
    if len(dargs) == 1 and callable(dargs[0]) and not dkwargs:
        raise TypeError("the agentmethod decorator must be called with parentheses: "
                        "@agentmethod()")

    def decorate(function):
        function._agentmethod = True
        function._agentargs = dkwargs
        return function

    return decorate


class Agent(object):
    """Configuration (setConfiguration / confirmConfiguration) and stop."""

    def __init__(self):
        self.done = False
        self.messenger = None
        self.docklist = set()
        self.name = None
        self.hostname = None

    @agentmethod()
    def setConfiguration(self, msg, **kwargs):
        """Sets each keyword as an attribute, then returns confirmConfiguration()."""
        log.info("Setting agent configuration %s", kwargs)
        for key, value in kwargs.items():
            try:
                setattr(self, key, value)
            except Exception as error:  # noqa: BLE001 - as the original: log and go on
                log.error("Failed to set agent variable %s: %s", key, error)
        return self.confirmConfiguration()

    @agentmethod()
    def confirmConfiguration(self):
        """Override to check the configuration; return False to refuse it."""
        return True

    @agentmethod()
    def stop(self, msg):
        """Called when the agent is unloaded: its run() loop ends."""
        log.info("Got agent unload message. Shutting down.")
        self.done = True
        if self.messenger is not None:
            self.messenger.poisinPill()


class DispatchAgent(Agent):
    """Answers calls one at a time, in order."""

    def run(self):
        while not self.done:
            msg = self.messenger.next(block=True)
            if isinstance(msg, MAGIMessage):
                doMessageAction(self, msg, self.messenger)


class NonBlockingDispatchAgent(Agent):
    """Answers each call in a thread of its own."""

    def run(self):
        while not self.done:
            msg = self.messenger.next(block=True)
            if isinstance(msg, MAGIMessage):
                threading.Thread(target=doMessageAction, args=(self, msg, self.messenger),
                                 daemon=True).start()


class ReportingDispatchAgent(DispatchAgent):
    """A DispatchAgent whose periodic(now) is called again after the seconds it returns."""

    def run(self):
        threading.Thread(target=self.runPeriodic, daemon=True).start()
        DispatchAgent.run(self)

    def runPeriodic(self):
        nextreport = 0
        while not self.done:
            now = time.time()
            if now >= nextreport:
                nextreport = self.periodic(now) + time.time()
            else:
                time.sleep(min(nextreport - now, 1.0))

    def periodic(self, now):
        """Do the periodic work; return the seconds until the next call."""
        raise NotImplementedError("subclasses of ReportingDispatchAgent implement periodic()")


class SharedServer(DispatchAgent):
    """A server started by the first startServer and stopped by the last stopServer;
    subclasses implement runserver() and terminateserver()."""

    def __init__(self):
        DispatchAgent.__init__(self)
        self.hosts = set()

    @agentmethod()
    def startServer(self, msg):
        retVal = True
        if len(self.hosts) == 0:
            log.info("Starting server")
            retVal = self.runserver()
        self.hosts.add(msg.src)
        return retVal

    @agentmethod()
    def stopServer(self, msg):
        retVal = True
        self.hosts.discard(msg.src)
        if len(self.hosts) == 0:
            log.info("Stopping server")
            retVal = self.terminateserver()
        return retVal

    def runserver(self):
        raise NotImplementedError("subclasses of SharedServer implement runserver()")

    def terminateserver(self):
        raise NotImplementedError("subclasses of SharedServer implement terminateserver()")
