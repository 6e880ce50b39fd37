"""Ray Job recipe: `raypipe recipe cascade` as a script for `ray job submit`.

    python jobs/cascade.py --config jobs/configs/cascade.yaml --store store/ \
        --run runs/cascade1 --set data.annotations=abaw/
    ray job submit --working-dir . -- python jobs/cascade.py \
        --config jobs/configs/cascade.yaml --store s3://b/store --run s3://b/runs/cascade1

It takes exactly the flags of `raypipe recipe cascade`; see `raypipe recipe --help`.
Running it again with the same --run fits only the stages still missing.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["recipe", "cascade", *sys.argv[1:]])
