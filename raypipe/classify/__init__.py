"""Classification over stored features: feature matrices, pooling and encodings, the
classifier zoo, learning targets, fitting one trial, and the search space of trials."""
