import threading
import time

from magi.util import database
from magi.util.agent import DispatchAgent, agentmethod


class Counter(DispatchAgent):
    def __init__(self):
        DispatchAgent.__init__(self)
        self.interval, self.limit = 1.0, 10   # execargs {interval: 0.5, limit: 20} override
        self.value, self.counting = 0, False

    @agentmethod()
    def startCounting(self, msg, start=0):    # AAL: method startCounting, args {start: 5}
        self.value, self.counting = int(start), True
        threading.Thread(target=self._count, daemon=True).start()
        # Returns nothing: the trigger carries retVal: true.

    @agentmethod()
    def stopCounting(self, msg):
        self.counting = False
        return {"retVal": True, "stoppedAt": self.value}

    def _count(self):
        collection = database.getCollection(self.name)
        while self.counting and self.value < int(self.limit):
            collection.insert({"value": self.value})
            self.value += 1
            time.sleep(float(self.interval))
        self.messenger.trigger(event="countingDone", value=self.value)


def getAgent(**kwargs):                       # the original's entry point (execute: thread)
    agent = Counter()
    agent.setConfiguration(None, **kwargs)
    return agent
