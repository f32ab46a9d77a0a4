import sys

from migfw.cli import main

sys.exit(main())
