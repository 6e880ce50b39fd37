"""Text extractors: transformer sentence embeddings of transcripts."""
