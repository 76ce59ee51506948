"""Running the folds on a cluster's own engine: Slurm job arrays and Kubernetes Indexed Jobs."""
