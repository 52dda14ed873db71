"""How a call reaches an original-style agent's method (the original's magi/util/calls.py):
`method(msg, **args)`, the arguments it does not take dropped (unless it has **kwargs)."""

import logging

import magi_agent

log = logging.getLogger(__name__)


class CallException(Exception):
    """A call that cannot be made (no such method)."""


def dispatchCall(obj, msg, data):
    """Calls `data['method']` of `obj` with `msg` and the arguments it accepts."""
    method = data.get("method")
    args = dict(data.get("args") or {})
    function = None
    if isinstance(method, str) and method and not method.startswith("_"):
        function = getattr(obj, method, None)
    if function is None or not callable(function):
        raise magi_agent.AgentError("agent %s has no method %s" % (getattr(obj, "name", obj), method))
    if "msg" in args:
        del args["msg"]
        log.error("Can't use 'msg' as an argument name (dropped)")
    accepted = magi_agent._accepted(function, args)
    accepted.pop("msg", None)
    return function(msg, **accepted)


def doMessageAction(obj, msg, messaging=None):
    """Runs the call carried by `msg` and sends its answer (the value, or the exception)
    back to the node agent, which makes the trigger."""
    reply = getattr(msg, "_reply", None)
    data = msg.data if isinstance(msg.data, dict) else {}
    if "method" not in data:
        log.warning("got a message without a method: %r", msg)
        return
    try:
        value = dispatchCall(obj, msg, data)
    except BaseException as error:  # noqa: B036 - the call's answer is the failure
        if reply is None:
            log.error("call %s failed: %s", data.get("method"), error, exc_info=True)
        elif not reply.done():
            reply.set_exception(error)
        return
    if reply is not None and not reply.done():
        reply.set_result(value)
