//! Per-source admission control applied before a datagram is parsed: a token bucket per
//! source IP address in a table of bounded size, so a flood from one address (or from many)
//! costs a hash lookup, never a parse, and never grows memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Token buckets keyed by source address.
#[derive(Debug)]
pub struct SourceLimiter {
    rate_per_s: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl SourceLimiter {
    /// `rate_per_s` tokens a second up to `burst`, for at most `max_sources` addresses.
    pub fn new(rate_per_s: u32, burst: u32, max_sources: usize) -> Self {
        SourceLimiter {
            rate_per_s: f64::from(rate_per_s.max(1)),
            burst: f64::from(burst.max(1)),
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `src`; `false` means drop the datagram.
    pub fn admit(&mut self, now: Instant, src: IpAddr) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.max_sources {
            self.evict_idle(now);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        let (rate, burst) = (self.rate_per_s, self.burst);
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Number of tracked sources.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Forget sources whose bucket has refilled: they carry no state worth keeping.
    fn evict_idle(&mut self, now: Instant) {
        let (rate, burst) = (self.rate_per_s, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let mut l = SourceLimiter::new(10, 5, 16);
        assert_eq!((0..10).filter(|_| l.admit(t0, ip)).count(), 5);
        assert!(l.admit(t0 + Duration::from_millis(100), ip));
        assert!(!l.admit(t0 + Duration::from_millis(100), ip));
    }

    #[test]
    fn table_never_exceeds_its_bound() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(1, 1, 8);
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            l.admit(t0, ip);
            assert!(l.len() <= 8);
        }
    }
}
