import threading
import time

from magi_agent import Agent, run


class Counter(Agent):
    interval = 1.0      # execargs {interval: 0.5, limit: 20} override these
    limit = 10
    value = 0
    counting = False

    def startCounting(self, start=0):     # AAL: method startCounting, args {start: 5}
        self.value, self.counting = int(start), True
        threading.Thread(target=self._count, daemon=True).start()
        # Returns nothing: the trigger carries retVal: true.

    def stopCounting(self):
        self.counting = False
        # A dict is merged into the trigger as is: say retVal yourself, so that a
        # plain wait (which matches retVal: true) still matches.
        return {"retVal": True, "stoppedAt": self.value}

    def _count(self):                     # Not callable from an AAL: starts with "_".
        while self.counting and self.value < self.limit:
            self.record(value=self.value)
            self.value += 1
            time.sleep(float(self.interval))
        self.trigger("countingDone", value=self.value)


if __name__ == "__main__":
    run(Counter)
