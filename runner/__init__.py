"""accel-run: Accelerate experiments described by one YAML file."""

__version__ = "0.1.0"
