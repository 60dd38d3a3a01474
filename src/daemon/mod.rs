//! The daemon: the inbound and outbound paths, the webhook deliveries and the file-drop
//! transport around the pure core. [`inbound`] is the pure part of the inbound path.

pub mod as4;
pub mod email;
pub mod filedrop;
pub mod gateway;
pub mod inbound;
pub mod outbound;
pub mod serve;
pub mod webhooks;
