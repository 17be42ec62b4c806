"""`python -m ride_tf ...` runs the `ride-tf` command line."""
import sys

from ride_tf.cli import main

if __name__ == "__main__":         # not when a "spawn" worker of `size --jobs` imports this module again
    sys.exit(main())
