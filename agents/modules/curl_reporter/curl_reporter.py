"""curl_reporter: every `interval` seconds, fetches a URL from each of `dests` with curl and
records its latency and bandwidth, as the original's curl_reporter module
(deter-project/magi-modules curl_reporter/curl_reporter.idl: startCollection,
stopCollection; variables dests, url, sizes, interval, wait, useSocks...), written anew for
the MAGI-rs agent protocol. One record per fetch: dest, size, tcp_connected,
start_transfer, total_time (seconds), bandwidth (bytes/s), proto, topology, sut.
"""

import threading

from magi_agent import Agent, AgentError, positive, run, run_command

WRITE_OUT = "%{time_connect},%{time_starttransfer},%{time_total},%{speed_download}"


class CurlReporter(Agent):
    dests = []                                   # node names (or addresses) of web servers
    url = "%s://%s/getsize.py?length=%d"         # protocol, dest, size
    sizes = [1, 8192, 16384, 65536, 1048576]     # bytes asked, one per round, in turn
    interval = 10                                # seconds between rounds
    wait = 0                                     # seconds between dests within a round
    protocol = "http"
    useSocks = False
    socksVersion = 4
    socksServer = "localhost"
    socksPort = 5010
    topology = ""                                # copied into each record
    sut = ""                                     # copied into each record
    timeout = 60                                 # seconds a fetch may take
    truncate = False                             # the original's; records are never deleted

    def __init__(self):
        self._lock = threading.Lock()
        self._active = None
        self._round = 0

    def confirmConfiguration(self):
        if isinstance(self.dests, str):
            self.dests = [self.dests]
        if not isinstance(self.dests, list) or not all(isinstance(d, str) and d
                                                       for d in self.dests):
            raise AgentError("dests must be a list of node names, not %r" % (self.dests,))
        if not isinstance(self.sizes, list) or not self.sizes:
            raise AgentError("sizes must be a non-empty list of byte counts, not %r"
                             % (self.sizes,))
        self.sizes = [positive(s, "sizes: each size", integer=True, zero=True)
                      for s in self.sizes]
        self.interval = positive(self.interval, "interval (seconds)", maximum=86400)
        self.wait = positive(self.wait, "wait (seconds)", maximum=86400, zero=True)
        self.timeout = positive(self.timeout, "timeout (seconds)", maximum=86400)
        if self.protocol not in ("http", "https"):
            raise AgentError("protocol must be http or https, not %r" % (self.protocol,))
        try:
            self.url % (self.protocol, "host", 1)
        except (TypeError, ValueError):
            raise AgentError("url must be a template with %%s (protocol), %%s (host) and %%d "
                             "(size), in that order, not %r" % (self.url,)) from None
        self.socksVersion = positive(self.socksVersion, "socksVersion", integer=True)
        if self.socksVersion not in (4, 5):
            raise AgentError("socksVersion must be 4 or 5, not %r" % (self.socksVersion,))
        self.socksPort = positive(self.socksPort, "socksPort", integer=True, maximum=65535)
        return True

    def startCollection(self):
        """Starts the rounds (the first at once); returns true."""
        for dest in self.dests:
            self.resolve(dest)   # an unknown node is an error now, not in every round
        with self._lock:
            if self._active is None:
                self._active = threading.Event()
                threading.Thread(target=self._loop, args=(self._active,), daemon=True).start()
            else:
                self.log("startCollection: collection is already active", "warn")
        return True

    def stopCollection(self):
        """Stops after the fetch in flight; returns true."""
        with self._lock:
            if self._active is not None:
                self._active.set()
                self._active = None
        return True

    def stop(self):
        self.stopCollection()

    def _loop(self, stopped):
        while not stopped.is_set():
            size = self.sizes[self._round % len(self.sizes)]
            self._round += 1
            for dest in list(self.dests):
                if stopped.is_set():
                    return
                self._fetch(dest, size)
                stopped.wait(float(self.wait))
            stopped.wait(float(self.interval))

    def _fetch(self, dest, size):
        url = self.url % (self.protocol, self.resolve(dest), size)
        argv = ["curl", "-S", "-s", "-o", "/dev/null", "-w", WRITE_OUT,
                "--max-time", "%g" % self.timeout, url]
        if self.useSocks:
            argv += ["--proxy", "socks%d://%s:%d" % (self.socksVersion, self.socksServer,
                                                      self.socksPort)]
        if self.protocol == "https":
            argv.append("--insecure")   # testbed servers' certificates are self-signed
        fields = {"dest": dest, "size": size, "proto": self.protocol,
                  "topology": self.topology, "sut": self.sut, "url": url}
        try:
            result = run_command(argv, timeout=self.timeout + 5, limit=4096)
        except OSError as error:
            raise AgentError("cannot run curl: %s" % (error.strerror or error)) from None
        try:
            connect, first, total, speed = (float(x) for x in result["stdout"].split(","))
            fields.update(tcp_connected=connect, start_transfer=first, total_time=total,
                          bandwidth=speed)
        except ValueError:
            pass
        if result["exitStatus"] != 0:
            fields.update(exitStatus=result["exitStatus"], error=result["stderr"].strip())
        self.record(**fields)


if __name__ == "__main__":
    run(CurlReporter)
