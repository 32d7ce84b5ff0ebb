"""`python -m sdcl ...`: the sdcl command."""

import sys

from sdcl.cli import main

sys.exit(main())
