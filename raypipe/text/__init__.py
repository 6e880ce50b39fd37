"""Text features of transcripts: TF-IDF fitted on training transcripts, transcript loading."""
