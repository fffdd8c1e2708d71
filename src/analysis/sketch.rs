//! Bounded-memory summaries: hashing, exact-then-HyperLogLog distinct counts with per-value
//! counts, a top-K table of frequent values, and a reservoir sample for quartiles.

/// Total memory the per-column summaries may use, split evenly between columns. Chosen so an
/// analysis stays well under 64 MB even with ~1000 columns.
const DISTINCT_BUDGET: usize = 24 << 20;
const RESERVOIR_BUDGET: usize = 8 << 20;
/// Above this many distinct values exact counting stops (the summary may estimate past 100k).
const MAX_EXACT_DISTINCT: usize = 100_000;
/// Bytes of one table slot: u64 key + u32 count, padded to 16.
const BUCKET_BYTES: usize = 16;
/// Candidates kept for the top values (five are reported; extra ones make late risers likelier to stay).
pub(super) const TOP_K: usize = 10;
/// Longest top-value text kept for display.
pub(super) const MAX_DISPLAY_BYTES: usize = 256;

/// Per-column sizes, derived from the column count so the total stays bounded.
#[derive(Debug, Clone)]
pub(super) struct Budget {
    pub exact_cap: usize,
    pub hll_precision: u32,
    pub reservoir_cap: usize,
}

impl Budget {
    pub(super) fn for_columns(ncols: usize) -> Budget {
        let ncols = ncols.max(1);
        let per_col = DISTINCT_BUDGET / ncols;
        let mut buckets = 16usize;
        while buckets * 2 * BUCKET_BYTES <= per_col && buckets < (1 << 20) {
            buckets *= 2;
        }
        let exact_cap = (buckets / 32 * 25).min(MAX_EXACT_DISTINCT);
        let hll_precision = if ncols <= 64 {
            14
        } else if ncols <= 1024 {
            12
        } else {
            10
        };
        let reservoir_cap = (RESERVOIR_BUDGET / 8 / ncols).clamp(64, 16_384);
        Budget {
            exact_cap,
            hll_precision,
            reservoir_cap,
        }
    }
}

// ---------------------------------------------------------------- hashing

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;

#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Finalizer with full avalanche (murmur3 fmix64), so top bits are usable by HyperLogLog.
#[inline]
pub(super) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Fast 64-bit hash of a byte string (wyhash-style folded multiplies).
#[inline]
pub(super) fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = K0 ^ (b.len() as u64).wrapping_mul(K1);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mum(h ^ u64::from_le_bytes(w), K1);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut w = [0u8; 8];
        w[..rem.len()].copy_from_slice(rem);
        h = mum(h ^ u64::from_le_bytes(w) ^ K0, K1);
    }
    mix(h)
}

/// Open-addressing key → count table (linear probing, load ≤ 25/32). Written here rather than
/// using `HashMap` so a record's lookups can be started before they are needed ([`Self::touch`]):
/// with ten columns of large tables, waiting for each cache miss in turn dominated the run time.
pub(super) struct CountTable {
    /// `(key, count)`; key 0 marks an empty slot (real key 0 is stored as [`ZERO_KEY`]).
    slots: Vec<(u64, u32)>,
    len: usize,
}

const ZERO_KEY: u64 = 0x9e37_79b9_7f4a_7c15;

impl CountTable {
    fn new() -> CountTable {
        CountTable {
            slots: vec![(0, 0); 64],
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().filter(|s| s.0 != 0).map(|s| s.0)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key as usize) & (self.slots.len() - 1)
    }

    /// Issues the memory load for `key`'s slot without waiting for it.
    #[inline]
    fn touch(&self, key: u64) {
        if let Some(slot) = self.slots.get(self.home(key)) {
            // A plain load kept alive by black_box; issued back to back for a record's columns,
            // the CPU overlaps the misses (a prefetch intrinsic would need `unsafe`).
            std::hint::black_box(slot.0);
        }
    }

    #[inline]
    fn contains(&self, key: u64) -> bool {
        let key = if key == 0 { ZERO_KEY } else { key };
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            match self.slots[i].0 {
                0 => return false,
                k if k == key => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds one to `key`'s count and returns it.
    #[inline]
    fn increment(&mut self, key: u64) -> u32 {
        let key = if key == 0 { ZERO_KEY } else { key };
        if (self.len + 1) * 32 > self.slots.len() * 25 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.0 == key {
                slot.1 = slot.1.saturating_add(1);
                return slot.1;
            }
            if slot.0 == 0 {
                *slot = (key, 1);
                self.len += 1;
                return 1;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let doubled = vec![(0, 0); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for (k, c) in old.into_iter().filter(|s| s.0 != 0) {
            let mut i = (k as usize) & mask;
            while self.slots[i].0 != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (k, c);
        }
    }
}

// ---------------------------------------------------------------- distinct + top values

/// Exact per-key counts up to a cap, then a HyperLogLog estimate.
pub(super) enum Distinct {
    Exact {
        counts: CountTable,
        cap: usize,
        precision: u32,
    },
    Approx {
        hll: HyperLogLog,
        floor: u64,
    },
}

impl Distinct {
    pub(super) fn new(budget: &Budget) -> Distinct {
        Distinct::Exact {
            counts: CountTable::new(),
            cap: budget.exact_cap,
            precision: budget.hll_precision,
        }
    }

    /// Counts one occurrence; returns the key's exact count so far while exact.
    #[inline]
    pub(super) fn insert(&mut self, key: u64) -> Option<u32> {
        match self {
            Distinct::Exact { counts, cap, precision } => {
                let len = counts.len();
                if len >= *cap && !counts.contains(key) {
                    let mut hll = HyperLogLog::new(*precision);
                    for k in counts.keys() {
                        hll.insert(k);
                    }
                    hll.insert(key);
                    *self = Distinct::Approx {
                        hll,
                        floor: len as u64 + 1,
                    };
                    return None;
                }
                Some(counts.increment(key))
            }
            Distinct::Approx { hll, .. } => {
                hll.insert(key);
                None
            }
        }
    }

    /// Starts loading the memory `insert(key)` will need.
    #[inline]
    pub(super) fn touch(&self, key: u64) {
        match self {
            Distinct::Exact { counts, .. } => counts.touch(key),
            Distinct::Approx { hll, .. } => hll.touch(key),
        }
    }

    /// (count, is_estimate); estimates are clamped to what is known for sure.
    pub(super) fn count(&self, present: u64) -> (u64, bool) {
        match self {
            Distinct::Exact { counts, .. } => (counts.len() as u64, false),
            Distinct::Approx { hll, floor } => (hll.estimate().clamp(*floor, present.max(*floor)), true),
        }
    }
}

pub(super) struct HyperLogLog {
    p: u32,
    regs: Vec<u8>,
}

impl HyperLogLog {
    fn new(p: u32) -> HyperLogLog {
        HyperLogLog {
            p,
            regs: vec![0; 1 << p],
        }
    }

    /// Issues the memory load of `h`'s register without waiting for it.
    #[inline]
    fn touch(&self, h: u64) {
        if let Some(r) = self.regs.get((h >> (64 - self.p)) as usize) {
            std::hint::black_box(*r);
        }
    }

    #[inline]
    fn insert(&mut self, h: u64) {
        let idx = (h >> (64 - self.p)) as usize;
        let w = h << self.p;
        let rank = (w.leading_zeros() + 1).min(64 - self.p + 1) as u8;
        if let Some(r) = self.regs.get_mut(idx) {
            if *r < rank {
                *r = rank;
            }
        }
    }

    fn estimate(&self) -> u64 {
        let m = self.regs.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in &self.regs {
            sum += 2f64.powi(-(r as i32));
            if r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

pub(super) struct TopEntry {
    pub count: u64,
    pub display: Vec<u8>,
}

/// The K most frequent keys. While counts are exact it is exactly the top K (a key enters when
/// its count passes the smallest count held); once distinct counting turns approximate, the
/// held keys keep counting exactly but no new key can enter.
#[derive(Default)]
pub(super) struct TopK {
    pub entries: Vec<TopEntry>,
    /// The key of each entry, kept apart so the lookup done for every value scans one cache line.
    keys: Vec<u64>,
    min: u64,
    pub frozen: bool,
}

impl TopK {
    #[inline]
    fn position(&self, key: u64) -> Option<usize> {
        self.keys.iter().position(|k| *k == key)
    }

    fn recompute_min(&mut self) {
        self.min = self.entries.iter().map(|e| e.count).min().unwrap_or(0);
    }

    /// A key counted `count` times so far. `display` makes the value's text, called only if
    /// the entry is kept (for most values it is not, and making the text of a typed value
    /// costs more than counting it).
    #[inline]
    pub(super) fn observe_counted<D: AsRef<[u8]>>(&mut self, key: u64, count: u32, display: impl FnOnce() -> D) {
        let count = count as u64;
        if self.entries.len() >= TOP_K && count <= self.min {
            return;
        }
        if let Some(i) = self.position(key) {
            let e = &mut self.entries[i];
            let old = e.count;
            e.count = count;
            // Counts only grow, so the smallest changes only if this entry held it.
            if old == self.min || count < self.min {
                self.recompute_min();
            }
            return;
        }
        if self.entries.len() < TOP_K {
            self.entries.push(TopEntry {
                count,
                display: clip(display().as_ref()),
            });
            self.keys.push(key);
        } else if let Some((i, _)) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.count) {
            self.entries[i] = TopEntry {
                count,
                display: clip(display().as_ref()),
            };
            self.keys[i] = key;
        }
        self.recompute_min();
    }

    #[inline]
    pub(super) fn observe_frozen(&mut self, key: u64) {
        self.frozen = true;
        if let Some(i) = self.position(key) {
            self.entries[i].count += 1;
        }
    }

    /// Most frequent first; ties keep the order in which values were first held.
    pub(super) fn sorted(&self) -> Vec<&TopEntry> {
        let mut v: Vec<&TopEntry> = self.entries.iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.count));
        v
    }
}

fn clip(b: &[u8]) -> Vec<u8> {
    b[..b.len().min(MAX_DISPLAY_BYTES)].to_vec()
}

// ---------------------------------------------------------------- reservoir

/// Uniform sample of at most `cap` values (Vitter/Li "Algorithm L": O(cap·log(n/cap)) random draws).
pub(super) struct Reservoir {
    cap: usize,
    pub items: Vec<f64>,
    seen: u64,
    next: u64,
    w: f64,
    rng: u64,
}

impl Reservoir {
    pub(super) fn new(cap: usize, seed: u64) -> Reservoir {
        Reservoir {
            cap: cap.max(1),
            items: Vec::new(),
            seen: 0,
            next: 0,
            w: 1.0,
            rng: mix(seed ^ K0) | 1,
        }
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*; result in (0, 1).
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn skip(&mut self) {
        let u = self.uniform();
        let denom = (1.0 - self.w).ln();
        let gap = if denom < 0.0 {
            (u.ln() / denom).floor()
        } else {
            f64::MAX
        };
        self.next = self.seen.saturating_add(gap as u64).saturating_add(1);
    }

    #[inline]
    pub(super) fn push(&mut self, x: f64) {
        self.seen += 1;
        // Once full, most values are skipped: keep that test inline and the rest out of line.
        if self.items.len() < self.cap || self.seen == self.next {
            self.keep(x);
        }
    }

    #[inline(never)]
    fn keep(&mut self, x: f64) {
        if self.items.len() < self.cap {
            if self.items.len() == self.items.capacity() {
                let grow = self.items.len().max(16).min(self.cap - self.items.len());
                self.items.reserve_exact(grow);
            }
            self.items.push(x);
            if self.items.len() == self.cap {
                self.w = (self.uniform().ln() / self.cap as f64).exp();
                self.skip();
            }
        } else if self.seen == self.next {
            let i = ((self.uniform() * self.cap as f64) as usize).min(self.cap - 1);
            self.items[i] = x;
            self.w *= (self.uniform().ln() / self.cap as f64).exp();
            self.skip();
        }
    }

    /// True when the sample holds every value pushed.
    pub(super) fn is_exact(&self) -> bool {
        self.seen as usize == self.items.len()
    }

    /// Quartiles with numpy's default linear interpolation.
    pub(super) fn quartiles(&self) -> Option<[f64; 3]> {
        if self.items.is_empty() {
            return None;
        }
        let mut v = self.items.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            let pos = p * (v.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            let frac = pos - lo as f64;
            if hi == lo || v[lo] == v[hi] {
                v[lo]
            } else {
                v[lo] + (v[hi] - v[lo]) * frac
            }
        };
        Some([q(0.25), q(0.5), q(0.75)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the bytes this thread has allocated and not freed, and the peak since a reset,
    /// so memory bounds are measured rather than computed from the code's own formula.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn note(delta: isize) {
            let _ = LIVE.try_with(|live| {
                let now = live.get() + delta;
                live.set(now);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
            });
        }

        /// Starts measuring: the peak is now what is live now.
        pub fn reset_peak() -> isize {
            let live = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(live));
            live
        }

        pub fn peak() -> isize {
            PEAK.with(Cell::get)
        }

        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let p = System.alloc(layout);
                if !p.is_null() {
                    note(layout.size() as isize);
                }
                p
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                let p = System.alloc_zeroed(layout);
                if !p.is_null() {
                    note(layout.size() as isize);
                }
                p
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                System.dealloc(ptr, layout);
                note(-(layout.size() as isize));
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let p = System.realloc(ptr, layout, new_size);
                if !p.is_null() {
                    note(new_size as isize - layout.size() as isize);
                }
                p
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: counting::Counting = counting::Counting;

    #[test]
    fn budget_shrinks_with_columns() {
        let small = Budget::for_columns(10);
        assert_eq!(small.exact_cap, MAX_EXACT_DISTINCT);
        let wide = Budget::for_columns(1000);
        assert!(wide.exact_cap >= 512 && wide.exact_cap < 4096, "{wide:?}");

        // The whole-file bound, measured: 1000 columns' summaries, every one filled to
        // its limits (exact table full, then switched to HyperLogLog one column at a
        // time; reservoir full; top values with the longest display texts), allocate
        // under 48 MB at their peak.
        let start = counting::reset_peak();
        let mut columns: Vec<(Distinct, Reservoir, TopK)> = (0..1000)
            .map(|c| {
                (
                    Distinct::new(&wide),
                    Reservoir::new(wide.reservoir_cap, c),
                    TopK::default(),
                )
            })
            .collect();
        let long = [b'x'; 2 * MAX_DISPLAY_BYTES];
        for (c, (distinct, sample, top)) in columns.iter_mut().enumerate() {
            for k in 0..wide.exact_cap as u64 {
                let key = mix(k ^ ((c as u64) << 32));
                let count = distinct.insert(key).expect("exact while under the cap");
                top.observe_counted(key, count + (k % 50) as u32, || &long);
            }
            for i in 0..(wide.reservoir_cap * 3) {
                sample.push(i as f64);
            }
        }
        let all_exact = counting::peak() - start;
        for (c, (distinct, _, _)) in columns.iter_mut().enumerate() {
            for k in 0..(wide.exact_cap as u64 + 10) {
                distinct.insert(mix(k ^ ((c as u64) << 32) ^ (1 << 63)));
            }
            assert!(distinct.count(0).1, "column {c} switched to an estimate");
        }
        let peak = counting::peak() - start;
        drop(columns);
        // The measurement sees at least the reservoirs' samples (8 bytes each).
        assert!(all_exact as usize >= 1000 * wide.reservoir_cap * 8, "{all_exact}");
        assert!(peak < 48 << 20, "1000 full columns peaked at {peak} bytes");
    }

    #[test]
    fn distinct_exact_then_estimate() {
        let b = Budget {
            exact_cap: 1000,
            hll_precision: 14,
            reservoir_cap: 10,
        };
        let mut d = Distinct::new(&b);
        for i in 0..500u64 {
            d.insert(mix(i));
            d.insert(mix(i));
        }
        assert_eq!(d.count(1000), (500, false));
        for i in 0..50_000u64 {
            d.insert(mix(i));
        }
        let (n, est) = d.count(51_000);
        assert!(est);
        assert!((n as f64 - 50_000.0).abs() < 50_000.0 * 0.03, "{n}");
    }

    #[test]
    fn top_k_is_exact_while_counting_exactly() {
        let b = Budget::for_columns(1);
        let mut d = Distinct::new(&b);
        let mut t = TopK::default();
        // value v appears v times for v in 1..=30, interleaved.
        for round in 1..=30u64 {
            for v in round..=30u64 {
                let key = mix(v);
                if let Some(c) = d.insert(key) {
                    t.observe_counted(key, c, || v.to_string());
                }
            }
        }
        let top: Vec<(String, u64)> = t
            .sorted()
            .iter()
            .take(5)
            .map(|e| (String::from_utf8_lossy(&e.display).into_owned(), e.count))
            .collect();
        let want: Vec<(String, u64)> = (26..=30).rev().map(|v: u64| (v.to_string(), v)).collect();
        assert_eq!(top, want);
    }

    #[test]
    fn reservoir_quartiles() {
        let mut r = Reservoir::new(100, 1);
        for x in [1.0, 2.0, 3.0, 4.0] {
            r.push(x);
        }
        assert!(r.is_exact());
        assert_eq!(r.quartiles(), Some([1.75, 2.5, 3.25]));
        let mut r = Reservoir::new(4096, 7);
        for i in 0..1_000_000 {
            r.push(i as f64);
        }
        assert!(!r.is_exact());
        assert_eq!(r.items.len(), 4096);
        let q = r.quartiles().expect("non-empty");
        assert!((q[1] - 500_000.0).abs() < 30_000.0, "{q:?}");
        assert!((q[0] - 250_000.0).abs() < 30_000.0, "{q:?}");
    }

    #[test]
    fn count_table_counts_and_grows() {
        let mut t = CountTable::new();
        for round in 1..=3u32 {
            for k in 1..=10_000u64 {
                assert_eq!(t.increment(mix(k)), round);
            }
        }
        assert_eq!(t.increment(0), 1, "key 0 is a normal key");
        assert_eq!(t.increment(0), 2);
        assert_eq!(t.len(), 10_001);
        assert!(t.contains(mix(5)) && t.contains(0) && !t.contains(mix(10_001)));
        assert_eq!(t.keys().count(), 10_001);
    }

    #[test]
    fn hash_differs_for_close_inputs() {
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_ne!(hash_bytes(b"12345678"), hash_bytes(b"123456789"));
    }
}
