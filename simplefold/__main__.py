import sys

from simplefold.cli import main

sys.exit(main())
