"""Faces in decoded frames: MTCNN detection, tracks across frames, five-point alignment,
crops."""
