"""initializeProcessAgent: how an `execute: pipe|socket` agent's __main__ binds itself."""

import json
import logging

from magi import _runtime

log = logging.getLogger(__name__)


def initializeProcessAgent(agent, argv):
    """Binds `agent` to the node agent's calls and returns its configuration (the
    execargs, with `hostname` and `execute`), which the caller passes to
    agent.setConfiguration(None, **kwargs), as in the original. `argv` is the original's
    (mainfile, name, dock, two unused config paths, key=value...); the values come from the
    protocol's start line, so their types are exact."""
    context = _runtime.context()
    context.channel_agent._bind(agent)
    args = argv_to_dict(argv[5:]) if argv else {}
    args.update(context.execargs)
    args.setdefault("hostname", context.node)
    for key, default in (("hostname", context.node), ("execute", "socket"),
                         ("loglevel", "INFO"), ("commGroup", None)):
        setattr(agent, key, args.get(key, default))
    log.info("agent %s on %s initialised with %s", context.name, context.node, args)
    return args


def argv_to_dict(argv):
    """`key=value` words to a dict; values are read as JSON when they are, else text."""
    result = {}
    for word in argv:
        key, sep, value = str(word).partition("=")
        if not sep or not key:
            continue
        try:
            result[key] = json.loads(value)
        except ValueError:
            result[key] = value
    return result
