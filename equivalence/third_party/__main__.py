"""``python -m equivalence.third_party``: run the converters, print their entries as JSON."""

import sys

from .runner import main

sys.exit(main())
