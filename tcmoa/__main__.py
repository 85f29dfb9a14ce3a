"""`python -m tcmoa ...`: see tcmoa.cli."""
import sys

from .cli import main

sys.exit(main())
