"""``python -m fixsecure`` is the ``fixsecure`` command."""

import sys

from fixsecure.cli import main

sys.exit(main())
