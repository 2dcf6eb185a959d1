"""The built-in worker: trains the spec's model on its synthetic data under `accelerate launch`."""
