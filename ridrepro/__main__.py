import sys

from ridrepro.cli import main

sys.exit(main())
