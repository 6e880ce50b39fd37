"""Ray Job recipe: `raypipe recipe sequence` as a script for `ray job submit`.

    python jobs/sequence.py --config jobs/configs/sequence.yaml --store store/ \
        --run runs/seq1 --set data.annotations=abaw/
    ray job submit --working-dir . -- python jobs/sequence.py \
        --config jobs/configs/sequence.yaml --store s3://b/store --run s3://b/runs/seq1

It takes exactly the flags of `raypipe recipe sequence`; see `raypipe recipe --help`.
Running it again with the same --run resumes training from its last checkpoint.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["recipe", "sequence", *sys.argv[1:]])
