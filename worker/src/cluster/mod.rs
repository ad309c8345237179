//! The distributed runtime's processes (DESIGN.md §2): `strom master` plans a job, places
//! its subtasks on the workers' slots, deploys them and follows their states; `strom
//! worker` registers its slots with the master, runs the subtasks it is given, and
//! exchanges records with the other workers over the data plane (`crate::net`).
//!
//! Every process builds the job from the same code and arguments (DESIGN.md §3): the
//! master sends a job's name and arguments, never code.

pub mod client;
pub mod job;
pub mod master;
pub(crate) mod placement;
pub(crate) mod rest;
pub mod restart;
pub mod worker;
