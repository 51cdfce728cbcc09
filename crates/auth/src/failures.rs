//! Limits on failed credential checks, the protection against guessing: per client
//! address and per account named (the user of Basic credentials), each a token bucket
//! that only a *failure* spends. Successful checks cost nothing, so a CI fleet behind
//! one NAT address asking for a registry token on every request is never slowed; a
//! loop trying credential after credential is stopped once its bucket is empty, and
//! from then on every request from that address (or naming that account) is refused
//! with the wait, unchecked, until the bucket refills.
//!
//! Presenting again the credential that just failed (a client with a revoked token
//! retrying) spends nothing more: guessing means trying new ones, and a stuck client
//! should not lock out its neighbours behind the same address.
//!
//! The buckets live in each replica's memory: several replicas allow proportionally
//! more attempts, which keeps the bound (attempts per minute) within a small factor.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many failures a bucket holds and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failed checks a client address, or an account, may make at once.
    pub burst: u32,
    /// Failed checks it may make per minute once the burst is spent.
    pub per_minute: u32,
}

impl Default for FailureLimits {
    fn default() -> FailureLimits {
        FailureLimits {
            burst: 30,
            per_minute: 30,
        }
    }
}

/// Why a check was refused before the credentials were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyFailures {
    /// Until the bucket holds a failure again.
    pub retry_after: Duration,
    /// Whether it was the account's bucket (else the address's).
    pub account: bool,
}

impl std::fmt::Display for TooManyFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whose = if self.account {
            "for this account"
        } else {
            "from this address"
        };
        write!(
            f,
            "too many failed credential checks {whose}; retry in {} s",
            self.retry_after.as_secs().max(1)
        )
    }
}

/// The failure buckets of one replica.
pub struct FailureLimiter {
    limits: FailureLimits,
    /// Whether any failure was ever recorded: until then a check costs no lock.
    any_failure: std::sync::atomic::AtomicBool,
    by_address: Mutex<Buckets<IpAddr>>,
    by_account: Mutex<Buckets<String>>,
    fingerprints: RandomState,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Fingerprints of the last credentials that failed here (a ring).
    recent: [u64; RECENT],
    next: usize,
}

/// How many failed credentials a bucket remembers as already paid for.
const RECENT: usize = 8;
/// How many buckets of each kind are kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;
/// The longest account name kept as a key (longer ones share a prefix's bucket).
const MAX_ACCOUNT_KEY: usize = 128;

impl FailureLimiter {
    pub fn new(limits: FailureLimits) -> FailureLimiter {
        FailureLimiter {
            limits: FailureLimits {
                burst: limits.burst.max(1),
                per_minute: limits.per_minute.max(1),
            },
            any_failure: std::sync::atomic::AtomicBool::new(false),
            by_address: Mutex::new(Buckets {
                map: HashMap::new(),
            }),
            by_account: Mutex::new(Buckets {
                map: HashMap::new(),
            }),
            fingerprints: RandomState::new(),
        }
    }

    /// Whether any check has failed yet (until one does, nothing is refused).
    pub fn quiet(&self) -> bool {
        !self.any_failure.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// May a credential check from `address` naming `account` go ahead? Refused while
    /// either bucket is empty.
    pub fn admit(
        &self,
        address: Option<IpAddr>,
        account: Option<&str>,
        now: Instant,
    ) -> Result<(), TooManyFailures> {
        if !self.any_failure.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let address = address.map(client_key);
        if let Err(retry_after) = lock(&self.by_address).admit(&address_key(address), self, now) {
            return Err(TooManyFailures {
                retry_after,
                account: false,
            });
        }
        if let Some(account) = account
            && let Err(retry_after) = lock(&self.by_account).admit(&account_key(account), self, now)
        {
            return Err(TooManyFailures {
                retry_after,
                account: true,
            });
        }
        Ok(())
    }

    /// Records a failed check of `credential` (the whole `Authorization` value, only
    /// ever hashed) from `address` naming `account`.
    pub fn failed(
        &self,
        address: Option<IpAddr>,
        account: Option<&str>,
        credential: &str,
        now: Instant,
    ) {
        self.any_failure
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let fingerprint = self.fingerprints.hash_one(credential);
        let address = address.map(client_key);
        lock(&self.by_address).spend(address_key(address), fingerprint, self, now);
        if let Some(account) = account {
            lock(&self.by_account).spend(account_key(account), fingerprint, self, now);
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.limits.per_minute) / 60.0
    }

    fn burst(&self) -> f64 {
        f64::from(self.limits.burst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Requests without a known peer address (in-process tests) share one bucket.
fn address_key(address: Option<IpAddr>) -> IpAddr {
    address.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

fn account_key(account: &str) -> String {
    account
        .chars()
        .take(MAX_ACCOUNT_KEY)
        .flat_map(char::to_lowercase)
        .collect()
}

/// The bucket of an address: IPv4 addresses each have their own; IPv6 clients get a
/// /64 each (one host usually holds a whole /64, so single addresses cost nothing).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// The tokens `bucket` holds at `now`, refilled since it was last touched.
    fn refilled(bucket: &Bucket, limiter: &FailureLimiter, now: Instant) -> f64 {
        (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * limiter.rate())
            .min(limiter.burst())
    }

    fn admit(&self, key: &K, limiter: &FailureLimiter, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.map.get(key) else {
            return Ok(());
        };
        let tokens = Self::refilled(bucket, limiter, now);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / limiter.rate()))
        }
    }

    fn spend(&mut self, key: K, fingerprint: u64, limiter: &FailureLimiter, now: Instant) {
        if self.map.len() >= MAX_BUCKETS && !self.map.contains_key(&key) {
            self.evict(limiter, now);
        }
        let bucket = self.map.entry(key).or_insert(Bucket {
            tokens: limiter.burst(),
            at: now,
            recent: [0; RECENT],
            next: 0,
        });
        let tokens = Self::refilled(bucket, limiter, now);
        bucket.at = now;
        if bucket.recent.contains(&fingerprint) {
            bucket.tokens = tokens;
            return;
        }
        bucket.recent[bucket.next] = fingerprint;
        bucket.next = (bucket.next + 1) % RECENT;
        bucket.tokens = (tokens - 1.0).max(0.0);
    }

    /// Drops buckets that have refilled (as good as none); if that is not enough, the
    /// longest idle half.
    fn evict(&mut self, limiter: &FailureLimiter, now: Instant) {
        self.map
            .retain(|_, bucket| Self::refilled(bucket, limiter, now) < limiter.burst());
        if self.map.len() >= MAX_BUCKETS / 2 {
            let mut ages: Vec<Instant> = self.map.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            self.map.retain(|_, bucket| bucket.at > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    fn limiter(burst: u32, per_minute: u32) -> FailureLimiter {
        FailureLimiter::new(FailureLimits { burst, per_minute })
    }

    #[test]
    fn only_failures_spend_and_a_guessing_loop_is_stopped_at_the_burst() {
        let limiter = limiter(3, 60);
        let start = Instant::now();
        // Nothing failed yet: any number of checks go ahead.
        for _ in 0..10_000 {
            assert!(limiter.admit(HOME, Some("admin"), start).is_ok());
        }
        for guess in 0..3 {
            assert!(limiter.admit(HOME, None, start).is_ok());
            limiter.failed(HOME, None, &format!("guess {guess}"), start);
        }
        let refused = limiter.admit(HOME, None, start).expect_err("burst spent");
        assert!(!refused.account);
        assert!(refused.retry_after <= Duration::from_secs(1), "{refused:?}");
        // Another address has its own bucket; the refill is one a second at 60/min.
        assert!(limiter.admit(AWAY, None, start).is_ok());
        assert!(
            limiter
                .admit(HOME, None, start + Duration::from_millis(1001))
                .is_ok()
        );
    }

    #[test]
    fn an_account_is_limited_whichever_addresses_the_guesses_come_from() {
        let limiter = limiter(4, 60);
        let now = Instant::now();
        for guess in 0..4u8 {
            let address = Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, guess)));
            limiter.failed(address, Some("Admin"), &format!("guess {guess}"), now);
        }
        let refused = limiter
            .admit(
                Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9))),
                Some("admin"),
                now,
            )
            .expect_err("the account's burst is spent");
        assert!(refused.account);
        assert!(limiter.admit(HOME, Some("someone-else"), now).is_ok());
    }

    #[test]
    fn the_same_failed_credential_again_spends_nothing_more() {
        let limiter = limiter(2, 1);
        let now = Instant::now();
        for _ in 0..100 {
            limiter.failed(HOME, Some("ci"), "Bearer gnt_revoked", now);
        }
        assert!(
            limiter.admit(HOME, Some("ci"), now).is_ok(),
            "one failure spent, one left"
        );
        limiter.failed(HOME, Some("ci"), "Bearer gnt_other", now);
        assert!(limiter.admit(HOME, None, now).is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a = client_key("2001:db8::1".parse().expect("address"));
        let b = client_key("2001:db8::ffff:2".parse().expect("address"));
        assert_eq!(a, b);
        assert_ne!(a, client_key("2001:db8:0:1::1".parse().expect("address")));
        let mapped = client_key("::ffff:192.0.2.1".parse().expect("address"));
        assert_eq!(mapped, HOME.expect("an address"));
    }
}
