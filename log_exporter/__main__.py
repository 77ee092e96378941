import sys

from log_exporter.cli import main

# Guarded: a replay worker started by forkserver or spawn imports this module again.
if __name__ == "__main__":
    sys.exit(main())
