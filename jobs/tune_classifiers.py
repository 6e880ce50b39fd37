"""Ray Job recipe: `raypipe tune-classifiers` as a script for `ray job submit`.

    python jobs/tune_classifiers.py --config jobs/configs/tune_classifiers.yaml [flags]
    ray job submit --working-dir . -- \
        python jobs/tune_classifiers.py --config jobs/configs/tune_classifiers.yaml

It takes exactly the flags of the CLI command; see `raypipe tune-classifiers --help`.
"""

import sys

from raypipe.cli import main

if __name__ == "__main__":
    main(["tune-classifiers", *sys.argv[1:]])
