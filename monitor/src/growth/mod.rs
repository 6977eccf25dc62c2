//! What grew, how, and how fast: the answers an alert gives besides the
//! dump itself. All pure (decoded profiles, counters and samples in; tables
//! and verdicts out), shared by the alert and the `diff`/`top` commands.
//!
//! - [`frames`]: which frame of a stack is blamed (not the allocator, not
//!   the standard library's plumbing) and how long names are shortened;
//! - [`diff`]: in-use bytes by function and by stack, baseline against
//!   dump, the top N by growth ([`diff()`], [`top_in_use`]);
//! - [`table`]: that comparison as an aligned text table;
//! - [`verdict`]: jemalloc's counters before and after: live allocations
//!   or fragmentation ([`StatsVerdict`]);
//! - [`rate`]: the least-squares growth rate and the time to the limit
//!   ([`GrowthRate`], [`Headroom`]).
//!
//! The results serialize (serde) for a summary stored beside the dump.

pub mod diff;
pub mod frames;
pub mod rate;
pub mod table;
pub mod verdict;

pub use diff::{DEFAULT_TOP, FunctionGrowth, Growth, GrowthError, StackGrowth, diff, top_in_use};
pub use rate::{GrowthRate, Headroom};
pub use verdict::{StatsVerdict, VerdictKind};
