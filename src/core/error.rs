//! Errors the core reports to listeners. Each variant corresponds to one AMQP reply code
//! class; listeners map them to their protocol's error (channel close, reason code).

/// A refused core operation, with a human-readable reason in RabbitMQ's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The named entity does not exist (AMQP 404).
    #[error("{0}")]
    NotFound(String),
    /// The entity is exclusively owned by another connection (AMQP 405).
    #[error("{0}")]
    ResourceLocked(String),
    /// A declared entity differs from the existing one, or a precondition failed (AMQP 406).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The operation is not permitted on this entity (AMQP 403).
    #[error("{0}")]
    AccessRefused(String),
    /// The request is not valid (AMQP 503).
    #[error("{0}")]
    CommandInvalid(String),
    /// The vhost does not exist or may not be used (AMQP 530).
    #[error("{0}")]
    NotAllowed(String),
}

/// Result type of core operations.
pub type CoreResult<T> = Result<T, CoreError>;
