"""The original's magi.testbed: `from magi.testbed import testbed`.

What the node agent says about the node: its name, its experiment address (the `address`
of the start line), and every node's address by name (its `hosts` map).
"""

import json
import socket
import subprocess

from magi import _runtime
from magi.util import config


class IFObj(object):
    """An interface: ip, name, mac, mask."""

    def __init__(self, ip, name, mac, mask):
        self.ip = ip
        self.name = name
        self.mac = mac
        self.mask = mask

    def __repr__(self):
        return "name=%s, ip=%s, mask=%s, mac=%s" % (self.name, self.ip, self.mask, self.mac)


def _interface_of(ip):
    """The interface holding `ip`, read with `ip -j addr` (None where that fails)."""
    try:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, timeout=5).stdout
        for link in json.loads(out or b"[]"):
            for addr in link.get("addr_info", []):
                if addr.get("local") == ip:
                    bits = int(addr.get("prefixlen", 32))
                    mask = ".".join(str((0xffffffff << (32 - bits) >> s) & 0xff)
                                    for s in (24, 16, 8, 0)) if addr.get("family") == "inet" else None
                    return IFObj(ip, link.get("ifname"), link.get("address"), mask)
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return IFObj(ip, None, None, None)


class Testbed(object):
    """The node as MAGI-rs knows it (the original's testbed API)."""

    @property
    def nodename(self):
        return self.getNodeName()

    @property
    def experiment(self):
        return config.getExperiment()

    eid = experiment

    @property
    def project(self):
        return config.getProject()

    @property
    def fqdn(self):
        return self.getFQDN()

    @property
    def hosts(self):
        """Node name -> experiment address, for every node of the run."""
        return dict(_runtime.context().hosts)

    def getNodeName(self):
        return _runtime.context().node

    def getExperiment(self):
        return config.getExperiment()

    def getProject(self):
        return config.getProject()

    def getFQDN(self):
        return self.nodename

    def getServer(self, FQDN=False):
        names = sorted(self.hosts) or [self.nodename]
        return "control" if "control" in (n.lower() for n in names) else names[0]

    def getExperimentDir(self):
        return config.getTempDir()

    def toControlPlaneNodeName(self, nodename):
        return nodename

    def getLocalIPList(self):
        address = _runtime.context().address
        return [address] if address else []

    def getInterfaceList(self):
        return [_interface_of(ip) for ip in self.getLocalIPList()]

    def getLocalIFList(self):
        return [i.name for i in self.getInterfaceList()]

    def getInterfaceInfo(self, matchip=None, matchname=None):
        if not matchip and not matchname:
            raise KeyError("Either IP or interface name should be provided")
        for i in self.getInterfaceList():
            if (matchip and i.ip == matchip) or (matchname and i.name == matchname):
                return i
        raise KeyError("Invalid IP or interface name provided.")

    def getHostForName(self, name):
        """A node's experiment address by its name (the run's host map), else DNS."""
        hosts = self.hosts
        if name in hosts:
            return hosts[name]
        return socket.gethostbyname(name)

    def amAVirtualNode(self):
        return False

    def getTopoGraph(self):
        raise NotImplementedError(
            "testbed.getTopoGraph(): MAGI-rs gives agents no topology graph; use "
            "testbed.hosts (node name -> address)")

    topograph = property(getTopoGraph)


testbed = Testbed()
