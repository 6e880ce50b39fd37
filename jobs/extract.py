"""Ray Job recipe: `raypipe extract` as a script for `ray job submit`.

    python jobs/extract.py --config jobs/configs/extract.yaml [flags of `raypipe extract`]
    ray job submit --working-dir . -- python jobs/extract.py --config jobs/configs/extract.yaml

It takes exactly the flags of the CLI command; see `raypipe extract --help`.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["extract", *sys.argv[1:]])
