//! What the campaigns share (`examples/crash_campaign.rs`, `examples/fault_campaign.rs`): the
//! world (a test PKI, the gateway's configuration with three grid operators, one per transport,
//! the database), the real `mako-gateway serve` binary as a child process with its logs, the
//! partners (file drop, e-mail through Postfix/Dovecot, AS4 over HTTPS), which answer every
//! order they receive, the supplier core creating orders over the HTTP API, and the invariants
//! checked at the end from the database and from what the partners received.

#[allow(dead_code)]
#[path = "../../tests/common/pki.rs"]
pub mod pki;

pub mod check;
pub mod driver;
pub mod faults;
pub mod gateway;
pub mod peers;
pub mod world;

/// A small seeded random number generator (SplitMix64): the campaigns print their seed, and
/// the same seed gives the same kill moments and the same choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..high` (`low` when the range is empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A new generator for a part of the campaign, derived from this one.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// A seed from the clock, for runs that do not give one.
pub fn seed_from_clock() -> u64 {
    let now = mako_gateway::clock::Clock::system().now();
    now.timestamp_nanos_opt().unwrap_or_default() as u64
}

/// The `mako-gateway` binary beside this example's (`target/<profile>/mako-gateway`), unless
/// `given`; an error says how to build it.
pub fn binary(given: Option<std::path::PathBuf>) -> Result<std::path::PathBuf, String> {
    let path = match given {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
            // target/<profile>/examples/<name> → target/<profile>/mako-gateway
            exe.parent()
                .and_then(|p| p.parent())
                .map(|p| p.join("mako-gateway"))
                .ok_or("no folder above the example")?
        }
    };
    if !path.is_file() {
        return Err(format!(
            "{} not found: build it first (`cargo build --bin mako-gateway`, or pass --binary)",
            path.display()
        ));
    }
    Ok(path)
}
