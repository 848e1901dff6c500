"""What-if sweeps: scenario files, parallel runs over executors, and the comparison outputs."""
