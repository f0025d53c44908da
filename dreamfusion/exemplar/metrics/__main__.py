import sys

from dreamfusion.exemplar.metrics.workspace import main

sys.exit(main())
