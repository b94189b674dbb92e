"""`python -m bot` is the `relaydesk` command."""

import sys

from bot.cli import main

sys.exit(main())
