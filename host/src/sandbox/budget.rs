//! One memory budget per plugin run.
//!
//! A component may hold many core instances, each with memories and tables.
//! Capping each memory alone lets a plugin multiply its share by the number
//! of memories, so the budget here covers the sum of every linear memory and
//! every table of the store, and caps how many of each a store may create.

use wasmtime::ResourceLimiter;

use crate::limits::{Limit, LimitBreach};

/// Most core instances one plugin run may create. Python's runtime (CPython
/// and its libraries, linked at run time) is the largest we ship; see
/// `docs/security.md` for the counts of each language.
pub(crate) const MAX_INSTANCES: usize = 64;
/// Most linear memories one plugin run may create.
pub const MAX_MEMORIES: usize = 8;
/// Most tables one plugin run may create.
pub const MAX_TABLES: usize = 32;
/// What the budget charges for one table element: wasmtime stores a
/// function or external reference as one pointer.
pub(crate) const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The store's [`ResourceLimiter`]: every growth of a memory or a table is
/// charged to one budget, and a growth past it traps with a [`LimitBreach`].
#[derive(Debug)]
pub(crate) struct Budget {
    max_bytes: usize,
    used_bytes: usize,
}

impl Budget {
    /// A budget of `max_bytes` for all memories and tables together.
    pub(crate) fn new(max_bytes: usize) -> Budget {
        Budget {
            max_bytes,
            used_bytes: 0,
        }
    }

    /// Bytes charged so far.
    #[cfg(test)]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Charge a growth from `current` to `desired` bytes of one memory or
    /// table. Growth is never given back: instances live as long as the store.
    fn charge(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let added = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(added);
        if total > self.max_bytes {
            return Err(wasmtime::Error::new(LimitBreach::new(
                Limit::Memory,
                format!(
                    "a {what} would grow from {current} to {desired} bytes, taking the plugin's \
                     memories and tables to {total} bytes; the cap is {} bytes for all of them",
                    self.max_bytes
                ),
            )));
        }
        self.used_bytes = total;
        Ok(true)
    }
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge("linear memory", current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge(
            "table",
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_of_several_memories_and_tables_is_charged_to_one_budget() {
        let mut budget = Budget::new(100);
        assert!(budget.memory_growing(0, 40, None).unwrap());
        assert!(budget.memory_growing(0, 40, None).unwrap());
        // 80 used: a third memory of 40 is refused, though 40 < 100.
        let err = budget.memory_growing(0, 40, None).unwrap_err();
        let breach = err.downcast_ref::<LimitBreach>().unwrap();
        assert_eq!(breach.limit, Limit::Memory);
        assert_eq!(budget.used_bytes(), 80);
        // Tables draw on the same budget, per element.
        assert!(budget.table_growing(0, 2, None).unwrap());
        assert_eq!(budget.used_bytes(), 80 + 2 * TABLE_ELEMENT_BYTES);
        assert!(budget.table_growing(2, 1000, None).is_err());
    }

    #[test]
    fn only_the_growth_is_charged() {
        let mut budget = Budget::new(100);
        assert!(budget.memory_growing(0, 60, None).unwrap());
        assert!(budget.memory_growing(60, 100, None).unwrap());
        assert_eq!(budget.used_bytes(), 100);
        assert!(budget.memory_growing(100, 101, None).is_err());
    }
}
