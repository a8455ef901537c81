import sys

from t1jax.cli import main

sys.exit(main())
