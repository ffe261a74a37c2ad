//! Backends behind the ports: the embedded store and in-process queue for one
//! process on a laptop, DynamoDB and SQS for AWS, the system clock, guarded
//! outgoing HTTP.

pub mod aws;
mod checks;
pub mod clock;
pub mod dynamodb;
pub mod embedded;
pub mod http;
pub mod sqs;
