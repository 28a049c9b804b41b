//! Buffers derived from a convolution's weights (Winograd F(4×4)'s transformed weights,
//! `winograd_f4.rs`; the direct loop's arranged weights, `direct.rs`), kept from one call to the next with the same weights. Adversarial
//! training with PGD-K runs K + 1 forward and input-gradient passes per batch with one
//! set of weights; without this each pass derives them again.
//!
//! An entry is looked up by the weights' address and length and a [`Tag`] naming the
//! derivation (say, which direction), and used only if the weights it was derived from
//! equal the ones given, bit for bit. So an entry is never stale, whatever changed the
//! weights since (an optimizer step, a checkpoint load, another tensor at the same
//! address); one whose weights changed is derived again, in its own buffers. The table
//! holds at most [`KEPT_BYTES`], making room by dropping the entries used least
//! recently (those of weights that were freed or moved, of a model no longer run), and
//! no entry larger than [`ENTRY_BYTES`]: those are derived into scratch for the call
//! alone. A call still using a dropped entry keeps it until it returns.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::scratch::with_scratch;

/// The most bytes kept in all, derived buffers and the copies of the weights they were
/// derived from together: the main job's F(4×4) convolutions need about 8 MB (both
/// directions) and its direct ones (stride 2, the stem) less than 2 MB; ResNet-18's
/// 64-, 128- and 256-channel F(4×4) ones about 95 MB and its stride-2 direct ones
/// 25 MB. Less than a model's working set
/// would drop each entry before its next use.
const KEPT_BYTES: usize = 128 << 20;

/// The largest entry kept. ResNet-18's 512-channel F(4×4) convolutions (47 MB per
/// direction) are larger: their weights are derived per call, rather than crowding out
/// every other entry.
const ENTRY_BYTES: usize = 16 << 20;

/// Names a derivation: what derives (`name`) and what, besides the weights, the result
/// depends on (`shape`: the input channels, kernel size, block width or padding, as
/// each derivation lists them; 0 where unused). The output channels follow from the
/// weights' length, which the key holds too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Tag {
    pub(super) name: &'static str,
    pub(super) shape: [usize; 3],
}

/// Which weights an entry was derived from, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    address: usize,
    len: usize,
    tag: Tag,
}

/// The weights an entry was derived from, and what was derived.
struct Derived {
    weight: Vec<f32>,
    buffer: Vec<f32>,
}

impl Derived {
    fn bytes(&self) -> usize {
        (self.weight.len() + self.buffer.len()) * std::mem::size_of::<f32>()
    }
}

/// One kept derivation and when it was last used (a count of the table's lookups).
struct Entry {
    key: Key,
    derived: Arc<Derived>,
    used: u64,
}

/// The entries and the lookup count.
struct Table {
    entries: Vec<Entry>,
    lookups: u64,
}

impl Table {
    fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.derived.bytes()).sum()
    }

    /// Removes the entry of `key`, if any, and then the least recently used entries
    /// until `bytes` more fit in `max_bytes`; returns what it removed.
    fn make_room(&mut self, key: Key, bytes: usize, max_bytes: usize) -> Vec<Arc<Derived>> {
        let mut removed = Vec::new();
        if let Some(i) = self.entries.iter().position(|e| e.key == key) {
            removed.push(self.entries.swap_remove(i).derived);
        }
        let mut held = self.bytes();
        while held + bytes > max_bytes {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
                break;
            };
            let entry = self.entries.swap_remove(oldest);
            held -= entry.derived.bytes();
            removed.push(entry.derived);
        }
        removed
    }
}

/// A table within limits of bytes. The crate keeps one, [`KEPT`]; tests make their own.
pub(super) struct Kept {
    table: Mutex<Table>,
    max_bytes: usize,
    max_entry: usize,
}

/// The crate's table.
pub(super) static KEPT: Kept = Kept::new(KEPT_BYTES, ENTRY_BYTES);

/// Whether `a` and `b` hold the same bits (NaN payloads and signed zeros included).
pub(super) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    bytemuck::cast_slice::<f32, u32>(a) == bytemuck::cast_slice::<f32, u32>(b)
}

impl Kept {
    const fn new(max_bytes: usize, max_entry: usize) -> Self {
        Kept {
            table: Mutex::new(Table {
                entries: Vec::new(),
                lookups: 0,
            }),
            max_bytes,
            max_entry,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent whatever panicked while the lock was held: each
        // change is one push or removal.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `use_it` with the `len` values that `derive` writes (every one of them) from
    /// `weight`: the kept ones where `weight` and `tag` have an entry whose weights are
    /// bitwise `weight`; else derived now, and kept where they fit. `derive` and `tag`
    /// must stand in one-to-one correspondence: the same tag, the same derivation.
    pub(super) fn with_derived<R>(
        &self,
        weight: &[f32],
        tag: Tag,
        len: usize,
        derive: impl FnOnce(&mut [f32]),
        use_it: impl FnOnce(&[f32]) -> R,
    ) -> R {
        let key = Key {
            address: weight.as_ptr() as usize,
            len: weight.len(),
            tag,
        };
        let bytes = (weight.len() + len) * std::mem::size_of::<f32>();
        // The lock is held only to look up, make room and insert, never while deriving
        // or using (both run rayon loops, whose threads may come back here).
        let found = {
            let mut table = self.table();
            table.lookups += 1;
            let now = table.lookups;
            table.entries.iter_mut().find(|e| e.key == key).map(|e| {
                e.used = now;
                e.derived.clone()
            })
        };
        if let Some(d) = &found {
            if d.buffer.len() == len && same_bits(&d.weight, weight) {
                return use_it(&d.buffer);
            }
        }
        drop(found);
        if bytes > self.max_entry.min(self.max_bytes) {
            return with_scratch(len, |buffer: &mut [f32]| {
                derive(buffer);
                use_it(buffer)
            });
        }
        // Room for the new entry, and the vectors of a removed one to derive into
        // where no other call still holds them.
        let removed = self.table().make_room(key, bytes, self.max_bytes);
        let mut derived = removed
            .into_iter()
            .find_map(|d| Arc::try_unwrap(d).ok())
            .unwrap_or(Derived {
                weight: Vec::new(),
                buffer: Vec::new(),
            });
        derived.weight.clear();
        derived.weight.extend_from_slice(weight);
        derived.buffer.resize(len, 0.0);
        derive(&mut derived.buffer);
        let derived = Arc::new(derived);
        let evicted = {
            // Other calls may have inserted meanwhile: room is made again, and an
            // entry of the same key replaced.
            let mut table = self.table();
            let evicted = table.make_room(key, bytes, self.max_bytes);
            let used = table.lookups;
            table.entries.push(Entry {
                key,
                derived: derived.clone(),
                used,
            });
            evicted
        };
        // Freed outside the lock.
        drop(evicted);
        use_it(&derived.buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Tag = Tag {
        name: "a",
        shape: [0; 3],
    };

    /// A derivation whose result shows which weights it read.
    fn doubled(weight: &[f32]) -> impl FnOnce(&mut [f32]) + '_ {
        move |out: &mut [f32]| {
            for (o, &w) in out.iter_mut().zip(weight.iter().cycle()) {
                *o = 2.0 * w;
            }
        }
    }

    #[test]
    fn an_entry_is_used_while_its_weights_are_unchanged_and_never_after() {
        let kept = Kept::new(1 << 20, 1 << 20);
        let mut weight = vec![1.5f32, -2.0, 0.25];
        let first = kept.with_derived(&weight, A, 6, doubled(&weight), |u| {
            (u.to_vec(), u.as_ptr() as usize)
        });
        assert_eq!(first.0, [3.0, -4.0, 0.5, 3.0, -4.0, 0.5]);
        // The same weights again: the kept buffer, not derived again.
        let again = kept.with_derived(
            &weight,
            A,
            6,
            |_| panic!("derived again"),
            |u| (u.to_vec(), u.as_ptr() as usize),
        );
        assert_eq!(again, first);
        // Changed in place (same address, same length): derived again.
        weight[1] = 7.0;
        let changed = kept.with_derived(&weight, A, 6, doubled(&weight), |u| u.to_vec());
        assert_eq!(changed, [3.0, 14.0, 0.5, 3.0, 14.0, 0.5]);
        // A zero's sign alone is a change.
        weight[0] = 0.0;
        kept.with_derived(&weight, A, 6, doubled(&weight), |_| ());
        weight[0] = -0.0;
        let signed = kept.with_derived(&weight, A, 6, |o| o.fill(42.0), |u| u[0]);
        assert_eq!(signed, 42.0);
        // Another tag is another entry; both stay.
        let b = Tag { name: "b", ..A };
        let other = kept.with_derived(&weight, b, 3, |o| o.fill(9.0), |u| u.to_vec());
        assert_eq!(other, [9.0; 3]);
        assert_eq!(kept.table().entries.len(), 2);
    }

    /// Counts the calls of a derivation that fills with `value`.
    fn counted(calls: &mut usize, value: f32) -> impl FnOnce(&mut [f32]) + '_ {
        move |out: &mut [f32]| {
            *calls += 1;
            out.fill(value)
        }
    }

    #[test]
    fn an_entry_over_the_limit_is_derived_for_each_call() {
        let kept = Kept::new(40, 40);
        // 4 weights and 8 values: 48 bytes.
        let large = vec![1.0f32; 4];
        let mut calls = 0;
        for _ in 0..2 {
            let values = kept.with_derived(&large, A, 8, counted(&mut calls, 3.0), |u| u.to_vec());
            assert_eq!(values, [3.0; 8]);
        }
        assert_eq!(calls, 2);
        assert!(kept.table().entries.is_empty());
    }

    #[test]
    fn the_least_recently_used_entries_make_room() {
        // Room for three entries of 3 weights and 6 values (36 bytes each).
        let kept = Kept::new(3 * 36, 36);
        let weights: Vec<Vec<f32>> = (0..4).map(|i| vec![i as f32; 3]).collect();
        let mut calls = 0;
        let run = |i: usize, calls: &mut usize| {
            kept.with_derived(&weights[i], A, 6, counted(calls, i as f32), |u| {
                assert_eq!(u, [i as f32; 6])
            })
        };
        for i in 0..3 {
            run(i, &mut calls);
        }
        run(0, &mut calls); // kept: 0 is now the most recently used
        assert_eq!(calls, 3);
        run(3, &mut calls); // no room: 1, the least recently used, goes
        run(0, &mut calls);
        run(2, &mut calls);
        run(3, &mut calls);
        assert_eq!(calls, 4, "0, 2 and 3 stayed");
        run(1, &mut calls);
        assert_eq!(calls, 5, "1 was dropped");
        let table = kept.table();
        assert_eq!(table.entries.len(), 3);
        assert!(table.bytes() <= kept.max_bytes);
    }
}
