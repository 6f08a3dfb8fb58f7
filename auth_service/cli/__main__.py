"""``python -m auth_service.cli``: the ``woes-auth`` command."""

import sys

from auth_service.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
