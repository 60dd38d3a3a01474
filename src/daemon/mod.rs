//! The daemon: the inbound and outbound paths, the webhook deliveries and the file-drop
//! transport around the pure core ([`crate::plan`]).

pub mod as4;
pub mod email;
pub mod filedrop;
pub mod gateway;
pub mod serve;
