import sys

from deploy_robust.cli import main

sys.exit(main())
