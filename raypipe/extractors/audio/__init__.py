"""Audio extractors: voice activity, openSMILE descriptors and functionals, Whisper
transcripts and encoder embeddings."""
