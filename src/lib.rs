//! mako-gateway: an EDIFACT gateway for German electricity market communication (MaKo).
//!
//! Layers, from the bottom up; a module may only use the ones below it (and
//! `tests/layering.rs` checks it, with no import cycles at any level):
//!
//! - [`clock`], [`ids`], [`edifact`], [`alloc`]: the one wall-clock reader; market
//!   identifiers, dates and record ids as checked newtypes; bytes to tree and back (pure: no
//!   I/O); the allocator's memory given back after a large interchange.
//! - [`grammar`]: MIG and AHB data from `grammars/`, and the validator (pure).
//! - [`acks`]: CONTRL and APERAK both ways, working days and deadlines (pure).
//! - [`orders`]: the two order kinds, product rules, lead times, builders, `apply` (pure).
//! - [`plan`]: the decisions of the shell as complete plans: what a received interchange
//!   changes and sends back, what an outbox item puts on the wire and changes, what a
//!   request of the supplier core creates (pure).
//! - [`config`]: the daemon's configuration from TOML and the environment (pure: the caller
//!   reads the file and the environment).
//! - [`store`]: the durable store over SQLite or PostgreSQL; commits a plan in one call
//!   (I/O; decides nothing).
//! - [`transport`]: the file drop, e-mail (S/MIME, SMTP, IMAP) and AS4 (BDEW profile over
//!   HTTPS), each behind the two seams [`transport::Outbound`] and
//!   [`transport::InboundSink`] (I/O).
//! - [`worker`] and [`api`]: the workers that claim work and carry out plans; the HTTP API for
//!   the supplier core (I/O).
//! - [`daemon`]: the wiring of `serve`: configuration checked as a whole, the clock, the
//!   loops, shutdown.
//! - [`cli`]: the command line, which reads files and prints.
//!
//! The inbound path, file by file: `transport/{file_drop,email/receive,as4/receive}.rs` →
//! `worker/receive.rs` (journaled, committed, then acknowledged) → `worker/inbound.rs` (claims
//! a batch) → `plan/inbound.rs` (`read_inbound`: parse once, validate, acknowledgements;
//! `plan_inbound`: transitions, history, events, replies, clearing) → `store/plans.rs`
//! (`apply_inbound_plans`: one transaction, a few multi-row statements) → the outbox →
//! `worker/outbound.rs` → `plan/outbound.rs` → a [`transport::Outbound`].

pub mod acks;
pub mod alloc;
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

/// The allocator of every binary built on this crate (the daemon, the tools, the tests and the
/// benchmarks measure the same one): mimalloc, for the many short-lived allocations of
/// reading, validating and answering messages (issue 16: glibc's malloc/free was 14 % of the
/// AS4 receive path; the measured effect is in Cargo.toml). The feature `system-allocator`
/// builds with the system's malloc instead, for heap profilers that watch malloc (`heaptrack`
/// sees nothing of mimalloc's heap).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
