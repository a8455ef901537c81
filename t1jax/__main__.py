import sys

from t1jax.apps.cli import main

sys.exit(main())
