//! The decisions of the shell, pure: what a received interchange changes and what goes back
//! ([`inbound`]), what an order in the outbox becomes on the wire and in the store
//! ([`outbound`]), what the supplier core hands over to be sent as it is ([`passthrough`]),
//! and how webhook events are signed and retried ([`webhooks`]).
//!
//! Each planner hands back a complete value for the shell to carry out, as quinn-proto hands
//! quinn its `Transmit`s: the worker executes and the store commits it in one call; neither
//! re-derives nor re-applies anything. No I/O, no clock: the time and what was loaded from the
//! store come in as arguments.

pub mod deadlines;
pub mod forward;
pub mod inbound;
pub mod outbound;
pub mod passthrough;
pub mod records;
pub mod requests;
pub mod routing;
pub mod webhooks;
