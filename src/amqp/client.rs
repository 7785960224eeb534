//! The Aliyun AMQP client (skeleton).
