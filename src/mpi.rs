//! The processes of an MPI job as a [`Collective`] (cargo feature `mpi`): run under `mpirun`,
//! [`World::initialize`] joins the job, and its communicator splits a data set
//! ([`rows_of`](crate::objective::distributed::rows_of)) and sums the partial results of a
//! [`DistributedObjective`](crate::objective::distributed::DistributedObjective).
//!
//! An MPI error (a peer gone, say) ends the job through MPI's default error handler, which
//! aborts every process: no process is left waiting for a sum.

use mpi::collective::{CommunicatorCollectives, SystemOperation};
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator;

use crate::error::Result;
use crate::objective::distributed::Collective;

/// This process's membership of the MPI job: MPI stays initialised while it lives (and is
/// finalised when it is dropped), and [`communicator`](Self::communicator) reaches every
/// process of the job.
pub struct World {
    universe: Universe,
}

impl World {
    /// Initialises MPI for a process whose other threads (rayon's workers, a streaming
    /// reader) never call it: MPI is called from this thread only. `None` when MPI was
    /// initialised already in this process, or cannot serve threads at all.
    pub fn initialize() -> Option<World> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Funneled)?;
        (level >= Threading::Funneled).then_some(World { universe })
    }

    /// Ends every process of the job at once with `code` (`MPI_Abort`): for a process that
    /// failed on its own, which the others would otherwise wait for.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }

    /// The communicator of every process of the job (`MPI_COMM_WORLD`).
    pub fn communicator(&self) -> SimpleCommunicator {
        self.universe.world()
    }
}

impl Collective for SimpleCommunicator {
    fn rank(&self) -> usize {
        Communicator::rank(self) as usize
    }

    fn size(&self) -> usize {
        Communicator::size(self) as usize
    }

    fn sum(&self, values: &[f64], sums: &mut [f64]) -> Result<()> {
        self.all_reduce_into(values, sums, SystemOperation::sum());
        Ok(())
    }

    fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> Result<()> {
        self.all_reduce_into(values, sums, SystemOperation::sum());
        Ok(())
    }
}
