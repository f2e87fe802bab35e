"""``python -m benchmarks.vs_official MODE``: see :mod:`benchmarks.vs_official`."""

import sys

from benchmarks.vs_official import main

sys.exit(main())
