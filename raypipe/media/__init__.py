"""Media in: manifests, probing, decoding video by timestamp in windows (in a child process
with a timeout), audio demux, still images, writing clips, and the generated demo set."""
