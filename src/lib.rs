//! mako-gateway: an EDIFACT gateway for German electricity market communication (MaKo).
//!
//! Layers, from the bottom up; a layer may only use the ones below it:
//!
//! - [`edifact`]: bytes to tree and back (pure: no I/O, no clock).
//! - [`ids`]: market identifiers and EDIFACT dates as checked newtypes (pure).
//! - [`grammar`]: MIG and AHB data from `grammars/`, and the validator (pure).
//! - [`acks`]: CONTRL and APERAK both ways, working days and deadlines (pure).
//! - [`orders`]: the two order kinds, product rules, outbound builders, `apply` (pure).
//! - [`config`]: the daemon's configuration from TOML and the environment (pure: the caller
//!   reads the file and the environment).
//! - [`store`]: the durable store over SQLite or PostgreSQL (I/O: uses `orders`, decides nothing).
//! - [`transport`]: the e-mail transport's S/MIME core (pure apart from reading PEM files;
//!   SMTP and IMAP come later).
//! - [`api`]: the HTTP API for the supplier's core system (I/O: uses `store` and `orders`).
//! - [`cli`]: the command line, which reads files and prints.
//!
//! The grammar, message, order, store, transport, API and daemon layers described in the
//! README are added on top of these.

pub mod acks;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod edifact;
pub mod grammar;
pub mod ids;
pub mod orders;
pub mod plan;
pub mod store;
pub mod transport;
pub mod worker;
