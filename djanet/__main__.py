"""`python -m djanet ...`: see djanet/cli.py."""
import sys

from .cli import main

sys.exit(main())
