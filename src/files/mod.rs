//! How this crate treats the user's files: every write is atomic and leaves nothing behind
//! (`atomic`), a file being written by one run cannot be written by another ([`lock`]),
//! and a command's outputs are checked against its inputs and against each other before any
//! work starts ([`plan`]).

mod atomic;
pub mod lock;
pub mod plan;

pub(crate) use atomic::kind_of;
pub use atomic::{write_with, Staged};
pub use lock::WriteLock;
pub use plan::FilePlan;
