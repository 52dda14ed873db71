"""cagent: the test methods of the original MAGI's C agent tutorial, in Python 3.

The original cagent was C over the original's C library (magiCLib) and its wire protocol;
what its procedures need is five small methods, written here original-style."""

from magi.util import database
from magi.util.agent import DispatchAgent, agentmethod


class CAgent(DispatchAgent):

    def _record(self, **fields):
        database.getCollection(self.name).insert(fields)

    @agentmethod()
    def testChar(self, msg, a, b):
        return str(a) + str(b)

    @agentmethod()
    def testInt(self, msg, a, b):
        return int(a) + int(b)

    @agentmethod()
    def testVoid(self, msg):
        self._record(function="testVoid")

    @agentmethod()
    def addInteger(self, msg, a, b):
        result = int(a) + int(b)
        self._record(addResult=result)
        return result

    @agentmethod()
    def subtractInteger(self, msg, a, b):
        result = int(a) - int(b)
        self._record(subResult=result)
        return result


def getAgent(**kwargs):
    agent = CAgent()
    agent.setConfiguration(None, **kwargs)
    return agent
