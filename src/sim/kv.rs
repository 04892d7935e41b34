//! KV-cache block accounting with a hash-based prefix cache and LRU eviction.
//!
//! A physical block is either *private* to one sequence (partial prompt blocks, generated
//! tokens) or *cached*: a full prompt block registered under the chained hash of its prefix,
//! shared by reference count. Cached blocks nobody references stay resident, evictable in LRU
//! order, so later prompts with the same prefix skip their prefill.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Copy)]
struct Cached {
    refs: u32,
    tick: u64,
}

/// Block pool of a fixed (but resizable) number of blocks.
#[derive(Debug)]
pub(crate) struct KvCache {
    total: u64,
    /// Physical blocks holding data: private + cached (referenced or evictable).
    used: u64,
    /// Blocks referenced by some sequence (private + cached with refs > 0).
    active: u64,
    cached: HashMap<u64, Cached>,
    evictable: BTreeSet<(u64, u64)>,
    tick: u64,
}

impl KvCache {
    pub(crate) fn new(total_blocks: u64) -> Self {
        KvCache {
            total: total_blocks,
            used: 0,
            active: 0,
            cached: HashMap::new(),
            evictable: BTreeSet::new(),
            tick: 0,
        }
    }

    /// Fraction of blocks referenced by running sequences (vLLM's `kv_cache_usage_perc`).
    pub(crate) fn usage(&self) -> f64 {
        if self.total == 0 { 0.0 } else { (self.active as f64 / self.total as f64).min(1.0) }
    }

    /// Blocks that an allocation could obtain (free + evictable).
    pub(crate) fn available(&self) -> u64 {
        self.total.saturating_sub(self.used) + self.evictable.len() as u64
    }

    /// Takes `n` private blocks, evicting cached blocks if needed. False (and no change) if the
    /// pool cannot supply them.
    pub(crate) fn allocate(&mut self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        if self.available() < n {
            return false;
        }
        while self.total.saturating_sub(self.used) < n {
            let Some(&(tick, hash)) = self.evictable.iter().next() else { return false };
            self.evictable.remove(&(tick, hash));
            self.cached.remove(&hash);
            self.used -= 1;
        }
        self.used += n;
        self.active += n;
        true
    }

    /// Returns `n` private blocks to the pool.
    pub(crate) fn free_private(&mut self, n: u64) {
        self.used -= n;
        self.active -= n;
    }

    /// How many leading hashes are resident in the cache.
    pub(crate) fn lookup(&self, hashes: &[u64]) -> usize {
        hashes.iter().take_while(|h| self.cached.contains_key(h)).count()
    }

    /// Takes a reference to a resident cached block.
    pub(crate) fn acquire(&mut self, hash: u64) {
        if let Some(c) = self.cached.get_mut(&hash) {
            if c.refs == 0 {
                self.evictable.remove(&(c.tick, hash));
                self.active += 1;
            }
            c.refs += 1;
        }
    }

    /// Drops a reference; unreferenced blocks become evictable (most recently used last).
    pub(crate) fn release(&mut self, hash: u64) {
        self.tick += 1;
        if let Some(c) = self.cached.get_mut(&hash) {
            c.refs -= 1;
            if c.refs == 0 {
                c.tick = self.tick;
                self.evictable.insert((self.tick, hash));
                self.active -= 1;
            }
        }
    }

    /// Turns one private block holding the full block `hash` into a cached block. If another
    /// sequence already registered the same content, the private block is freed and the cached
    /// one is referenced instead. Either way the caller now holds `hash`.
    pub(crate) fn register(&mut self, hash: u64) {
        match self.cached.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.acquire(hash);
                self.free_private(1);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Cached { refs: 1, tick: 0 });
            }
        }
    }

    /// Drops every evictable cached block (`/admin/reset`).
    pub(crate) fn clear_evictable(&mut self) {
        for (_, hash) in std::mem::take(&mut self.evictable) {
            self.cached.remove(&hash);
            self.used -= 1;
        }
    }

    /// Changes the pool size at run time. Shrinking below what is in use makes the next
    /// allocations fail, which preempts sequences, as a smaller GPU would.
    pub(crate) fn resize(&mut self, total_blocks: u64) {
        self.total = total_blocks;
        while self.used > self.total {
            let Some(&(tick, hash)) = self.evictable.iter().next() else { break };
            self.evictable.remove(&(tick, hash));
            self.cached.remove(&hash);
            self.used -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_evicts_lru_cached_blocks_only_when_needed() {
        let mut kv = KvCache::new(4);
        assert!(kv.allocate(2));
        kv.register(10);
        kv.register(11);
        kv.release(10);
        kv.release(11); // both evictable, 10 older
        assert_eq!(kv.usage(), 0.0);
        assert_eq!(kv.available(), 4);
        assert!(kv.allocate(3)); // 2 free + evict the oldest (10)
        assert_eq!(kv.lookup(&[10, 11]), 0);
        assert_eq!(kv.lookup(&[11]), 1);
        assert!(!kv.allocate(2)); // 0 free + 1 evictable
        assert!(kv.allocate(1));
        assert_eq!(kv.lookup(&[11]), 0);
        assert_eq!(kv.usage(), 1.0);
    }

    #[test]
    fn registering_a_duplicate_frees_the_private_copy() {
        let mut kv = KvCache::new(8);
        assert!(kv.allocate(1));
        kv.register(7);
        assert!(kv.allocate(1));
        kv.register(7); // same content computed concurrently
        assert_eq!(kv.available(), 7);
        kv.release(7);
        assert_eq!(kv.available(), 7); // still referenced once
        kv.release(7);
        assert_eq!(kv.available(), 8);
        assert_eq!(kv.lookup(&[7]), 1);
        kv.clear_evictable();
        assert_eq!(kv.lookup(&[7]), 0);
    }
}
