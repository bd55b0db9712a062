import sys

from ffacc.cli import main

sys.exit(main())
