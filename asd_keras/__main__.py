import sys

from asd_keras.cli import main

sys.exit(main())
