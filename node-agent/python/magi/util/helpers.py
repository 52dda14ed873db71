"""The original's magi.util.helpers, the parts agents use."""

import errno
import logging
import os
import platform
import threading

log = logging.getLogger(__name__)

logLevels = {
    "NONE": 100,
    "ALL": 0,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

LOG_FORMAT = "%(asctime)s %(name)-30s %(levelname)-8s %(message)s"
LOG_FORMAT_MSECS = "%(asctime)s.%(msecs)03d %(name)-30s %(levelname)-8s %(message)s"
LOG_DATEFMT = "%m-%d %H:%M:%S"

ALL = "__ALL__"
DEFAULT = "__DEFAULT__"


def entrylog(log, functionName, arguments=None, level=logging.DEBUG):
    if arguments is None:
        log.log(level, "Entering function %s", functionName)
    else:
        log.log(level, "Entering function %s with arguments: %s", functionName, arguments)


def exitlog(log, functionName, returnValue=None, level=logging.DEBUG):
    if returnValue is None:
        log.log(level, "Exiting function %s", functionName)
    else:
        log.log(level, "Exiting function %s with return value: %s", functionName, returnValue)


def makeDir(name):
    try:
        os.makedirs(name)
    except OSError as error:
        if error.errno != errno.EEXIST:
            raise


def toSet(value):
    if isinstance(value, set):
        return value
    if isinstance(value, (list, tuple)):
        return set(value)
    if isinstance(value, str):
        return set(s.strip() for s in value.split(","))
    if value is None:
        return set()
    return set([value])


def _yaml():
    try:
        import yaml
    except ImportError:
        raise ImportError("loadYaml/writeYaml need PyYAML on the node (apt install python3-yaml)")
    return yaml


def loadYaml(filename):
    """YAML data from a file (or an open file)."""
    yaml = _yaml()
    if hasattr(filename, "read"):
        return yaml.safe_load(filename)
    with open(filename) as fp:
        return yaml.safe_load(fp)


def writeYaml(data, filename):
    yaml = _yaml()
    with open(filename, "w") as fp:
        return yaml.safe_dump(data, fp)


def getFQCN(obj):
    return obj.__module__ + "." + obj.__class__.__name__


def is_os_64bit():
    return platform.machine().endswith("64")


def getThreadId():
    return threading.get_native_id()


def toControlPlaneNodeName(nodename):
    """The name to reach a node by; MAGI-rs has no separate control plane name."""
    return nodename
