//! The bounded, expiring, coalescing cache behind every cache of DESIGN
//! decision 9 (tags, manifests, signatures, verdicts, registry pings and
//! tokens, pull secrets).
//!
//! It is `quick_cache` (a maintained concurrent cache: sharded, CLOCK-Pro
//! eviction, bounded by entry count, with placeholders that make concurrent
//! loads of one key wait for a single loader) plus the two things it does
//! not do itself, kept narrow here:
//!
//! - **Expiry.** Each value carries its deadline; an expired value is a miss
//!   and is removed when it is next looked up. Expired values that are never
//!   looked up again wait for eviction, which the entry bound makes certain.
//! - **Shared failures.** When a load fails, quick_cache would hand the
//!   placeholder to the next waiter, so N concurrent reviews of an image
//!   whose registry is down would try it N times one after the other. Like
//!   moka's `try_get_with`, which imagegate used before, the callers waiting
//!   on a load get its error; the failure itself is never served to a
//!   caller that came later (it retries).
//!
//! moka was replaced for a measured reason: with 100,000 entries it costs
//! 360–420 bytes per entry of bookkeeping against quick_cache's 70–140
//! (BENCHMARKS.md, "Memory"), and every tag a cluster runs holds two entries.

use std::any::Any;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A concurrent cache from `K` to `V` (cheap to clone: use `Arc`s).
pub struct Cache<K, V> {
    entries: quick_cache::sync::Cache<K, Slot<V>>,
    ttl: Option<Duration>,
}

#[derive(Clone)]
enum Slot<V> {
    Value {
        value: V,
        /// `None`: valid until evicted (content-addressed data).
        expires: Option<Instant>,
    },
    /// A failed load, kept only so the callers waiting on it receive it;
    /// for anyone who looks it up later it is stale.
    Failed {
        error: Arc<dyn Any + Send + Sync>,
        at: Instant,
    },
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    /// A cache of at most about `capacity` entries, each valid for `ttl`
    /// (`None`: until evicted).
    pub fn new(capacity: u64, ttl: Option<Duration>) -> Cache<K, V> {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Cache {
            entries: quick_cache::sync::Cache::new(capacity),
            ttl,
        }
    }

    /// The live value of `key`, if any. `key` may be any borrowed form of
    /// `K` (a `&str` for a `String` key), so a lookup need not allocate.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        if let Slot::Value { value, expires } = self.entries.get(key)?
            && live(expires, Instant::now())
        {
            return Some(value);
        }
        self.remove_stale(key, Instant::now());
        None
    }

    /// Stores `value` for `key` (replacing any previous one).
    pub fn insert(&self, key: K, value: V) {
        self.entries.insert(key, self.slot(value));
    }

    /// The value of `key`, loading it with `init` if it is absent or
    /// expired. Concurrent calls for one key run one `init`; the others wait
    /// for its value or its error. An error is not cached: the next call
    /// after it loads again. If the loading caller is cancelled (its
    /// deadline passed), a waiting caller loads in its place. `key` may be
    /// borrowed (a `&str` for a `String` key): it is copied only to load.
    pub async fn try_get_with<Q, E, F>(&self, key: &Q, init: F) -> Result<V, Arc<E>>
    where
        Q: Hash + quick_cache::Equivalent<K> + ToOwned<Owned = K> + ?Sized,
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let asked = Instant::now();
        let guard = loop {
            match self.entries.get_value_or_guard_async(key).await {
                Err(guard) => break guard,
                Ok(Slot::Value { value, expires }) if live(expires, Instant::now()) => {
                    return Ok(value);
                }
                // A load that ended while we waited on it: its error is ours.
                Ok(Slot::Failed { error, at }) if at >= asked => {
                    if let Ok(error) = error.downcast::<E>() {
                        return Err(error);
                    }
                    self.remove_stale(key, Instant::now());
                }
                Ok(_) => self.remove_stale(key, Instant::now()),
            }
        };
        match init.await {
            Ok(value) => {
                // Refused only if the key was inserted meanwhile: ours is as good.
                let _ = guard.insert(self.slot(value.clone()));
                Ok(value)
            }
            Err(error) => {
                let error = Arc::new(error);
                let _ = guard.insert(Slot::Failed {
                    error: error.clone(),
                    at: Instant::now(),
                });
                Err(error)
            }
        }
    }

    /// The value of `key`, inserting `init`'s if absent (one `init` for
    /// concurrent callers).
    pub async fn get_with<Q>(&self, key: &Q, init: impl Future<Output = V>) -> V
    where
        Q: Hash + quick_cache::Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        match self
            .try_get_with(key, async { Ok::<V, std::convert::Infallible>(init.await) })
            .await
        {
            Ok(value) => value,
            Err(never) => match *never {},
        }
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        self.entries.clear();
    }

    /// How many entries are held (live, expired or failed; for tests and
    /// benchmarks).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    fn slot(&self, value: V) -> Slot<V> {
        Slot::Value {
            value,
            expires: self.ttl.map(|ttl| Instant::now() + ttl),
        }
    }

    /// Removes `key` if what it holds is stale, and only then: a fresh value
    /// inserted since it was read stays.
    fn remove_stale<Q>(&self, key: &Q, now: Instant)
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.entries.remove_if(key, |slot| match slot {
            Slot::Value { expires, .. } => !live(*expires, now),
            Slot::Failed { .. } => true,
        });
    }
}

fn live(expires: Option<Instant>, now: Instant) -> bool {
    expires.is_none_or(|e| now < e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn values_expire_and_are_reloaded() {
        let cache: Cache<String, u32> = Cache::new(10, Some(Duration::from_millis(50)));
        cache.insert("a".into(), 1);
        assert_eq!(cache.get("a"), Some(1));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(cache.get("a"), None);
        assert_eq!(
            cache.entry_count(),
            0,
            "the expired entry is removed on lookup"
        );
        let v = cache.try_get_with("a", async { Ok::<_, String>(2) }).await;
        assert_eq!(v, Ok(2));
    }

    #[tokio::test]
    async fn without_ttl_values_stay_until_evicted() {
        let cache: Cache<u32, u32> = Cache::new(100, None);
        for i in 0..1000 {
            cache.insert(i, i);
        }
        assert!(
            cache.entry_count() <= 110,
            "bounded: {}",
            cache.entry_count()
        );
        cache.insert(5000, 1);
        assert_eq!(cache.get(&5000), Some(1));
    }

    type Outcomes = Vec<Result<u32, Arc<String>>>;

    /// 50 concurrent `try_get_with` of key 7, each loader taking 50 ms to
    /// give `outcome`: what each caller got, and the count of loaders run.
    async fn fifty_concurrent_loads(
        cache: &Arc<Cache<u32, u32>>,
        outcome: Result<u32, String>,
    ) -> (Outcomes, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, runs, outcome) = (cache.clone(), runs.clone(), outcome.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .try_get_with(&7, async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        outcome
                    })
                    .await
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        (got, runs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_share_one_init_and_its_value() {
        let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(10, Some(Duration::from_secs(60))));
        let (got, runs) = fifty_concurrent_loads(&cache, Ok(42)).await;
        for g in got {
            assert_eq!(g, Ok(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_a_failure_and_later_callers_retry() {
        let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(10, Some(Duration::from_secs(60))));
        let (got, runs) = fifty_concurrent_loads(&cache, Err("registry down".into())).await;
        for g in got {
            assert_eq!(g.unwrap_err().as_str(), "registry down");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one load for all waiters");
        // The failure is not cached: a later call loads again.
        assert_eq!(cache.get(&7), None);
        let v = cache.try_get_with(&7, async { Ok::<_, String>(1) }).await;
        assert_eq!(v, Ok(1));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_loader_hands_over_to_a_waiter() {
        let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(10, None));
        let slow = {
            let cache = cache.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(30),
                    cache.try_get_with(&1, async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<_, String>(0)
                    }),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = cache.try_get_with(&1, async { Ok::<_, String>(9) }).await;
        assert!(slow.await.unwrap().is_err(), "the first caller timed out");
        assert_eq!(waiter, Ok(9));
        assert_eq!(cache.get(&1), Some(9));
    }

    #[tokio::test]
    async fn zero_capacity_caches_nothing_but_still_loads() {
        let cache: Cache<u32, u32> = Cache::new(0, None);
        let v = cache.try_get_with(&1, async { Ok::<_, String>(3) }).await;
        assert_eq!(v, Ok(3));
        cache.insert(2, 2);
        assert!(cache.entry_count() <= 1);
    }

    #[tokio::test]
    async fn get_with_and_invalidate_all() {
        let cache: Cache<u32, Arc<String>> = Cache::new(10, None);
        let a = cache
            .get_with(&1, async { Arc::new("x".to_string()) })
            .await;
        let b = cache
            .get_with(&1, async { Arc::new("y".to_string()) })
            .await;
        assert!(Arc::ptr_eq(&a, &b));
        cache.invalidate_all();
        assert_eq!(cache.get(&1), None);
    }
}
