"""`python -m quant_dag.cli ...`: the same as `quant-dag ...`."""

import sys

from quant_dag.cli.main import main

sys.exit(main())
