"""nodeStats: samples the node every `interval` seconds into the run's data layer: CPU use
and load average (`type: node`, the original's fields), memory (`type: memory`), interface
counters (`type: interface`) and the CPU use of the node agent, its threads and the agents
it runs (`type: process`), after one `type: nodeinfo` record. The interface is the original
module's (deter-project/magi-modules nodeStats/nodeStats.idl: startCollection,
stopCollection, variables interval, experimentDescription, nodeDescription), written anew
for the MAGI-rs agent protocol; everything is read from /proc.
"""

import os
import threading
import time

from magi_agent import Agent, AgentError, positive, run


def cpu_totals():
    """(total, work) jiffies of all CPUs: total counts user, nice, system, idle and iowait,
    work the first three (as the original counted)."""
    with open("/proc/stat") as f:
        cells = [int(x) for x in f.readline().split()[1:6]]
    return sum(cells), sum(cells[:3])


def process_jiffies(path):
    """utime + stime of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat."""
    with open(path) as f:
        text = f.read()
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def memory():
    wanted = {"MemTotal": "mem_total", "MemFree": "mem_free", "MemAvailable": "mem_available",
              "Buffers": "buffers", "Cached": "cached", "SwapTotal": "swap_total",
              "SwapFree": "swap_free"}
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in wanted:
                out[wanted[key]] = int(rest.split()[0])   # kB
    return out


def interfaces():
    names = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", None, None, None, None,
             "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
    out = []
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            name, _, rest = line.partition(":")
            cells = rest.split()
            entry = {"name": name.strip()}
            entry.update({n: int(c) for n, c in zip(names, cells) if n})
            out.append(entry)
    return out


def children(pid):
    """The processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    text = f.read()
                if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue   # the process ended meanwhile
    return sorted(found)


class NodeStats(Agent):
    interval = 1                 # seconds between samples
    experimentDescription = ""   # free text, in the nodeinfo record
    nodeDescription = ""         # free text, in the nodeinfo record
    truncate = True              # the original's: accepted; records are never deleted here
    recordLimit = 0              # the original's: accepted; records are never deleted here

    def __init__(self):
        self._lock = threading.Lock()
        self._active = None      # the Event of the running sampler, if any
        self._info_sent = False

    def confirmConfiguration(self):
        self.interval = positive(self.interval, "interval (seconds)", maximum=86400)
        if self.interval < 0.1:
            raise AgentError("interval must be at least 0.1 s, not %r" % (self.interval,))
        for key in ("experimentDescription", "nodeDescription"):
            if not isinstance(getattr(self, key), str):
                raise AgentError("%s must be text, not %r" % (key, getattr(self, key)))
        return True

    def startCollection(self):
        """Records a sample now and every `interval` seconds until stopCollection."""
        with self._lock:
            if self._active is not None:
                self.log("startCollection: collection is already active", "warn")
                return True
            if not self._info_sent:
                self.record(type="nodeinfo", node=self.node, experiment=self.run_name,
                            project=None, is_container=_in_container(),
                            experimentDescription=self.experimentDescription,
                            nodeDescription=self.nodeDescription,
                            cpus=os.cpu_count())
                self._info_sent = True
            self._active = threading.Event()
            self._sampler = threading.Thread(target=self._sample, args=(self._active,),
                                             daemon=True)
            self._sampler.start()
        return True

    def stopCollection(self):
        """Stops sampling; returns once the last sample is recorded."""
        with self._lock:
            active, self._active = self._active, None
        if active is not None:
            active.set()
            self._sampler.join(timeout=10)
        return True

    def stop(self):
        self.stopCollection()

    def _sample(self, stopped):
        previous = {"cpu": cpu_totals()}
        next_at = time.monotonic()
        while not stopped.is_set():
            self._one(previous)
            next_at += float(self.interval)
            stopped.wait(max(0.0, next_at - time.monotonic()))

    def _one(self, previous):
        total, work = cpu_totals()
        last_total, last_work = previous["cpu"]
        previous["cpu"] = (total, work)
        elapsed = total - last_total
        with open("/proc/loadavg") as f:
            load = f.read().split()
        self.record(type="node", cpu_usage=100.0 * (work - last_work) / elapsed if elapsed else 0.0,
                    cpu_jiffies=work - last_work, load_average_1=float(load[0]),
                    load_average_5=float(load[1]), load_average_15=float(load[2]),
                    load_average_total=int(load[3].split("/")[1]))
        self.record(type="memory", **memory())
        for entry in interfaces():
            self.record(type="interface", **entry)
        # The node agent (this agent's parent), its threads, and the agents it runs.
        node = os.getppid()
        paths = [(node, None, "/proc/%d/stat" % node)]
        try:
            paths += [(node, int(t), "/proc/%d/task/%s/stat" % (node, t))
                      for t in os.listdir("/proc/%d/task" % node)]
        except OSError:
            pass
        paths += [(p, -1, "/proc/%d/stat" % p) for p in children(node)]
        for pid, tid, path in paths:
            key = (pid, tid)
            try:
                jiffies = process_jiffies(path)
            except (OSError, ValueError, IndexError):
                continue   # ended meanwhile
            before = previous.get(key)
            previous[key] = (total, jiffies)
            if before is None:
                continue   # the first sample of a process has nothing to compare with
            spent, span = jiffies - before[1], total - before[0]
            fields = {"type": "process", "process_id": pid,
                      "cpu_usage": 100.0 * spent / span if span else 0.0, "cpu_jiffies": spent}
            if tid is not None:
                fields["thread_id"] = tid
            self.record(**fields)


def _in_container():
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


if __name__ == "__main__":
    run(NodeStats)
