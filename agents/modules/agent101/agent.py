#!/usr/bin/env python3
"""agent101: the original MAGI's tutorial agent, rewritten for MAGI-rs in the original's
style (an `execute: socket` process agent using the `magi` compatibility package)."""

import logging
import sys

from magi.util import database, helpers
from magi.util.agent import DispatchAgent, agentmethod
from magi.util.processAgent import initializeProcessAgent

log = logging.getLogger(__name__)


class Agent101(DispatchAgent):
    """Three methods showing arguments in, values out and data recorded."""

    @agentmethod()
    def testChar(self, msg, a, b):
        helpers.entrylog(log, "testChar", {"a": a, "b": b}, logging.INFO)
        joined = str(a) + str(b)
        helpers.exitlog(log, "testChar", joined, logging.INFO)
        return joined

    @agentmethod()
    def testInt(self, msg, a, b):
        log.info("testInt(%s, %s)", a, b)
        return int(a) + int(b)

    @agentmethod()
    def testVoid(self, msg):
        database.getCollection(self.name).insert({"function": "testVoid"})


def getAgent(**kwargs):
    agent = Agent101()
    agent.setConfiguration(None, **kwargs)
    return agent


if __name__ == "__main__":
    agent = Agent101()
    kwargs = initializeProcessAgent(agent, sys.argv)
    agent.setConfiguration(None, **kwargs)
    agent.run()
