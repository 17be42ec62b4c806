"""`python -m ride_tf ...` runs the `ride-tf` command line."""
import sys

from ride_tf.cli import main

sys.exit(main())
