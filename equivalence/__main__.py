"""``python -m equivalence`` is the ``equivalence`` command."""

from equivalence.cli.main import main

raise SystemExit(main())
