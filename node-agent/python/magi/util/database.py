"""The original's data collections (MongoDB there), onto the MAGI-rs data layer.

`getCollection(name).insert(doc)` sends `doc` as a record of the agent (the node agent adds
its agent, host and time; `magi graph` and `magi data query` read it from the run's store).
There is no query back into the store from an agent: `find` answers from the documents this
agent inserted in this process, and `remove` forgets them here only (a run's store is
append-only).
"""

import logging
import threading
import time
import uuid

from magi import _runtime

log = logging.getLogger(__name__)

HOST_FIELD_KEY = "host"
CREATED_TS_FIELD_KEY = "created"
AGENT_FIELD_KEY = "agent"
INTERNAL_KEYS = [HOST_FIELD_KEY, CREATED_TS_FIELD_KEY, AGENT_FIELD_KEY]
DB_NAME = "magi"
COLLECTION_NAME = "experiment_data"

_collections = {}
_lock = threading.Lock()
_warned = set()


def isDBEnabled():
    return True


def getCollection(agentName, dbHost=None, dbPort=None):
    """The collection of `agentName` (one per name, as the original cached them)."""
    context = _runtime.context()
    with _lock:
        if agentName not in _collections:
            if agentName != context.name and agentName not in _warned:
                _warned.add(agentName)
                log.warning("collection %r: records go to the run's store under this agent's "
                            "name, %r", agentName, context.name)
            _collections[agentName] = Collection(agentName, context.node)
        return _collections[agentName]


def getData(agentName, filters=None, timestampRange=None, dbHost=None, dbPort=None):
    """The documents of `agentName` inserted in this process matching `filters` and, with
    `timestampRange` (start, end), created in it."""
    spec = dict(filters or {})
    if timestampRange:
        start, end = timestampRange
        spec[CREATED_TS_FIELD_KEY] = {"$gte": start, "$lte": end}
    return list(getCollection(agentName).findAll(spec))


class Cursor(list):
    """The documents found: a list, with the cursor's count() and next()."""

    def count(self, *args, **kwargs):
        return len(self)

    def next(self):
        if not self:
            raise StopIteration
        return self.pop(0)


def _matches(doc, spec):
    for key, want in spec.items():
        have = doc.get(key)
        if isinstance(want, dict) and want and all(k.startswith("$") for k in want):
            for op, operand in want.items():
                if not _compare(op, have, operand):
                    return False
        elif have != want:
            return False
    return True


def _compare(op, have, operand):
    try:
        if op == "$gt":
            return have is not None and have > operand
        if op == "$gte":
            return have is not None and have >= operand
        if op == "$lt":
            return have is not None and have < operand
        if op == "$lte":
            return have is not None and have <= operand
        if op == "$ne":
            return have != operand
        if op == "$in":
            return have in operand
        if op == "$nin":
            return have not in operand
        if op == "$exists":
            return (have is not None) == bool(operand)
    except TypeError:
        return False
    raise ValueError("query operator %s is not supported here (only $gt, $gte, $lt, $lte, "
                     "$ne, $in, $nin, $exists)" % op)


class Collection(object):
    """One agent's collection: insert records, find what this process inserted."""

    def __init__(self, agentName, hostName):
        self.agentName = agentName
        self.hostName = hostName
        self._docs = []
        self._lock = threading.Lock()

    def insert(self, doc_or_docs, *args, **kwargs):
        """Records one document or a list of them; returns the id (or ids) given."""
        docs = doc_or_docs if isinstance(doc_or_docs, list) else [doc_or_docs]
        if not isinstance(doc_or_docs, (dict, list)):
            raise TypeError("document(s) must be an instance of dict or a list of dicts")
        for doc in docs:
            if not isinstance(doc, dict):
                raise TypeError("each document must be an instance of dict")
            if set(INTERNAL_KEYS) & set(doc):
                raise RuntimeError("The following keys are restricted for internal use: %s"
                                   % INTERNAL_KEYS)
        context = _runtime.context()
        ids = []
        for doc in docs:
            data = {str(k): v for k, v in doc.items() if k != "_id"}
            context.channel_agent._send({"kind": "record", "data": data})
            doc.setdefault("_id", uuid.uuid4().hex)
            doc[HOST_FIELD_KEY] = self.hostName
            doc[CREATED_TS_FIELD_KEY] = time.time()
            doc[AGENT_FIELD_KEY] = self.agentName
            with self._lock:
                self._docs.append(dict(doc))
            ids.append(doc["_id"])
        return ids if isinstance(doc_or_docs, list) else ids[0]

    insert_one = insert
    save = insert

    def find(self, spec=None, *args, **kwargs):
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise TypeError("spec must be an instance of dict")
        with self._lock:
            return Cursor(dict(d) for d in self._docs if _matches(d, spec))

    findAll = find

    def find_one(self, spec=None, *args, **kwargs):
        found = self.find(spec)
        return found[0] if found else None

    def count(self, spec=None):
        return len(self.find(spec))

    def remove(self, spec_or_id=None, *args, **kwargs):
        """Forgets matching documents here; the run's store keeps its records."""
        if spec_or_id is None:
            spec = {}
        elif isinstance(spec_or_id, dict):
            spec = spec_or_id
        else:
            spec = {"_id": spec_or_id}
        with self._lock:
            kept = [d for d in self._docs if not _matches(d, spec)]
            removed = len(self._docs) - len(kept)
            self._docs = kept
        return {"n": removed, "ok": 1}

    removeAll = remove
