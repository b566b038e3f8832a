//! One lock-poisoning policy for the whole process: a poisoned `Mutex` is
//! recovered, never propagated. Every critical section in Spillway leaves
//! its value consistent at each step (counters, maps of plain values,
//! status records), so a panic in one task must not turn every later
//! request, tick or status read into a second panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the value over if a panicking holder poisoned it.
#[inline]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = held.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
