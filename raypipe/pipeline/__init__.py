"""Ray wiring, and only here: connecting to Ray, and one module per command (extract,
tune-classifiers, fuse, predict, train, demo, benchmark) that runs the plain-Python
components on Ray Data, Ray Tune and Ray Train."""
