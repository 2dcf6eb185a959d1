"""Stage 3's rules: what a spec must satisfy beyond its types, one module per concern.

`context.Checker` is what every rule reports through (located diagnostics, acknowledged warnings,
paths already explained); `runner.spec.validate` drives the rules in order:

- document: control characters, the document against `ExperimentSpec`, each run merged and
  checked against `RunConfig` or `ScriptRunConfig`, a script run's sections and its file;
- sizes: sample counts no machine holds, the model against the data, steps a run makes;
- names: run names that would collide with the result folder's files, the top-level baseline;
- launch: launch settings that contradict each other, a script's batch option passed twice;
- engine: a SLURM run's launch settings against its allocation;
- expect: the expectations between named runs (runs exist, comparable work, accuracy bounds).
"""
