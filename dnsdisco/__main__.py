"""`python -m dnsdisco` is the `dnsdisco` command."""
import sys

from .cli import main

sys.exit(main())
