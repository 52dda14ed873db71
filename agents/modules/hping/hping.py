"""hping: UDP probes or a UDP flood toward a node with hping3, as the original's hping
module (deter-project/magi-modules hping/hping3.py: startHping, stopHping), written anew
for the MAGI-rs agent protocol. hping3's closing statistics become a record in the run's
data layer. hping3 needs raw sockets: the agent runs it directly (no sudo), so the node must
grant the agent CAP_NET_RAW (its manifest asks for `net_raw`).
"""

import re
import signal
import time

from magi_agent import Agent, AgentError, Bounded, positive, run

STATS = re.compile(r"(\d+) packets transmitted, (\d+) packets received, (\d+)% packet loss")
RTT = re.compile(r"round-trip min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+) ms")


def statistics(text):
    """hping3's closing statistics as record fields (empty when it printed none)."""
    out = {}
    found = STATS.search(text)
    if found:
        out.update(packetsSent=int(found.group(1)), packetsReceived=int(found.group(2)),
                   lossPercent=int(found.group(3)))
    found = RTT.search(text)
    if found:
        out.update(rttMinMs=float(found.group(1)), rttAvgMs=float(found.group(2)),
                   rttMaxMs=float(found.group(3)))
    return out


class Hping(Agent):
    def __init__(self):
        self._process = None
        self._target = {}

    def startHping(self, dest=None, port=None, interval=None):
        """Starts `hping3 <dest> --udp -q`: one probe every `interval` seconds, or a flood
        (as fast as it can) without `interval`. Returns true once hping3 runs."""
        if not dest:
            raise AgentError("startHping needs `dest`, a node name or address")
        address = self.resolve(dest)
        argv = ["hping3", address, "--udp", "-q"]
        if port is not None:
            argv += ["-p", str(positive(port, "port", integer=True, maximum=65535))]
        if interval is not None:
            seconds = positive(interval, "interval (seconds)", maximum=3600)
            micro = int(round(seconds * 1e6))
            if micro < 1:
                raise AgentError("interval must be at least 0.000001 s, not %r" % (interval,))
            argv += ["-i", "%d" % seconds if seconds.is_integer() else "u%d" % micro]
        else:
            argv.append("--flood")
        if self._process is not None and self._process.running():
            raise AgentError("hping3 already runs toward %s; call stopHping first"
                             % self._target.get("dest"))
        try:
            process = Bounded(argv)
        except OSError as error:
            raise AgentError("cannot run hping3: %s (the Debian package `hping3` provides it)"
                             % (error.strerror or error)) from None
        time.sleep(1)   # as the original: hping3 that cannot start has ended by then
        if not process.running():
            result = process.wait()
            raise AgentError("hping3 did not start (exit status %s): %s"
                             % (result["exitStatus"],
                                (result["stderr"] or result["stdout"]).strip()))
        self._process = process
        self._target = {"dest": dest, "address": address, "port": port,
                        "interval": interval, "flood": interval is None}
        return True

    def stopHping(self):
        """Stops hping3 and records its statistics: {retVal: true, packetsSent, ...}."""
        process, self._process = self._process, None
        if process is None:
            return True
        process.send(signal.SIGINT)    # hping3 prints its statistics on SIGINT
        result = process.wait(timeout=3)
        fields = dict(self._target, duration=result["duration"],
                      **statistics(result["stdout"] + result["stderr"]))
        self.record(**fields)
        return dict(fields, retVal=True)

    def stop(self):
        if self._process is not None:
            self._process.stop()


if __name__ == "__main__":
    run(Hping)
