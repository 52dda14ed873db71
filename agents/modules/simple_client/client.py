"""simple_client: the original MAGI's simple TCP client, rewritten original-style.

startclient connects to `server` (a node name, resolved through the run's host map) on
`port`, says hello and records each answer of the server ({server_text}); stopclient
says goodbye and closes the connection."""

import json
import logging
import random
import socket
import threading
import time

from magi.testbed import testbed
from magi.util import database
from magi.util.agent import DispatchAgent, agentmethod

log = logging.getLogger(__name__)


class Client(DispatchAgent):

    def __init__(self):
        DispatchAgent.__init__(self)
        self.server = "localhost"
        self.port = 55343
        self.clientId = None
        self.connection = None

    def setConfiguration(self, msg, **kwargs):
        DispatchAgent.setConfiguration(self, msg, **kwargs)
        if self.clientId is None:
            self.clientId = testbed.nodename
        return True

    @agentmethod()
    def startclient(self, msg):
        address = (testbed.getHostForName(self.server), int(self.port))
        for attempt in range(10):
            try:
                self.connection = socket.create_connection(address, timeout=2)
                break
            except OSError as error:
                log.info("attempt %d to reach %s: %s", attempt + 1, address, error)
                time.sleep(0.1 + random.random() * 0.3)
        else:
            raise ConnectionError("cannot reach server %s at %s:%d after 10 attempts"
                                  % (self.server, address[0], address[1]))
        self.connection.settimeout(None)
        self._send("hello server")
        threading.Thread(target=self._listen, args=(self.connection,), daemon=True).start()

    @agentmethod()
    def stopclient(self, msg):
        if self.connection is not None:
            self._send("goodbye")
            self.connection.close()
            self.connection = None
        DispatchAgent.stop(self, msg)

    def _send(self, text):
        line = json.dumps({"src": self.clientId, "text": text}) + "\n"
        self.connection.sendall(line.encode())

    def _listen(self, connection):
        collection = database.getCollection(self.name)
        try:
            for line in connection.makefile("rb"):
                collection.insert({"server_text": json.loads(line)["text"]})
        except (OSError, ValueError, KeyError) as error:
            log.info("connection to the server ended: %s", error)


def getAgent(**kwargs):
    agent = Client()
    agent.setConfiguration(None, **kwargs)
    return agent
