"""simple_server: the original MAGI's simple TCP server, rewritten original-style.

A SharedServer: startServer listens on `port` at the node's address. Each client sends
JSON lines {src, text}; the server answers the first with a greeting and every later one
with "Thank you", and records each message received ({client, text})."""

import json
import logging
import socket
import threading

from magi.testbed import testbed
from magi.util import database
from magi.util.agent import SharedServer

log = logging.getLogger(__name__)


class Server(SharedServer):

    def __init__(self):
        SharedServer.__init__(self)
        self.port = 55286
        self.listener = None

    def runserver(self):
        addresses = testbed.getLocalIPList()
        self.listener = socket.create_server((addresses[0] if addresses else "0.0.0.0",
                                              int(self.port)))
        self.listener.settimeout(0.5)
        threading.Thread(target=self._accept, daemon=True).start()
        log.info("listening on %s", self.listener.getsockname())
        return True

    def terminateserver(self):
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        return True

    def stop(self, msg):
        self.terminateserver()
        SharedServer.stop(self, msg)

    def _accept(self):
        while self.listener is not None:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        collection = database.getCollection(self.name)
        greeted = False
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    message = json.loads(line)
                    client, text = str(message["src"]), str(message["text"])
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring a line that is not {src, text}: %r", line[:200])
                    continue
                collection.insert({"client": client, "text": text})
                answer = "Thank you" if greeted else "Hello Client %s from the server" % client
                greeted = True
                stream.write((json.dumps({"src": "server", "text": answer}) + "\n").encode())
                stream.flush()


def getAgent(**kwargs):
    agent = Server()
    agent.setConfiguration(None, **kwargs)
    return agent
