//! The integration tests, one module per subject, in one binary: every test binary links the
//! whole library, and monomorphises its generic engine again, so one binary builds in a
//! fraction of the time of thirty. The tests that need a process of their own (a global
//! allocator that counts, per-process kernel counters) or are run by name (the exercises on
//! the real data sets, the fuzz corpus) stay binaries of their own in `tests/`.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod cli_files;
mod cli_sanity;
mod data;
mod distributed;
mod distributed_topk;
mod fast_path_matches_reference;
mod files;
mod forward_and_pictures;
mod gemm;
mod images;
mod lbfgs;
mod minibatch;
mod model_file;
mod model_kinds;
mod npy_source;
mod objective;
mod penalties;
mod saelens;
mod softmax;
mod stacked;
mod streamed_minibatch;
mod streaming;
mod streaming_memory;
mod topk_cli;
mod train_cli;
mod training;
mod vae;
mod validation;
mod variants;
mod whitening;
