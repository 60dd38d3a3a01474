//! The daemon: wiring, the clock and shutdown. [`setup`] builds everything the configuration
//! names before the store is touched; [`serve`] connects the store and runs the API, the
//! transports' receivers and the workers until shutdown.

pub mod serve;
pub mod setup;
