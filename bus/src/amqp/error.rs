//! From lapin's errors to the bus's three outcomes.

use crate::{AttachError, SendError};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;

/// The broker's error code and text, when the error came from the broker.
pub(crate) fn amqp_error(e: &lapin::Error) -> Option<(&AMQPErrorKind, String)> {
    match e.kind() {
        ErrorKind::ProtocolError(a) => Some((a.kind(), a.get_message().to_string())),
        _ => None,
    }
}

/// True when the broker closed the channel because something does not exist (404).
pub(crate) fn is_not_found(e: &lapin::Error) -> bool {
    matches!(
        amqp_error(e),
        Some((AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND), _))
    )
}

/// True for errors that closed the channel but leave the connection usable.
pub(crate) fn is_channel_error(e: &lapin::Error) -> bool {
    e.is_amqp_soft_error()
}

/// Map a lapin error met while doing `what`.
pub(crate) fn to_bus(what: &str, e: &lapin::Error) -> SendError {
    match amqp_error(e) {
        Some((AMQPErrorKind::Soft(_), text)) => SendError::Refused(format!("{what}: {text}")),
        Some((AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED), text))
        | Some((AMQPErrorKind::Hard(AMQPHardError::INVALIDPATH), text)) => {
            SendError::Refused(format!("{what}: {text}"))
        }
        Some((AMQPErrorKind::Hard(_), text)) => SendError::Disconnected(format!("{what}: {text}")),
        None => SendError::Disconnected(format!("{what}: {e}")),
    }
}

/// Map a lapin error met while attaching or opening `what`: a second exclusive consumer of
/// the queue (another node agent of the name, another orchestrator of the run) is
/// [`AttachError::InUse`].
pub(crate) fn to_attach(what: &str, e: &lapin::Error) -> AttachError {
    match amqp_error(e) {
        Some((AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED), text))
        | Some((AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED), text))
            if text.contains("exclusive") =>
        {
            AttachError::InUse(what.to_string())
        }
        _ => to_bus(what, e).into(),
    }
}
