//! Buffers derived from a convolution's weights (Winograd F(4×4)'s transformed weights,
//! `winograd_f4.rs`), kept from one call to the next with the same weights. Adversarial
//! training with PGD-K runs K + 1 forward and input-gradient passes per batch with one
//! set of weights; without this each pass derives them again.
//!
//! An entry is looked up by the weights' address and length and a tag naming the
//! derivation (say, which direction), and used only if the weights it was derived from
//! equal the ones given, bit for bit. So an entry is never stale, whatever changed the
//! weights since (an optimizer step, a checkpoint load, another tensor at the same
//! address); one whose weights changed is derived again, in its own buffers. At most
//! [`KEPT_BYTES`] are kept in all, and no entry larger than [`ENTRY_BYTES`]; what is not
//! kept is derived into scratch for the call alone. Entries stay for the life of the
//! process (they hold at most [`KEPT_BYTES`]).

use std::sync::{Arc, Mutex};

use crate::scratch::with_scratch;

/// The most bytes kept in all, derived buffers and the copies of the weights they were
/// derived from together: the main job's F(4×4) convolutions need 7.4 MB (both
/// directions), ResNet-18's 128- and 256-channel ones 89 MB.
const KEPT_BYTES: usize = 96 << 20;

/// The largest entry kept. ResNet-18's 512-channel convolutions (47 MB per direction)
/// would take half of [`KEPT_BYTES`] each: their weights are derived per call.
const ENTRY_BYTES: usize = 16 << 20;

/// Which weights an entry was derived from, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    address: usize,
    len: usize,
    tag: usize,
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

/// Entries within limits of bytes. The crate keeps one, [`KEPT`]; tests make their own.
struct Kept {
    entries: Mutex<Vec<(Key, Arc<Derived>)>>,
    max_bytes: usize,
    max_entry: usize,
}

static KEPT: Kept = Kept::new(KEPT_BYTES, ENTRY_BYTES);

/// Whether `a` and `b` hold the same bits (NaN payloads and signed zeros included).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    bytemuck::cast_slice::<f32, u32>(a) == bytemuck::cast_slice::<f32, u32>(b)
}

/// Calls `use_it` with the `len` values that `derive` writes (every one of them) from
/// `weight`: the kept ones where `weight` and `tag` have an entry whose weights are
/// bitwise `weight`; else derived now, and kept where they fit. `derive` and `tag`
/// must stand in one-to-one correspondence: the same tag, the same derivation.
pub(super) fn with_derived<R>(
    weight: &[f32],
    tag: usize,
    len: usize,
    derive: impl FnOnce(&mut [f32]),
    use_it: impl FnOnce(&[f32]) -> R,
) -> R {
    KEPT.with_derived(weight, tag, len, derive, use_it)
}

impl Kept {
    const fn new(max_bytes: usize, max_entry: usize) -> Self {
        Kept {
            entries: Mutex::new(Vec::new()),
            max_bytes,
            max_entry,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<(Key, Arc<Derived>)>> {
        // The entries stay consistent whatever panicked while the lock was held: each
        // change is one push or retain.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`with_derived`] with these entries.
    fn with_derived<R>(
        &self,
        weight: &[f32],
        tag: usize,
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
        // The lock is held only to look up and to insert, never while deriving or
        // using (both run rayon loops, whose threads may come back here).
        let (found, room) = {
            let entries = self.entries();
            let found = entries
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, d)| d.clone());
            let used: usize = entries.iter().map(|(_, d)| d.bytes()).sum();
            (found, self.max_bytes.saturating_sub(used))
        };
        let stale = match found {
            Some(d) if d.buffer.len() == len && same_bits(&d.weight, weight) => {
                return use_it(&d.buffer)
            }
            stale => stale,
        };
        let freed = stale.as_ref().map_or(0, |d| d.bytes());
        if bytes > self.max_entry || bytes > room + freed {
            return with_scratch(len, |buffer: &mut [f32]| {
                derive(buffer);
                use_it(buffer)
            });
        }
        // The stale entry's vectors are reused where no other call holds them.
        let reused = stale.and_then(|d| {
            self.entries()
                .retain(|(k, other)| *k != key || !Arc::ptr_eq(other, &d));
            Arc::try_unwrap(d).ok()
        });
        let mut derived = reused.unwrap_or(Derived {
            weight: Vec::new(),
            buffer: Vec::new(),
        });
        derived.weight.clear();
        derived.weight.extend_from_slice(weight);
        derived.buffer.resize(len, 0.0);
        derive(&mut derived.buffer);
        let derived = Arc::new(derived);
        {
            let mut entries = self.entries();
            // Another call may have derived the same entry meanwhile: one is kept.
            entries.retain(|(k, _)| *k != key);
            entries.push((key, derived.clone()));
        }
        use_it(&derived.buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let first = kept.with_derived(&weight, 0, 6, doubled(&weight), |u| {
            (u.to_vec(), u.as_ptr() as usize)
        });
        assert_eq!(first.0, [3.0, -4.0, 0.5, 3.0, -4.0, 0.5]);
        // The same weights again: the kept buffer, not derived again.
        let again = kept.with_derived(
            &weight,
            0,
            6,
            |_| panic!("derived again"),
            |u| (u.to_vec(), u.as_ptr() as usize),
        );
        assert_eq!(again, first);
        // Changed in place (same address, same length): derived again.
        weight[1] = 7.0;
        let changed = kept.with_derived(&weight, 0, 6, doubled(&weight), |u| u.to_vec());
        assert_eq!(changed, [3.0, 14.0, 0.5, 3.0, 14.0, 0.5]);
        // A zero's sign alone is a change.
        weight[0] = 0.0;
        kept.with_derived(&weight, 0, 6, doubled(&weight), |_| ());
        weight[0] = -0.0;
        let signed = kept.with_derived(&weight, 0, 6, |o| o.fill(42.0), |u| u[0]);
        assert_eq!(signed, 42.0);
        // Another tag is another entry; both stay.
        let other = kept.with_derived(&weight, 1, 3, |o| o.fill(9.0), |u| u.to_vec());
        assert_eq!(other, [9.0; 3]);
        assert_eq!(kept.entries().len(), 2);
    }

    #[test]
    fn what_does_not_fit_is_derived_for_each_call() {
        // Room for one entry of 3 weights and 6 values (36 bytes), none of 4 and 8.
        let kept = Kept::new(40, 40);
        let (small, large) = (vec![1.0f32; 3], vec![1.0f32; 4]);
        let mut derivations = 0;
        for _ in 0..2 {
            let count = |o: &mut [f32]| {
                derivations += 1;
                o.fill(3.0)
            };
            let values = kept.with_derived(&large, 0, 8, count, |u| u.to_vec());
            assert_eq!(values, [3.0; 8]);
        }
        assert_eq!(derivations, 2, "an entry over the limit is never kept");
        kept.with_derived(&small, 0, 6, |o| o.fill(1.0), |_| ());
        let other = vec![2.0f32; 3];
        for _ in 0..2 {
            let count = |o: &mut [f32]| {
                derivations += 1;
                o.fill(5.0)
            };
            kept.with_derived(&other, 0, 6, count, |u| assert_eq!(u, [5.0; 6]));
        }
        assert_eq!(derivations, 4, "no room left beside the first entry");
        assert_eq!(kept.entries().len(), 1);
    }
}
