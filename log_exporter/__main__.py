import sys

from log_exporter.cli import main

sys.exit(main())
