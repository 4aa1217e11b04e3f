"""`unmute`: start, watch and stop the assistant's SLURM job (slurm/instances.sbatch) from a
login node. It reads what the job writes to its job directory (docs/cli.md) and what SLURM
says; its only state of its own is a pointer to the user's latest job."""
