"""The message an original agent's method receives as its first argument (`msg`)."""


class MAGIMessage(object):
    """A call as the original delivered it: `data` is {'version', 'method', 'args'} (a dict
    here, not YAML text), `src` the sender (the run's name: all calls come from its
    orchestrator), `dstdocks` the agent's dock."""

    YAML = 2
    PICKLE = 3

    def __init__(self, src=None, srcdock=None, dstgroups=(), dstdocks=(), dstnodes=(),
                 data=None, contenttype=YAML, **kwargs):
        self.src = src
        self.srcdock = srcdock
        self.dstgroups = set(dstgroups or ())
        self.dstdocks = set(dstdocks or ())
        self.dstnodes = set(dstnodes or ())
        self.data = data
        self.contenttype = contenttype
        self.msgid = kwargs.get("msgid")
        # Set by the runner on the calls it delivers: where the method's answer goes.
        self._reply = None

    def __repr__(self):
        return "MAGIMessage(src=%r, dstdocks=%r, data=%r)" % (
            self.src, sorted(self.dstdocks), self.data)
