"""Reports of a run: metric tables per model and split, plots, Markdown and HTML."""
