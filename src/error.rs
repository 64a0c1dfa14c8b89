//! The one error type of the crate: every variant names the parameter, file or position at fault.

use std::path::PathBuf;

/// Everything that can go wrong when the caller hands the engine bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hyper-parameter is outside its domain.
    #[error("invalid hyper-parameter `{name}` = {value}: {reason}")]
    InvalidHyperParameter { name: &'static str, value: f64, reason: &'static str },

    /// An option (not a number of the model) this run cannot use, named.
    #[error("invalid option `{name}`: {reason}")]
    InvalidOption { name: &'static str, reason: String },

    /// A vector or matrix does not have the length or shape the model needs.
    #[error("shape mismatch for `{what}`: expected {expected}, got {got}")]
    ShapeMismatch { what: &'static str, expected: String, got: String },

    /// The data set has no examples or no features.
    #[error("empty data set: {what}")]
    EmptyData { what: &'static str },

    /// A NaN or infinity in an input. `row` and `column` use the layout the caller gave.
    #[error("non-finite value {value} in {what} at row {row}, column {column}")]
    NonFiniteData { what: &'static str, row: usize, column: usize, value: f64 },

    /// A value outside the domain of the model's loss (cross-entropy compares with targets in
    /// [0, 1]). `row` and `column` use the layout the caller gave.
    #[error("value {value} in {what} at row {row}, column {column} is out of range: {reason}")]
    DataOutOfRange { what: &'static str, row: usize, column: usize, value: f64, reason: &'static str },

    /// A NaN or infinity in the parameter vector, with its position in the UFLDL layout.
    #[error("non-finite value {value} in theta at index {index} ({block}[{row}, {column}])")]
    NonFiniteTheta { index: usize, block: &'static str, row: usize, column: usize, value: f64 },

    /// Some hidden unit's average activation is 0 or 1 in the working precision, where the
    /// KL penalty and its derivative are infinite.
    #[error(
        "hidden unit {unit} has average activation rho_hat = {rho_hat:e}, saturated at {}; the KL \
         sparsity penalty is infinite there (weights too large, or use f64)",
        if *rho_hat <= 0.5 { "0" } else { "1" }
    )]
    SaturatedActivation { unit: usize, rho_hat: f64 },

    /// The cost became NaN or infinite during optimisation.
    #[error(
        "the cost is {value} at iteration {iteration}: training diverged (lower the learning rate, or check the data)"
    )]
    NonFiniteCost { iteration: usize, value: f64 },

    /// The caller asked for kernels of an instruction set this CPU lacks.
    #[error("instruction set {isa} is not supported by this CPU")]
    UnsupportedIsa { isa: &'static str },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// An output path that cannot be written: not a regular file, or in a missing or
    /// read-only folder.
    #[error("cannot write {path}: {reason}")]
    BadOutput { path: PathBuf, reason: String },

    /// Two options of one command name the same file, and one of them is written.
    #[error("{option} and {other} both name {path}: refusing to write over it")]
    FileClash { option: String, other: String, path: PathBuf },

    /// Another run holds the lock on writing this file.
    #[error("{path} is being written by another sae run{}", holder.map(|p| format!(" (process {p})")).unwrap_or_default())]
    InUse { path: PathBuf, holder: Option<u32> },

    /// A file exists but its contents are not what was expected.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },

    /// Another process of a distributed evaluation failed (its own error is its own).
    #[error("rank {rank} of the distributed job failed ({reason}); its own error is reported by that rank")]
    OtherRankFailed { rank: usize, reason: &'static str },

    /// The processes of a distributed run no longer hold the same parameters (they would
    /// compute on different models, or wait for each other forever).
    #[error(
        "rank {rank}'s parameters differ from rank 0's: the processes drifted apart (different CPUs' rounding, or \
         a caller that steps them differently)"
    )]
    ProcessesDiverged { rank: usize },

    /// A [`Collective`](crate::objective::distributed::Collective)'s sum failed (a caller's
    /// communicator reported an error).
    #[error("the sum across processes failed: {reason}")]
    CollectiveFailed { reason: String },

    /// A checkpoint that cannot continue this run: its `field` is missing, corrupt, out of
    /// range, or not the run's (another model, other data or options).
    #[error("{path}: cannot resume from this checkpoint: {field} {reason}")]
    BadCheckpoint { path: PathBuf, field: &'static str, reason: String },
}

impl Error {
    /// [`Error::ShapeMismatch`]: `what` should be `expected` and is `got`.
    pub(crate) fn shape_mismatch(
        what: &'static str,
        expected: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) -> Error {
        Error::ShapeMismatch { what, expected: expected.to_string(), got: got.to_string() }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`Error::BadFile`] for `path`.
    pub(crate) fn bad_file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::BadFile { path: path.to_path_buf(), reason: reason.into() }
    }
}
