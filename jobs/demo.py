"""Ray Job recipe: `raypipe demo` as a script (generate data, extract, tune, fuse, report).

python jobs/demo.py --config jobs/configs/demo.yaml
ray job submit --working-dir . -- python jobs/demo.py --config jobs/configs/demo.yaml
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
