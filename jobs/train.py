"""Ray Job recipe: `raypipe train` as a script for `ray job submit`.

    python jobs/train.py --config jobs/configs/train.yaml --data faces/ --run runs/ft1
    ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/train.yaml \
        --data /shared/faces --run /shared/runs/ft1

It takes exactly the flags of the CLI command; see `raypipe train --help`. Running it again
with the same --run resumes from the last checkpoint.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
