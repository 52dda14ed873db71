"""tcpdump: captures the packets on the interface toward a node into a file per run, as
the original's tcpdump module (deter-project/magi-modules tcpdump/tcpdump.py: variable
`dest`, methods startCollection, stopCollection), written anew for the MAGI-rs agent
protocol. Each capture's file, interface and packet count become a record in the run's data
layer, and the capture file itself is fetched into the run record (files/<node>/<agent>/). tcpdump needs raw sockets: the node must grant the agent CAP_NET_RAW (its manifest
asks for `net_raw`).
"""

import os
import pwd
import re
import signal
import subprocess
import tempfile
import time

from magi_agent import Agent, AgentError, Bounded, run

CAPTURED = re.compile(r"(\d+) packets? captured")
RECEIVED = re.compile(r"(\d+) packets? received by filter")
DROPPED = re.compile(r"(\d+) packets? dropped by kernel")
SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Tcpdump(Agent):
    dest = None         # the node whose traffic is captured: the interface toward it is used
    interface = None    # or the interface itself
    dumpfile = None     # where the capture goes (default: a new file per run, see below)

    def __init__(self):
        self._process = None
        self._current = {}
        self._captures = 0

    def confirmConfiguration(self):
        for key in ("dest", "interface", "dumpfile"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise AgentError("%s must be a non-empty string, not %r" % (key, value))
        if self.interface is not None and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}",
                                                           self.interface):
            raise AgentError("interface %r is not an interface name" % (self.interface,))
        return True

    def _interface(self):
        """The interface packets to `dest` leave by (`ip route get`), or `interface`."""
        if self.interface:
            return self.interface
        if not self.dest:
            raise AgentError("dest is not set: setConfiguration(dest=<node>) says whose "
                             "traffic to capture (or give `interface`)")
        address = self.resolve(self.dest)
        try:
            out = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AgentError("cannot ask the routing table (ip route get): %s" % error) from None
        found = re.search(r"\bdev (\S+)", out.stdout)
        if out.returncode != 0 or not found:
            raise AgentError("no route to %s (%s): %s"
                             % (self.dest, address, out.stderr.strip() or out.stdout.strip()))
        return found.group(1)

    def _file(self):
        if self.dumpfile:
            return self.dumpfile
        self._captures += 1
        directory = os.path.join(tempfile.gettempdir(), "magi-tcpdump",
                                 SAFE.sub("_", self.run_name or "run"))
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, "%s-%s-%d.pcap" % (SAFE.sub("_", self.name or "tcpdump"),
                                                          SAFE.sub("_", self.node or "node"),
                                                          self._captures))

    def startCollection(self):
        """Starts tcpdump on the interface toward `dest`, writing to the run's capture file;
        returns true once it captures."""
        if self._process is not None and self._process.running():
            raise AgentError("a capture already runs into %s; call stopCollection first"
                             % self._current["file"])
        interface = self._interface()
        path = self._file()
        # As root, tcpdump gives up root for the user `tcpdump`, who could not write here:
        # it keeps the agent's own user instead.
        user = pwd.getpwuid(os.getuid()).pw_name
        # Immediate mode: each packet reaches the file as it comes (a capture stopped within
        # libpcap's 1 s block timeout lost the last block); a 8 MiB buffer against drops.
        argv = ["tcpdump", "--immediate-mode", "-B", "8192", "-i", interface, "-w", path, "-U",
                "-Z", user]
        try:
            process = Bounded(argv)
        except OSError as error:
            raise AgentError("cannot run tcpdump: %s (the Debian package `tcpdump` provides "
                             "it)" % (error.strerror or error)) from None
        # As the original, a second (a tcpdump that cannot start has ended by then), and on
        # a loaded machine until tcpdump says it captures ("listening on ..."), so that
        # traffic sent right after startCollection is in the file.
        time.sleep(1)
        deadline = time.time() + 10
        while (process.running() and "listening on" not in process.output_so_far()
               and time.time() < deadline):
            time.sleep(0.05)
        if not process.running():
            result = process.wait()
            raise AgentError("tcpdump did not start (exit status %s): %s"
                             % (result["exitStatus"], result["stderr"].strip()))
        self._process = process
        self._current = {"file": path, "interface": interface, "dest": self.dest}
        return True

    def stopCollection(self):
        """Stops the capture and records it: {retVal: true, file, interface, dest, packets,
        bytes}."""
        process, self._process = self._process, None
        if process is None:
            return True
        process.send(signal.SIGINT)
        result = process.wait(timeout=5)
        fields = dict(self._current, duration=result["duration"])
        for name, pattern in (("packets", CAPTURED), ("packetsReceived", RECEIVED),
                              ("packetsDropped", DROPPED)):
            found = pattern.search(result["stderr"])
            fields[name] = int(found.group(1)) if found else None
        try:
            fields["bytes"] = os.path.getsize(fields["file"])
        except OSError:
            fields["bytes"] = None
        self.record(**fields)
        if fields["bytes"] is not None:
            # The capture goes into the run record: files/<node>/<agent>/<its name>.
            self.hand_back(fields["file"])
        return dict(fields, retVal=True)

    def stop(self):
        if self._process is not None:
            self._process.stop()


if __name__ == "__main__":
    run(Tcpdump)
