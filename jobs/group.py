"""Ray Job recipe: `raypipe recipe group` as a script for `ray job submit`.

    python jobs/group.py --config jobs/configs/group.yaml --store store/ --run runs/group1
    ray job submit --working-dir . -- python jobs/group.py \
        --config jobs/configs/group.yaml --store s3://b/store --run s3://b/runs/group1

It takes exactly the flags of `raypipe recipe group`; see `raypipe recipe --help`.
Running it again with the same --run resumes each member's training from its last checkpoint.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["recipe", "group", *sys.argv[1:]])
