"""The original's magi.util.config: who and where the agent is.

The experiment and project are MAGI_EXPERIMENT and MAGI_PROJECT from the node agent's
environment, else the DETER/Emulab node's nickname file (node.experiment.project), else the
run's name and "default".
"""

import os
import tempfile

from magi import _runtime

NICKNAME_FILE = "/var/emulab/boot/nickname"


def getNodeName():
    return _runtime.context().node


def _nickname():
    try:
        with open(NICKNAME_FILE) as fp:
            parts = fp.readline().strip().split(".")
    except OSError:
        return None
    return parts if len(parts) >= 3 else None


def getExperiment():
    if os.environ.get("MAGI_EXPERIMENT"):
        return os.environ["MAGI_EXPERIMENT"]
    nick = _nickname()
    return nick[1] if nick else _runtime.context().run


def getProject():
    if os.environ.get("MAGI_PROJECT"):
        return os.environ["MAGI_PROJECT"]
    nick = _nickname()
    return nick[2] if nick else "default"


def getConfig():
    """The part of the original's node configuration agents read."""
    context = _runtime.context()
    return {"localInfo": {"nodename": context.node},
            "database": {"isDBEnabled": True},
            "expdl": {"experimentName": getExperiment(), "projectName": getProject()}}


def _own_dir(kind):
    context = _runtime.context()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in
                   "%s-%s" % (context.run, context.name))
    path = os.path.join(tempfile.gettempdir(), "magi-%d" % os.getuid(), safe, kind)
    os.makedirs(path, exist_ok=True)
    return path


def getLogDir():
    """A directory of the agent's own for log files (the module directory is a shared
    cache and stays untouched)."""
    return _own_dir("logs")


def getTempDir():
    return _own_dir("tmp")


def getDbDir():
    return _own_dir("db")
