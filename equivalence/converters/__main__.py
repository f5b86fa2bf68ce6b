"""``python -m equivalence.converters``: run the converters, print their entries as JSON."""

import sys

from equivalence.converters.runner import main

sys.exit(main())
