import sys

try:
    from asd_keras.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python starts: one line, no traceback
    print("\nasd-keras: interrupted.", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
