import sys

from metering.cli import main

sys.exit(main())
