"""Ray Job recipe: `raypipe recipe multitask` as a script for `ray job submit`.

    python jobs/multitask.py --config jobs/configs/multitask.yaml --store store/ \
        --run runs/mt1 --set data.annotations=abaw/
    ray job submit --working-dir . -- python jobs/multitask.py \
        --config jobs/configs/multitask.yaml --store s3://b/store --run s3://b/runs/mt1

It takes exactly the flags of `raypipe recipe multitask`; see `raypipe recipe --help`.
Running it again with the same --run resumes each training stage from its last checkpoint.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["recipe", "multitask", *sys.argv[1:]])
