"""`python -m dnsdisco` is the `dnsdisco` command."""
import sys

from dnsdisco.cli import main

sys.exit(main())
