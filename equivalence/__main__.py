"""``python -m equivalence`` is the ``equivalence`` command."""

from .cli import main

raise SystemExit(main())
