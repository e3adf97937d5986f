"""`python -m core_service.cli` runs dtm."""

import sys

from core_service.cli import main

sys.exit(main())
