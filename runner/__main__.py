"""`python -m runner` is the same as the `accel-run` command."""

import sys

from runner.cli import main

sys.exit(main())
