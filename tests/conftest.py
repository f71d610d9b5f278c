import sys
from pathlib import Path

# The tests reuse the benchmark's workload generator; bench/ is not an installed package.
REPOSITORY_ROOT = str(Path(__file__).resolve().parents[1])
if REPOSITORY_ROOT not in sys.path:
    sys.path.insert(0, REPOSITORY_ROOT)
