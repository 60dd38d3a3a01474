//! mako-gateway: an EDIFACT gateway for German electricity market communication (MaKo).
//!
//! Layers, from the bottom up; a layer may only use the ones below it:
//!
//! - [`edifact`]: bytes to tree and back (pure: no I/O, no clock).
//! - [`cli`]: the command line, which reads files and prints.
//!
//! The grammar, message, order, store, transport, API and daemon layers described in the
//! README are added on top of these.

pub mod cli;
pub mod edifact;
