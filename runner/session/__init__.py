"""A session: the orchestration above the verdicts: state, the round loop, one launch, resume, dry run, summary."""
