"""Planning a launch: what this machine offers, preflight, and compiling a run into config, argv and environment."""
