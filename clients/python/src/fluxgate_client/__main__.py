"""`python -m fluxgate_client` runs the CLI, for when the console script is not on PATH."""

import sys

from fluxgate_client.cli import main

sys.exit(main())
