"""Ray Job recipe: `raypipe fuse` as a script for `ray job submit`.

    python jobs/fuse.py --config jobs/configs/fuse.yaml [flags of `raypipe fuse`]
    ray job submit --working-dir . -- python jobs/fuse.py --config jobs/configs/fuse.yaml

It takes exactly the flags of the CLI command; see `raypipe fuse --help`.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["fuse", *sys.argv[1:]])
