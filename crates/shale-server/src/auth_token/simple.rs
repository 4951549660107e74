//! etcd's "simple" tokens (`--auth-token simple`, the default): 16 random letters, a dot and
//! a number, kept in memory on the member that issued them, so they work on that member
//! only. A token lives `--auth-token-ttl` seconds (300 by default), renewed by every use. It
//! remembers the auth revision it was issued at and stops working when its user's password
//! changes, its user is deleted or auth is disabled (see `AuthStore::token_valid`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;

/// etcd's `simpleTokenTTLDefault` (`--auth-token-ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

struct Token {
    user: String,
    issued_at: u64,
    expires: Instant,
}

/// This member's simple tokens.
pub struct SimpleTokens {
    ttl: Duration,
    map: Mutex<HashMap<String, Token>>,
    next: AtomicU64,
}

impl SimpleTokens {
    /// Tokens living `ttl` from their last use (0 = etcd's default).
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl: if ttl.is_zero() { DEFAULT_TTL } else { ttl },
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// A new token for `user`, valid from auth revision `rev`.
    pub fn issue(&self, user: &str, rev: u64) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut rng = rand::rng();
        let prefix: String = (0..16)
            .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
            .collect();
        let token = format!("{prefix}.{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, t| t.expires > now);
        map.insert(
            token.clone(),
            Token {
                user: user.to_string(),
                issued_at: rev,
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The user and issue revision of a live token, renewing its TTL.
    pub fn lookup(&self, token: &str) -> Option<(String, u64)> {
        let now = Instant::now();
        let mut map = self.map.lock();
        let t = map.get_mut(token)?;
        if t.expires <= now {
            map.remove(token);
            return None;
        }
        t.expires = now + self.ttl;
        Some((t.user.clone(), t.issued_at))
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        self.map.lock().clear();
    }
}
