//! magi-bus-amqp
