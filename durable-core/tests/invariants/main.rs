//! DESIGN.md's invariants that the core can check on its own, each named after what it
//! proves. Store-side invariants (1, 9) run on every backend in the conformance suite; these
//! check the dict's side, on `MemoryBackend` wrapped in counting and fault-injecting layers.

mod decoding;
mod hints;
mod lifetime;
mod snapshots;
mod support;
mod sync_cost;
mod writes;
