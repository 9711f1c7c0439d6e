"""``python -m benchmarks``: the whole suite; ``--help`` lists the sections and options."""

import sys

from benchmarks.suite import main

sys.exit(main())
