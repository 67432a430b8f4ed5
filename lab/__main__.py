"""`python -m lab`: the sample cluster announcing itself to a ToR router (lab.cluster_demo)."""

import sys

from lab.cluster_demo import main

sys.exit(main())
