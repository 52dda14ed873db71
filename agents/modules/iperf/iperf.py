"""iperf: UDP throughput between two nodes with iperf 2 (`iperf -u`), as the original's iperf
module (deter-project/magi-modules iperf/iperf.py: startServer, startClient, stopServer),
written anew for the MAGI-rs agent protocol. Unlike the original, which left iperf's text in
/tmp, each report (iperf's CSV output, `-y C`) becomes a record in the run's data layer.
"""

import re
import signal
import time

from magi_agent import Agent, AgentError, Bounded, positive, run

DEFAULT_PORT = 28888          # the original's
BANDWIDTH = re.compile(r"^[0-9]+(\.[0-9]+)?[kKmMgG]?$")
FIELDS = ("localAddress", "localPort", "remoteAddress", "remotePort", "id", "interval",
          "bytes", "bitsPerSecond", "jitterMs", "lost", "total", "lossPercent", "outOfOrder")


def port_of(value):
    if value is None:
        return DEFAULT_PORT
    return positive(value, "port", integer=True, maximum=65535)


def reports(text):
    """iperf's CSV report lines as records (numbers as numbers; -1 totals as null)."""
    out = []
    for line in text.splitlines():
        cells = line.strip().split(",")
        if len(cells) < 9:
            continue
        record = {}
        for name, cell in zip(FIELDS, cells[1:]):
            try:
                number = float(cell)
                record[name] = int(number) if number.is_integer() and "." not in cell else number
            except ValueError:
                record[name] = cell
        if record.get("total") == -1:
            # The client's own line: only the server knows the loss.
            record["total"] = record["lossPercent"] = None
        out.append(record)
    return out


class Iperf(Agent):
    def __init__(self):
        self._server = None
        self._server_port = None

    def startServer(self, port=None):
        """Starts `iperf -s -u` on `port` (default 28888), bound to this node's address."""
        port = port_of(port)
        if self._server is not None and self._server.running():
            raise AgentError("an iperf server already runs on port %d; call stopServer first"
                             % self._server_port)
        argv = ["iperf", "-s", "-u", "-p", str(port), "-y", "C"]
        if self.address:
            argv += ["-B", self.address]
        self._server, self._server_port = self._spawn(argv), port
        time.sleep(1)   # as the original: a server that cannot bind has ended by then
        if not self._server.running():
            result = self._server.wait()
            raise AgentError("iperf server did not start (exit status %s): %s"
                             % (result["exitStatus"], result["stderr"].strip()))
        return True

    def stopServer(self):
        """Stops the server and records its reports (one per client run it served)."""
        server, self._server = self._server, None
        if server is None:
            return {"retVal": True, "reports": 0}
        server.send(signal.SIGINT)     # iperf writes what it holds and exits on SIGINT
        result = server.wait(timeout=3)
        found = reports(result["stdout"])
        for report in found:
            self.record(role="server", port=self._server_port, **report)
        return {"retVal": True, "reports": len(found)}

    def startClient(self, server=None, port=None, time=10, bw=None):
        """Sends UDP to `server` (a node name or address) for `time` seconds at `bw` (bits
        per second, iperf's default 1M; '10M' style accepted); records the report and
        returns it with retVal: true; a failing iperf is an error with its message (the
        original returned false)."""
        if not server:
            raise AgentError("startClient needs `server`, the node running the iperf server")
        address = self.resolve(server)
        port = port_of(port)
        seconds = positive(time, "time (seconds)", maximum=86400)
        argv = ["iperf", "-c", address, "-u", "-p", str(port), "-t", "%g" % seconds, "-y", "C"]
        if bw is not None:
            if isinstance(bw, bool) or not BANDWIDTH.match(str(bw)):
                raise AgentError("bw must be bits per second, a number with an optional k, M "
                                 "or G (10M), not %r" % (bw,))
            argv += ["-b", str(bw)]
        if self.address:
            argv += ["-B", self.address]
        result = self._spawn(argv).wait(timeout=seconds + 30)
        if result["exitStatus"] != 0 or result["timedOut"]:
            raise AgentError("iperf client to %s:%d failed (exit status %s): %s"
                             % (address, port, result["exitStatus"],
                                result["stderr"].strip() or result["stdout"].strip()))
        found = reports(result["stdout"])
        for report in found:
            self.record(role="client", server=server, port=port, **report)
        summary = dict(found[-1]) if found else {}
        summary.update(retVal=True, server=server, port=port)
        return summary

    def stop(self):
        if self._server is not None:
            self._server.stop()

    @staticmethod
    def _spawn(argv):
        try:
            return Bounded(argv)
        except OSError as error:
            raise AgentError("cannot run iperf: %s (the Debian package `iperf` provides it)"
                             % (error.strerror or error)) from None


if __name__ == "__main__":
    run(Iperf)
