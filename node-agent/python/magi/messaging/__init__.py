"""The original's magi.messaging: only the message class agents see."""

from magi.messaging.magimessage import MAGIMessage

__all__ = ["MAGIMessage"]
