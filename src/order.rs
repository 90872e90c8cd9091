//! One stable sort for the whole crate. Each `sort_by` over a new element type
//! links its own copy of the standard library's sort (3-5 KiB of wasm each);
//! these sort positions instead (`usize`, one comparator type, so one copy for
//! every caller) and then move each element once. Same result as
//! `slice::sort_by`: stable, so deterministic for any comparator.

use std::cmp::Ordering;

/// `v.sort_by(cmp)`. Plain loops: this is instantiated for every element
/// type and comparator, and iterator adapters would be too.
pub fn sort_by<T>(v: &mut Vec<T>, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    // Already in order (the common case: rows read in order, keys of a map):
    // no allocation.
    let mut sorted = true;
    for pair in v.windows(2) {
        if let [a, b] = pair {
            if cmp(a, b) == Ordering::Greater {
                sorted = false;
                break;
            }
        }
    }
    if sorted {
        return;
    }
    let mut order: Vec<usize> = Vec::with_capacity(v.len());
    for i in 0..v.len() {
        order.push(i);
    }
    let items = v.as_slice();
    sort_positions(&mut order, &mut |a, b| match (items.get(a), items.get(b)) {
        (Some(x), Some(y)) => cmp(x, y),
        _ => Ordering::Equal,
    });
    let mut slots: Vec<Option<T>> = Vec::with_capacity(v.len());
    for item in v.drain(..) {
        slots.push(Some(item));
    }
    for i in order {
        if let Some(item) = slots.get_mut(i).and_then(Option::take) {
            v.push(item);
        }
    }
}

/// `v.sort_by_key(key)`.
pub fn sort_by_key<T, K: Ord>(v: &mut Vec<T>, mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// The one instance of the standard library's stable sort.
#[inline(never)]
fn sort_positions(order: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|a, b| cmp(*a, *b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_the_standard_stable_sort(keys in proptest::collection::vec(0u8..8, 0..200)) {
            // Equal keys keep their input order: the index tells them apart.
            let items: Vec<(u8, usize)> = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
            let mut ours = items.clone();
            sort_by_key(&mut ours, |(k, _)| *k);
            let mut std = items;
            std.sort_by_key(|(k, _)| *k);
            prop_assert_eq!(ours, std);
        }
    }
}
