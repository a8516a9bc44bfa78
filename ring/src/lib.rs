//! The jvmwatch ring file: one memory-mapped file per JVM that survives the JVM.
//!
//! `docs/ring-format.md` is the specification; this crate is its one implementation:
//! [`layout`] (byte offsets), [`Writer`] (used by the agent, lock-free, GC-callback safe
//! where documented) and [`Ring`] (the reader, which trusts nothing in the file).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cbcost;
pub mod event;
pub mod facts;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod layout;
pub mod metrics;
pub mod reader;
pub mod snapshot;
pub mod stacks;
pub mod watch;
pub mod writer;

pub use event::{Event, OomKind, Text};
pub use layout::{Collector, Geometry, State};
pub use reader::{Header, History, LeakSeries, Live, ReadError, Record, Ring, Scan};
pub use snapshot::{GcCollector, Name, Pool, Snapshot, THREAD_STATES, UNKNOWN};
pub use writer::{capacity_for_bytes, default_dir, ensure_dir, now_ns, CreateError, Identity, Writer};
