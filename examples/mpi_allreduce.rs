//! The time of one element-wise sum over the processes of an MPI job (`MPI_Allreduce`, f64,
//! as the distributed objective calls it),
//! for the sizes of the objective's second sum (the gradient and the cost's
//! terms): S1 3 289 values, S2 (n = 256, h = 64), S3 308 308, S4 4.2 M. Medians of repeated
//! sums, printed by the first process.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_allreduce
//! mpirun -np 2 target/release/examples/mpi_allreduce
//! ```

use std::time::Instant;

use sae::mpi::World;
use sae::objective::distributed::Collective;

fn main() {
    let world = World::initialize().expect("MPI initialised once");
    let processes = world.communicator();
    let theta_len = |n: usize, h: usize| 2 * n * h + n + h + 4;
    let sizes = [
        ("S1", theta_len(64, 25)),
        ("S2", theta_len(256, 64)),
        ("S3", theta_len(784, 196)),
        ("S4", theta_len(4096, 512)),
    ];
    for (name, len) in sizes {
        let (values, mut sums) = (vec![1.0; len], vec![0.0; len]);
        let repeats = (200_000_000 / len).clamp(5, 1000);
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let start = Instant::now();
            processes.sum(&values, &mut sums).expect("the sum");
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        if processes.rank() == 0 {
            let median = times[times.len() / 2];
            let bytes = (len * 8) as f64;
            println!(
                "{name}: {len} values ({:.2} MB) over {} processes: median {:.3} ms ({:.2} GB/s of the vector), {repeats} sums",
                bytes / 1e6,
                processes.size(),
                median * 1e3,
                bytes / median / 1e9
            );
        }
    }
}
